//! OpenAI Responses API stream events (`POST /v1/responses`): what one SSE event's JSON says,
//! read into the same `openai::ChunkInfo` the chat stream gives. The event's kind is its JSON's
//! `type` (the SSE `event:` line repeats it).
//!
//! - `response.output_text.delta` carries answer text; `response.reasoning_text.delta` and
//!   `response.reasoning_summary_text.delta` carry reasoning;
//! - `response.completed` and `response.incomplete` (`max_output_tokens` reached) end the stream
//!   and carry `response.usage`: `input_tokens`, `output_tokens`,
//!   `output_tokens_details.reasoning_tokens`, `input_tokens_details.cached_tokens`;
//! - `response.failed` (`response.error.message`) and `error` (`message`) fail it; the other
//!   events (`response.created`, the items' and parts' starts and ends) say nothing measured.
//!
//! Data flow: `sse` → `openai::ChunkParser::parse_with(…, inspect)` → `engine::stream`.

use simd_json::prelude::*;
use simd_json::tape::Value;

use crate::api::openai::{at, non_empty_str, string_at, ChunkInfo};

/// Reads one Responses event's JSON.
pub fn inspect(root: Value<'_, '_>, answer: Option<&mut Vec<u8>>) -> ChunkInfo {
    let mut info = ChunkInfo::default();
    let kind = at(root, &["type"]);
    match kind.as_ref().and_then(|t| t.as_str()).unwrap_or("") {
        "response.output_text.delta" => {
            if let Some(text) = at(root, &["delta"]) {
                info.has_output |= non_empty_str(text);
                info.has_answer |= non_empty_str(text);
                if let Some(out) = answer {
                    out.extend_from_slice(text.as_str().unwrap_or_default().as_bytes());
                }
            }
        }
        "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
            info.has_output |= at(root, &["delta"]).is_some_and(non_empty_str);
        }
        "response.completed" | "response.incomplete" => {
            info.finished = true;
            if let Some(usage) = at(root, &["response", "usage"]) {
                read_usage(&mut info, usage);
            }
        }
        "response.failed" => {
            let message = string_at(root, &["response", "error", "message"]);
            info.error = Some(message.unwrap_or_else(|| "response failed".to_owned()));
        }
        "error" => {
            let message = string_at(root, &["message"]);
            info.error = Some(message.unwrap_or_else(|| "unknown error".to_owned()));
        }
        _ => {}
    }
    info
}

/// `response.usage`'s counts.
fn read_usage(info: &mut ChunkInfo, usage: Value<'_, '_>) {
    let Some(u) = usage.as_object() else {
        return;
    };
    let detail = |outer: &str, inner: &str| at(usage, &[outer, inner]).and_then(|v| v.as_u64());
    info.prompt_tokens = u.get("input_tokens").and_then(|v| v.as_u64());
    info.completion_tokens = u.get("output_tokens").and_then(|v| v.as_u64());
    info.cached_tokens = detail("input_tokens_details", "cached_tokens");
    info.reasoning_tokens = detail("output_tokens_details", "reasoning_tokens");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::ChunkParser;

    fn parse(s: &str) -> ChunkInfo {
        crate::api::openai::read(inspect, s)
    }

    #[test]
    fn text_and_reasoning_deltas() {
        let t = parse(r#"{"type":"response.output_text.delta","item_id":"i","delta":"Hi"}"#);
        assert!(t.has_output && t.has_answer);
        for kind in [
            "response.reasoning_text.delta",
            "response.reasoning_summary_text.delta",
        ] {
            let r = parse(&format!(r#"{{"type":"{kind}","delta":"hmm"}}"#));
            assert!(r.has_output && !r.has_answer, "{kind}");
        }
        assert_eq!(
            parse(r#"{"type":"response.created","response":{"id":"r"}}"#),
            ChunkInfo::default()
        );
        let mut kept = Vec::new();
        ChunkParser::new()
            .parse_with(
                br#"{"type":"response.output_text.delta","delta":"a\nb"}"#,
                Some(&mut kept),
                inspect,
            )
            .unwrap();
        assert_eq!(kept, b"a\nb");
    }

    #[test]
    fn completion_and_incompletion_end_it_with_usage_and_failures_fail_it() {
        for kind in ["response.completed", "response.incomplete"] {
            let c = parse(&format!(
                r#"{{"type":"{kind}","response":{{"status":"x","usage":{{"input_tokens":50,"input_tokens_details":{{"cached_tokens":32}},"output_tokens":20,"output_tokens_details":{{"reasoning_tokens":12}},"total_tokens":70}}}}}}"#
            ));
            assert!(c.finished, "{kind}");
            assert_eq!(
                (
                    c.prompt_tokens,
                    c.cached_tokens,
                    c.completion_tokens,
                    c.reasoning_tokens
                ),
                (Some(50), Some(32), Some(20), Some(12))
            );
        }
        let f = parse(
            r#"{"type":"response.failed","response":{"error":{"code":"server_error","message":"boom"}}}"#,
        );
        assert_eq!(f.error.as_deref(), Some("boom"));
        let e = parse(r#"{"type":"error","code":"rate_limit","message":"slow down"}"#);
        assert_eq!(e.error.as_deref(), Some("slow down"));
    }
}
