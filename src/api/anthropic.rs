//! Anthropic Messages API stream events (`POST /v1/messages`): what one SSE event's JSON says,
//! read into the same `openai::ChunkInfo` the chat stream gives, so the stream handler measures
//! both alike. The event's kind is its JSON's `type` (the SSE `event:` line repeats it).
//!
//! - `content_block_delta` carries `text_delta` (answer text) or `thinking_delta` (reasoning);
//! - `message_start` (`message.usage`) and `message_delta` (`usage`, and `delta.stop_reason`)
//!   carry the counts: prompt = `input_tokens` + `cache_read_input_tokens` +
//!   `cache_creation_input_tokens` (Anthropic and llama.cpp leave cache reads out of
//!   `input_tokens`), cached = `cache_read_input_tokens`, output = `output_tokens`; the last
//!   value seen wins;
//! - `message_stop` ends the stream; `error` fails it with its message; `ping` and the block
//!   starts and stops say nothing measured.
//!
//! Data flow: `sse` → `openai::ChunkParser::parse_with(…, inspect)` → `engine::stream`.

use simd_json::prelude::*;
use simd_json::tape::Value;

use crate::api::openai::{at, non_empty_str, string_at, ChunkInfo};

/// Reads one Messages event's JSON.
pub fn inspect(root: Value<'_, '_>, answer: Option<&mut Vec<u8>>) -> ChunkInfo {
    let mut info = ChunkInfo::default();
    let kind = at(root, &["type"]);
    match kind.as_ref().and_then(|t| t.as_str()).unwrap_or("") {
        "content_block_delta" => {
            if let Some(delta) = at(root, &["delta"]).and_then(|d| d.as_object()) {
                delta_text(&mut info, delta, answer);
            }
        }
        "message_start" => {
            if let Some(usage) = at(root, &["message", "usage"]) {
                read_usage(&mut info, usage);
            }
        }
        "message_delta" => {
            if let Some(usage) = at(root, &["usage"]) {
                read_usage(&mut info, usage);
            }
            let stop = at(root, &["delta", "stop_reason"]);
            info.finished |= stop.is_some_and(|s| !s.is_null());
        }
        "message_stop" => info.finished = true,
        "error" => {
            let message = string_at(root, &["error", "message"]);
            info.error = Some(message.unwrap_or_else(|| "unknown error".to_owned()));
        }
        _ => {}
    }
    info
}

/// A content block's delta: answer text (kept for a session) or reasoning.
fn delta_text(
    info: &mut ChunkInfo,
    delta: simd_json::tape::Object<'_, '_>,
    answer: Option<&mut Vec<u8>>,
) {
    let kind = delta.get("type");
    match kind.as_ref().and_then(|t| t.as_str()).unwrap_or("") {
        "text_delta" => {
            if let Some(text) = delta.get("text") {
                info.has_output |= non_empty_str(text);
                info.has_answer |= non_empty_str(text);
                if let Some(out) = answer {
                    out.extend_from_slice(text.as_str().unwrap_or_default().as_bytes());
                }
            }
        }
        "thinking_delta" => {
            info.has_output |= delta.get("thinking").is_some_and(non_empty_str);
        }
        _ => {}
    }
}

/// A `usage` object's counts (the last value seen wins, as each event repeats or updates them).
fn read_usage(info: &mut ChunkInfo, usage: Value<'_, '_>) {
    let Some(u) = usage.as_object() else {
        return;
    };
    let n = |k: &str| u.get(k).and_then(|v| v.as_u64());
    let (input, read, created) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    if input.is_some() || read.is_some() {
        // Saturating: a server's (or a fuzzer's) absurd counts must not overflow.
        let total = input
            .unwrap_or(0)
            .saturating_add(read.unwrap_or(0))
            .saturating_add(created.unwrap_or(0));
        info.prompt_tokens = Some(total);
        info.cached_tokens = Some(read.unwrap_or(0));
    }
    if let Some(out) = n("output_tokens") {
        info.completion_tokens = Some(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::ChunkParser;

    fn parse(s: &str) -> ChunkInfo {
        crate::api::openai::read(inspect, s)
    }

    #[test]
    fn text_and_thinking_deltas() {
        let t = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        );
        assert!(t.has_output && t.has_answer);
        let r = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
        );
        assert!(r.has_output && !r.has_answer);
        let e = parse(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#,
        );
        assert!(!e.has_output);
        assert_eq!(parse(r#"{"type":"ping"}"#), ChunkInfo::default());
        let mut kept = Vec::new();
        ChunkParser::new()
            .parse_with(
                br#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a\"b"}}"#,
                Some(&mut kept),
                inspect,
            )
            .unwrap();
        assert_eq!(kept, b"a\"b");
    }

    #[test]
    fn usage_counts_cache_reads_in_the_prompt_and_the_stop_ends_it() {
        let s = parse(
            r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":1}}}"#,
        );
        assert_eq!(
            (s.prompt_tokens, s.cached_tokens, s.completion_tokens),
            (Some(105), Some(90), Some(1))
        );
        assert!(!s.finished);
        let d = parse(
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":16}}"#,
        );
        assert_eq!((d.completion_tokens, d.prompt_tokens), (Some(16), None));
        assert!(d.finished);
        assert!(parse(r#"{"type":"message_stop"}"#).finished);
        let err =
            parse(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#);
        assert_eq!(err.error.as_deref(), Some("Overloaded"));
    }
}
