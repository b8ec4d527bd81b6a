//! The dataset: the samples a run sends, loaded and validated before the first request.
//!
//! Data flow: `bench` loads it once (`load`); `prepared` renders each sample's HTTP request. A
//! sample is a chat message list (and, from a prompt-only source, the raw prompt the
//! completions API sends as is), with its own `max_tokens` when the source gives one. Sources,
//! one module each: the seed's conversations file (`seed`, the default), ShareGPT dumps
//! (`sharegpt`), and OpenAI-style JSONL (`jsonl`). Every error names the file, the sample or
//! line, the field, and what was expected.

mod jsonl;
mod seed;
mod sharegpt;

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use crate::cli::DatasetName;
use crate::error::{Result, UserError};
pub use seed::{parse, DEMO_DATASET};

/// A chat message as sent to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: &'static str,
    pub content: String,
}

/// One sample: the messages of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub messages: Vec<Message>,
    /// A prompt-only source's text, sent as is by the completions API (the chat API sends it as
    /// one user message, in `messages`).
    pub prompt: Option<String>,
    /// The sample's own answer length, which overrides `--max-tokens`.
    pub max_tokens: Option<u32>,
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    /// Which format it was read as (given, or detected).
    pub name: DatasetName,
    /// Entries left out as unusable (ShareGPT conversations without a human turn, or with
    /// another role).
    pub skipped: u64,
}

/// Reads and validates the dataset at `path`, in format `name` or, without one, the format the
/// file shows: a `.jsonl` name, or a first line that is an object with `messages` or `prompt`, is
/// JSONL; an array whose first sample has `conversations` is ShareGPT; anything else is read as
/// the seed's format (whose errors then say what that format expects).
pub fn load(path: &Path, name: Option<DatasetName>) -> Result<Dataset> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path)
        .map_err(|e| UserError::input(format!("cannot read dataset '{shown}': {e}")))?;
    let jsonl_name = path.extension().is_some_and(|e| e == "jsonl");
    let name = name.unwrap_or_else(|| detect(&bytes, jsonl_name));
    let (samples, skipped) = match name {
        DatasetName::Seed => (parse(&bytes, &shown)?, 0),
        DatasetName::Sharegpt => sharegpt::parse(&bytes, &shown)?,
        DatasetName::Jsonl => (jsonl::parse(&bytes, &shown)?, 0),
    };
    Ok(Dataset {
        samples,
        name,
        skipped,
    })
}

/// The format a file shows (see [`load`]).
fn detect(bytes: &[u8], jsonl_name: bool) -> DatasetName {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| bytes[i]) {
        _ if jsonl_name => DatasetName::Jsonl,
        Some(b'{') => {
            let first_line = bytes[start.unwrap_or(0)..].split(|&b| b == b'\n').next();
            let line = String::from_utf8_lossy(first_line.unwrap_or_default());
            if line.contains("\"messages\"") || line.contains("\"prompt\"") {
                DatasetName::Jsonl
            } else {
                DatasetName::Seed
            }
        }
        Some(b'[') => {
            // The first sample's keys decide; a bounded head of the text is enough to see them.
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
            let conversations = text.find("\"conversations\"");
            let seed = text.find("\"prompt_content\"");
            match (conversations, seed) {
                (Some(c), Some(s)) if c < s => DatasetName::Sharegpt,
                (Some(_), None) => DatasetName::Sharegpt,
                _ => DatasetName::Seed,
            }
        }
        _ => DatasetName::Seed,
    }
}

/// The file's JSON array of `what` (e.g. "samples"); the error says where the JSON broke or
/// what was found instead.
pub(crate) fn json_array(bytes: &[u8], what: &str) -> std::result::Result<Vec<Value>, String> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "invalid JSON at line {} column {}: {}",
            e.line(),
            e.column(),
            strip_position(&e.to_string())
        )
    })?;
    match root {
        Value::Array(items) => Ok(items),
        other => Err(format!(
            "expected a JSON array of {what}, found {}",
            kind(&other)
        )),
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// serde_json appends " at line X column Y"; the message already says where.
pub(crate) fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_and_a_seed_mistake_stays_a_seed_error() {
        assert_eq!(
            detect(b"[{\"prompt_content\":\"p\"}]", false),
            DatasetName::Seed
        );
        let sharegpt = b"[{\"id\":1,\"conversations\":[]}]";
        assert_eq!(detect(sharegpt, false), DatasetName::Sharegpt);
        assert_eq!(detect(b"{\"prompt\":\"x\"}\n", false), DatasetName::Jsonl);
        assert_eq!(detect(b"  {\"messages\":[]}", false), DatasetName::Jsonl);
        // An object that is no JSONL sample is a seed-format file written wrong.
        assert_eq!(
            detect(b"{\"prompt_content\":\"x\"}", false),
            DatasetName::Seed
        );
        assert_eq!(
            detect(b"{\"prompt_content\":\"x\"}", true),
            DatasetName::Jsonl
        );
    }
}
