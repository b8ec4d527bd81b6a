//! The dataset: the samples a run sends, loaded and validated before the first request.
//!
//! Data flow: `bench` loads it once (`load`); `prepared` renders each row's HTTP request. A row
//! is either a [`Sample`] read from a file (a chat message list, and from a prompt-only source
//! the raw prompt the completions API sends as is), or a synthetic prompt made of spans of a
//! shared text ([`Synthetic`]); either may carry its own `max_tokens`. Sources, one module each:
//! the spec's conversations file (`seed`, the default), ShareGPT dumps (`sharegpt`),
//! OpenAI-style JSONL (`jsonl`), Mooncake traces (`mooncake`) and synthetic prompts of drawn
//! lengths (`random`). Every error names the file, the sample or line, the field, and what was
//! expected.

pub mod conversations;
mod jsonl;
pub mod mooncake;
mod random;
mod sharegpt;
mod spec_format;
pub mod synthetic;
pub mod text;
pub mod vocabulary;

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

pub use crate::cli::DatasetName;
use crate::cli::WorkloadArgs;
use crate::foundation::error::{Result, UserError};
pub use mooncake::Trace;
pub use spec_format::{parse, DEMO_DATASET};
pub use synthetic::Synthetic;

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

/// A dataset's rows.
#[derive(Debug)]
pub enum Rows {
    /// Read from a file: each sample's text.
    Samples(Vec<Sample>),
    /// Synthetic prompts (`random`, `mooncake`).
    Synthetic(Synthetic),
}

