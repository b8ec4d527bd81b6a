//! OpenAI chat-completion chunk payloads: what one SSE event's JSON says about the stream.
//!
//! Data flow: `sse` hands each event's `data` to [`ChunkParser::parse`]; the result tells the
//! request's exchange (`engine::request`) whether the chunk carried output (content or
//! reasoning text), ended the choice (`finish_reason`), reported `usage`, or was an `error`.
//!
//! simd-json mutates its input, so the payload is copied once into a reused scratch buffer that
//! carries simd-json's padding (so simd-json need not copy it again) and parsed into a reused tape
//! with reused buffers: one copy and no allocation per chunk once warm.

use simd_json::prelude::*;
use simd_json::tape::Tape;
use simd_json::Buffers;

/// What one chunk contributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The chunk carries non-empty `content` or reasoning text (role-only chunks do not).
    pub has_output: bool,
    /// The chunk carries non-empty answer text (`content`, or a completion's `text`), not only
    /// reasoning: the time to first *output* token (TTFOT) is stamped on it.
    pub has_answer: bool,
    /// `usage.completion_tokens_details.reasoning_tokens`, when present.
    pub reasoning_tokens: Option<u64>,
    /// A choice carried a non-null `finish_reason`.
    pub finished: bool,
    /// `usage.completion_tokens`, when present.
    pub completion_tokens: Option<u64>,
    /// `usage.prompt_tokens`, when present.
    pub prompt_tokens: Option<u64>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens the server took from its
    /// prefix cache (OpenAI, llama.cpp; vLLM with `--enable-prompt-tokens-details`, SGLang with
    /// `--enable-cache-report`), when present.
    pub cached_tokens: Option<u64>,
    /// An `{"error": …}` object: its message.
    pub error: Option<String>,
    /// The built-in endpoint's send time (`qpsbench_sent_ns`, with `serve-mock --stamp-chunks`).
    pub sent_stamp_ns: Option<u64>,
}

/// The payload is not JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidJson;

/// Reusable parser state; one per core.
pub struct ChunkParser {
    scratch: Vec<u8>,
    buffers: Buffers,
    /// Kept empty between calls; `'static` only because it holds nothing then.
    tape: Option<Tape<'static>>,
}

impl Default for ChunkParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkParser {
    pub fn new() -> Self {
        Self {
            scratch: Vec::with_capacity(1024),
            buffers: Buffers::new(1024),
            tape: Some(Tape::null().reset()),
        }
    }

    /// Parses one event's data.
    pub fn parse(&mut self, data: &[u8]) -> Result<ChunkInfo, InvalidJson> {
        self.parse_with(data, None, inspect)
    }

    /// Parses one event's data into the reused tape and reads it with `inspect`: another API's
    /// event reader (`anthropic`) shares the parser and its buffers.
    pub fn parse_with(
        &mut self,
        data: &[u8],
        answer: Option<&mut Vec<u8>>,
        inspect: Inspect,
    ) -> Result<ChunkInfo, InvalidJson> {
        self.scratch.clear();
        self.scratch.extend_from_slice(data);
        let mut tape = self
            .tape
            .take()
            .unwrap_or_else(|| Tape::null().reset())
            .reset();
        let result = match simd_json::fill_tape(&mut self.scratch, &mut self.buffers, &mut tape) {
            Ok(()) => Ok(inspect(tape.as_value(), answer)),
            Err(_) => Err(InvalidJson),
        };
        self.tape = Some(tape.reset());
        result
    }
}

/// What reads one parsed event: its JSON, and where a session keeps the answer's text.
pub type Inspect = fn(simd_json::tape::Value<'_, '_>, Option<&mut Vec<u8>>) -> ChunkInfo;

/// The value at `path` through nested objects (each step the first key of its name, as a lookup
/// finds it); None where a step is missing or not an object. The Messages and Responses
/// readers' events nest what they carry a level or two down.
pub fn at<'t, 'i>(
    root: simd_json::tape::Value<'t, 'i>,
    path: &[&str],
) -> Option<simd_json::tape::Value<'t, 'i>> {
    let mut v = root;
    for key in path {
        v = v.as_object()?.get(key)?;
    }
    Some(v)
}

