//! The event readers' fuzz property ([`check`], which the chat chunk target shares) and the
//! Messages and Responses readers' targets (`fuzz/fuzz_targets/messages.rs`,
//! `responses.rs`): arbitrary bytes never panic, a payload reads the same twice, and a payload
//! that serde_json parses reads as a reference written from the rules in `api::anthropic` and
//! `api::responses` says, over serde_json's parse. A lookup by key finds the first key of that
//! name, as the tape's does.

use super::Json;
use crate::api::openai::{ChunkInfo, ChunkParser, Inspect};

/// Messages events (`api::anthropic::inspect`).
pub fn messages(data: &[u8]) {
    check(data, crate::api::anthropic::inspect, reference_messages);
}

/// Responses events (`api::responses::inspect`).
pub fn responses(data: &[u8]) {
    check(data, crate::api::responses::inspect, reference_responses);
}

/// The reader `inspect` never panics, reads `data` the same twice, and, where serde_json parses
/// it, reads it as `reference` does; it keeps answer text only where the reference sees an answer
/// (or an error, which ends the stream anyway).
pub(super) fn check(data: &[u8], inspect: Inspect, reference: fn(&Json) -> ChunkInfo) {
    let mut p = ChunkParser::new();
    let mut kept = Vec::new();
    let first = p.parse_with(data, Some(&mut kept), inspect);
    assert_eq!(first, p.parse_with(data, None, inspect));
    // "-0" is an integer to simd-json and a float to serde_json: no common answer to compare.
    if memchr::memmem::find(data, b"-0").is_some() {
        return;
    }
    if let (Ok(info), Ok(json)) = (&first, serde_json::from_slice::<Json>(data)) {
        let want = reference(&json);
        assert_eq!(*info, want, "{}", String::from_utf8_lossy(data));
        // Only answer text is kept for a session's history.
        assert!(
            kept.is_empty() || want.has_answer,
            "{}",
            String::from_utf8_lossy(data)
        );
    }
}

/// The first value of `key` in `v`, when `v` is an object.
fn first<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    match v {
        Json::Object(p) => p.iter().find(|(k, _)| k == key).map(|(_, v)| v),
        _ => None,
    }
}

fn string(v: Option<&Json>) -> Option<&str> {
    match v {
        Some(Json::String(s)) => Some(s),
        _ => None,
    }
}

fn uint(v: Option<&Json>) -> Option<u64> {
    match v {
        Some(Json::Number(n)) => n.as_u64(),
        _ => None,
    }
}

fn text(v: Option<&Json>) -> bool {
    string(v).is_some_and(|s| !s.is_empty())
}

fn is_object(v: Option<&Json>) -> bool {
    matches!(v, Some(Json::Object(_)))
}

/// The Messages rules: `content_block_delta` with `text_delta` (answer) or `thinking_delta`
/// (reasoning); usage in `message_start.message` and `message_delta`, the prompt being input +
/// cache reads + cache writes; a non-null `stop_reason` or `message_stop` ends it; `error`
/// fails it.
pub fn reference_messages(root: &Json) -> ChunkInfo {
    let mut info = ChunkInfo::default();
    if !matches!(root, Json::Object(_)) {
        return info;
    }
    match string(first(root, "type")).unwrap_or("") {
        "content_block_delta" => {
            let delta = first(root, "delta").filter(|d| is_object(Some(d)));
            if let Some(d) = delta {
                match string(first(d, "type")).unwrap_or("") {
                    "text_delta" => {
                        info.has_output |= text(first(d, "text"));
                        info.has_answer |= text(first(d, "text"));
                    }
                    "thinking_delta" => info.has_output |= text(first(d, "thinking")),
                    _ => {}
                }
            }
        }
        "message_start" => {
            let message = first(root, "message").filter(|m| is_object(Some(m)));
            if let Some(usage) = message.and_then(|m| first(m, "usage")) {
                messages_usage(&mut info, usage);
            }
        }
        "message_delta" => {
            if let Some(usage) = first(root, "usage") {
                messages_usage(&mut info, usage);
            }
            let delta = first(root, "delta").filter(|d| is_object(Some(d)));
            let stop = delta.and_then(|d| first(d, "stop_reason"));
            info.finished |= stop.is_some_and(|s| !matches!(s, Json::Null));
        }
        "message_stop" => info.finished = true,
        "error" => {
            let error = first(root, "error").filter(|e| is_object(Some(e)));
            let message = string(error.and_then(|e| first(e, "message")));
            info.error = Some(message.unwrap_or("unknown error").to_owned());
        }
        _ => {}
    }
    info
}

fn messages_usage(info: &mut ChunkInfo, usage: &Json) {
    if !is_object(Some(usage)) {
        return;
    }
    let n = |k: &str| uint(first(usage, k));
    let (input, read, created) = (
        n("input_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    );
    if input.is_some() || read.is_some() {
        let total = [input, read, created]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(b.unwrap_or(0)));
        info.prompt_tokens = Some(total);
        info.cached_tokens = Some(read.unwrap_or(0));
    }
    if let Some(out) = n("output_tokens") {
        info.completion_tokens = Some(out);
    }
}

/// The Responses rules: `response.output_text.delta` (answer) and the reasoning deltas;
/// `response.completed` or `response.incomplete` end it with `response.usage`;
/// `response.failed` and `error` fail it.
pub fn reference_responses(root: &Json) -> ChunkInfo {
    let mut info = ChunkInfo::default();
    if !matches!(root, Json::Object(_)) {
        return info;
    }
    match string(first(root, "type")).unwrap_or("") {
        "response.output_text.delta" => {
            info.has_output |= text(first(root, "delta"));
            info.has_answer |= text(first(root, "delta"));
        }
        "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
            info.has_output |= text(first(root, "delta"));
        }
        "response.completed" | "response.incomplete" => {
            info.finished = true;
            let response = first(root, "response").filter(|r| is_object(Some(r)));
            let usage = response.and_then(|r| first(r, "usage"));
            if let Some(u) = usage.filter(|u| is_object(Some(u))) {
                let detail = |outer: &str, inner: &str| {
                    let d = first(u, outer).filter(|d| is_object(Some(d)));
                    uint(d.and_then(|d| first(d, inner)))
                };
                info.prompt_tokens = uint(first(u, "input_tokens"));
                info.completion_tokens = uint(first(u, "output_tokens"));
                info.cached_tokens = detail("input_tokens_details", "cached_tokens");
                info.reasoning_tokens = detail("output_tokens_details", "reasoning_tokens");
            }
        }
        "response.failed" => {
            let response = first(root, "response").filter(|r| is_object(Some(r)));
            let error = response
                .and_then(|r| first(r, "error"))
                .filter(|e| is_object(Some(e)));
            let message = string(error.and_then(|e| first(e, "message")));
            info.error = Some(message.unwrap_or("response failed").to_owned());
        }
        "error" => {
            let message = string(first(root, "message"));
            info.error = Some(message.unwrap_or("unknown error").to_owned());
        }
        _ => {}
    }
    info
}