impl Rows {
    pub fn len(&self) -> usize {
        match self {
            Rows::Samples(s) => s.len(),
            Rows::Synthetic(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A loaded dataset.
#[derive(Debug)]
pub struct Dataset {
    /// Shared with the run's rendered requests (`prepared::RunRequests`).
    pub rows: std::sync::Arc<Rows>,
    /// Which format it was read as (given, or detected).
    pub name: DatasetName,
    /// Entries left out as unusable (ShareGPT conversations without a human turn, or with
    /// another role).
    pub skipped: u64,
    /// The source's parameters, for metadata.json (`random`'s flags; null for files).
    pub params: Value,
    /// A trace's timing (`mooncake`).
    pub trace: Option<Trace>,
}

impl Dataset {
    /// Samples read from a file, in the spec's format or another.
    pub fn from_samples(samples: Vec<Sample>, name: DatasetName, skipped: u64) -> Self {
        Self {
            rows: std::sync::Arc::new(Rows::Samples(samples)),
            name,
            skipped,
            params: Value::Null,
            trace: None,
        }
    }
}

/// Bytes of a file's head that format detection reads.
const DETECT_HEAD: u64 = 64 * 1024;

/// The `random` dataset: synthetic prompts, drawn with `seed` (no file).
pub fn random(w: &WorkloadArgs, seed: u64) -> Dataset {
    Dataset {
        rows: std::sync::Arc::new(Rows::Synthetic(random::build(w, seed))),
        name: DatasetName::Random,
        skipped: 0,
        params: random::params(w, seed),
        trace: None,
    }
}

/// Reads and validates the dataset at `path`, in format `name` or, without one, the format the
/// file shows: a first line that is an object with `input_length` or `input_tokens` is a
/// Mooncake trace; a `.jsonl` name, or a first line that is an object with `messages` or
/// `prompt`, is JSONL; an array whose first sample has `conversations` is ShareGPT; anything else
/// is read as the spec's format (whose errors then say what that format expects).
pub fn load(path: &Path, name: Option<DatasetName>) -> Result<Dataset> {
    let shown = path.display().to_string();
    let cannot =
        |e: std::io::Error| UserError::input(format!("cannot read dataset '{shown}': {e}"));
    let name = match name {
        Some(n) => n,
        None => {
            let mut head = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(DETECT_HEAD).read_to_end(&mut head))
                .map_err(cannot)?;
            detect(&head, path.extension().is_some_and(|e| e == "jsonl"))
        }
    };
    if name == DatasetName::Mooncake {
        // Read a line at a time: a trace may have millions of rows.
        let file = std::fs::File::open(path).map_err(cannot)?;
        let (set, trace) = mooncake::parse(std::io::BufReader::new(file), &shown)?;
        return Ok(Dataset {
            rows: std::sync::Arc::new(Rows::Synthetic(set)),
            name,
            skipped: 0,
            params: serde_json::json!({ "block_tokens": mooncake::BLOCK_TOKENS }),
            trace: Some(trace),
        });
    }
    let bytes = std::fs::read(path).map_err(cannot)?;
    let (samples, skipped) = match name {
        DatasetName::Sharegpt => sharegpt::parse(&bytes, &shown)?,
        DatasetName::Jsonl => (jsonl::parse(&bytes, &shown)?, 0),
        DatasetName::Random => {
            return Err(UserError::input(
                "--dataset-name random makes its own prompts: it reads no --dataset file",
            ))
        }
        DatasetName::Seed | DatasetName::Mooncake => (parse(&bytes, &shown)?, 0),
    };
    check_user_turns(&samples, &shown)?;
    Ok(Dataset::from_samples(samples, name, skipped))
}

/// Every row must ask something: a row with no user message (only a system prompt or the
/// assistant's turns) is refused, naming it, rather than sent as a request with nothing to
/// answer, which servers refuse or answer with nothing to measure.
fn check_user_turns(samples: &[Sample], shown: &str) -> Result<()> {
    let bad = samples
        .iter()
        .position(|s| s.prompt.is_none() && !s.messages.iter().any(|m| m.role == "user"));
    let Some(i) = bad else {
        return Ok(());
    };
    let roles: Vec<&str> = samples[i].messages.iter().map(|m| m.role).collect();
    let count = samples
        .iter()
        .filter(|s| s.prompt.is_none() && !s.messages.iter().any(|m| m.role == "user"))
        .count();
    Err(UserError::input(format!(
        "dataset '{shown}': sample {i} has no user message (its roles: {}); expected at least one user turn in every sample ({count} sample{} lack{} one)",
        if roles.is_empty() { "none".to_string() } else { roles.join(", ") },
        if count == 1 { "" } else { "s" },
        if count == 1 { "s" } else { "" }
    )))
}

/// The format a file shows (see [`load`]).
fn detect(bytes: &[u8], jsonl_name: bool) -> DatasetName {
    let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let first_line = || {
        let line = bytes[start.unwrap_or(0)..].split(|&b| b == b'\n').next();
        String::from_utf8_lossy(line.unwrap_or_default()).into_owned()
    };
    match start.map(|i| bytes[i]) {
        Some(b'{')
            if ["\"input_length\"", "\"input_tokens\""]
                .iter()
                .any(|k| first_line().contains(k)) =>
        {
            DatasetName::Mooncake
        }
        _ if jsonl_name => DatasetName::Jsonl,
        Some(b'{') => {
            let line = first_line();
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
            let spec_format = text.find("\"prompt_content\"");
            match (conversations, spec_format) {
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
    fn formats_are_detected_and_a_spec_format_mistake_stays_a_spec_format_error() {
        assert_eq!(
            detect(b"[{\"prompt_content\":\"p\"}]", false),
            DatasetName::Seed
        );
        let sharegpt = b"[{\"id\":1,\"conversations\":[]}]";
        assert_eq!(detect(sharegpt, false), DatasetName::Sharegpt);
        assert_eq!(detect(b"{\"prompt\":\"x\"}\n", false), DatasetName::Jsonl);
        assert_eq!(detect(b"  {\"messages\":[]}", false), DatasetName::Jsonl);
        // An object that is no JSONL sample is a spec-format file written wrong.
        assert_eq!(
            detect(b"{\"prompt_content\":\"x\"}", false),
            DatasetName::Seed
        );
        assert_eq!(
            detect(b"{\"prompt_content\":\"x\"}", true),
            DatasetName::Jsonl
        );
        let trace = b"{\"timestamp\": 0, \"input_length\": 9, \"output_length\": 2}\n";
        assert_eq!(detect(trace, true), DatasetName::Mooncake);
        assert_eq!(detect(trace, false), DatasetName::Mooncake);
    }
}