/// A string at `path` ([`at`]), owned: an error's message.
pub fn string_at(root: simd_json::tape::Value<'_, '_>, path: &[&str]) -> Option<String> {
    at(root, path).and_then(|v| v.as_str().map(str::to_owned))
}

/// One event's JSON read by `inspect` (the readers' unit tests).
#[cfg(test)]
pub fn read(inspect: Inspect, json: &str) -> ChunkInfo {
    ChunkParser::new()
        .parse_with(json.as_bytes(), None, inspect)
        .unwrap()
}

pub fn non_empty_str(v: simd_json::tape::Value<'_, '_>) -> bool {
    v.as_str().is_some_and(|s| !s.is_empty())
}

/// One pass over each object: `Object::get` scans every key, so looking up several keys (most of
/// them absent in a typical chunk) would walk the same object again and again.
pub fn inspect(
    root: simd_json::tape::Value<'_, '_>,
    mut answer: Option<&mut Vec<u8>>,
) -> ChunkInfo {
    let mut info = ChunkInfo::default();
    let Some(obj) = root.as_object() else {
        return info;
    };
    for (key, value) in &obj {
        match key {
            "choices" => {
                let Some(choices) = value.as_array() else {
                    continue;
                };
                for choice in &choices {
                    let Some(choice) = choice.as_object() else {
                        continue;
                    };
                    for (key, value) in &choice {
                        match key {
                            "delta" => {
                                let Some(delta) = value.as_object() else {
                                    continue;
                                };
                                for (key, value) in &delta {
                                    if matches!(key, "content" | "reasoning_content" | "reasoning")
                                    {
                                        info.has_output |= non_empty_str(value);
                                    }
                                    if key == "content" {
                                        info.has_answer |= non_empty_str(value);
                                    }
                                    if let (Some(out), "content") = (answer.as_mut(), key) {
                                        out.extend_from_slice(
                                            value.as_str().unwrap_or_default().as_bytes(),
                                        );
                                    }
                                }
                            }
                            // Legacy completions-style chunks carry `text`.
                            "text" => {
                                info.has_output |= non_empty_str(value);
                                info.has_answer |= non_empty_str(value);
                            }
                            "finish_reason" => info.finished |= !value.is_null(),
                            _ => {}
                        }
                    }
                }
            }
            "usage" => {
                let Some(usage) = value.as_object() else {
                    continue;
                };
                for (key, value) in &usage {
                    match key {
                        "completion_tokens" => info.completion_tokens = value.as_u64(),
                        "prompt_tokens" => info.prompt_tokens = value.as_u64(),
                        "completion_tokens_details" => {
                            if let Some(r) =
                                value.as_object().and_then(|d| d.get("reasoning_tokens"))
                            {
                                info.reasoning_tokens = r.as_u64();
                            }
                        }
                        "prompt_tokens_details" => {
                            if let Some(cached) =
                                value.as_object().and_then(|d| d.get("cached_tokens"))
                            {
                                info.cached_tokens = cached.as_u64();
                            }
                        }
                        _ => {}
                    }
                }
            }
            "qpsbench_sent_ns" => info.sent_stamp_ns = value.as_u64(),
            "error" if !value.is_null() => {
                let message = value
                    .as_object()
                    .and_then(|e| e.get("message"))
                    .and_then(|m| m.as_str().map(str::to_owned))
                    .or_else(|| value.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown error".to_owned());
                info.error = Some(message);
            }
            _ => {}
        }
    }
    if info.error.is_some() {
        // An error object means the stream failed, whatever else the chunk says.
        info.has_output = false;
        info.has_answer = false;
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ChunkInfo {
        ChunkParser::new().parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn the_answer_text_is_kept_decoded_without_reasoning() {
        let mut p = ChunkParser::new();
        let mut answer = Vec::new();
        for chunk in [
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#,
            r#"{"choices":[{"delta":{"content":"Say \"hi\"\n"}}]}"#,
            r#"{"choices":[{"delta":{"content":"\u00e9"}}]}"#,
        ] {
            p.parse_with(chunk.as_bytes(), Some(&mut answer), inspect)
                .unwrap();
        }
        assert_eq!(answer, "Say \"hi\"\né".as_bytes());
    }

    #[test]
    fn answer_text_is_told_from_reasoning_and_reasoning_tokens_read_from_usage() {
        let p = |s: &str| ChunkParser::new().parse(s.as_bytes()).unwrap();
        let r = p(r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#);
        assert!(r.has_output && !r.has_answer);
        let r = p(r#"{"choices":[{"delta":{"reasoning":"hmm","content":""}}]}"#);
        assert!(r.has_output && !r.has_answer);
        let a = p(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#);
        assert!(a.has_output && a.has_answer);
        assert!(p(r#"{"choices":[{"text":"Hi"}]}"#).has_answer);
        let u = p(
            r#"{"choices":[],"usage":{"completion_tokens":30,"completion_tokens_details":{"reasoning_tokens":20}}}"#,
        );
        assert_eq!(
            (u.completion_tokens, u.reasoning_tokens),
            (Some(30), Some(20))
        );
    }

    #[test]
    fn content_role_reasoning_finish_usage() {
        assert!(
            parse(r#"{"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#)
                .has_output
        );
        let role = parse(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert!(!role.has_output && !role.finished);
        assert!(parse(r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#).has_output);
        assert!(parse(r#"{"choices":[{"delta":{"reasoning":"hmm","content":null}}]}"#).has_output);
        let fin = parse(r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#);
        assert!(fin.finished && !fin.has_output);
        let u = parse(
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}"#,
        );
        assert_eq!((u.prompt_tokens, u.completion_tokens), (Some(12), Some(34)));
        assert_eq!(u.cached_tokens, None);
        let cached = parse(
            r#"{"choices":[],"usage":{"prompt_tokens":160,"completion_tokens":32,"prompt_tokens_details":{"cached_tokens":144}}}"#,
        );
        assert_eq!(cached.cached_tokens, Some(144));
        let null = parse(r#"{"usage":{"prompt_tokens":9,"prompt_tokens_details":null}}"#);
        assert_eq!((null.prompt_tokens, null.cached_tokens), (Some(9), None));
        assert_eq!(
            parse(r#"{"choices":[{"delta":{"content":"x"}}],"usage":null}"#).completion_tokens,
            None
        );
    }

    #[test]
    fn error_objects() {
        let e =
            parse(r#"{"error":{"message":"model overloaded","type":"server_error","code":503}}"#);
        assert_eq!(e.error.as_deref(), Some("model overloaded"));
        assert_eq!(parse(r#"{"error":"boom"}"#).error.as_deref(), Some("boom"));
        assert_eq!(parse(r#"{"error":null,"choices":[]}"#).error, None);
    }

    #[test]
    fn invalid_json_and_reuse() {
        let mut p = ChunkParser::new();
        assert_eq!(p.parse(b"{not json"), Err(InvalidJson));
        for _ in 0..3 {
            assert!(
                p.parse(br#"{"choices":[{"delta":{"content":"again"}}]}"#)
                    .unwrap()
                    .has_output
            );
        }
    }

    #[test]
    fn recorded_stream_counts() {
        let mut p = ChunkParser::new();
        let mut out = 0;
        let mut usage = None;
        let mut sse = crate::http::sse::SseParser::new();
        sse.feed(include_bytes!("../../tests/data/vllm_stream.sse"), |e| {
            if !e.is_done() {
                let c = p.parse(e.data).unwrap();
                out += usize::from(c.has_output);
                usage = usage.or(c.completion_tokens);
            }
            crate::http::sse::Flow::Continue
        })
        .unwrap();
        assert_eq!(out, 20);
        assert_eq!(usage, Some(20));
    }
}
