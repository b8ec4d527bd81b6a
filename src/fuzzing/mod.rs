//! Beside the layers (`docs/architecture.md`, "Code map"): test support, used by `fuzz/` and the
//! corpus replay test, never by the commands.
//!
//! The properties the fuzz targets in `fuzz/` check, as plain functions (`events`: the Messages
//! and Responses readers'): the cargo-fuzz targets
//! call them with libFuzzer's inputs, and `tests/it/fuzz_corpus.rs` replays the checked-in
//! starting corpus (`fuzz/seeds/`) through them on the stable toolchain. Each panics when its property
//! fails, as a fuzz target must.

mod events;

pub use events::{messages, reference_messages, reference_responses, responses};

use crate::http::body::{BodyDecoder, Framing};
use crate::http::head::parse_head;
use crate::http::sse::{Flow, SseParser};

fn sse_events(input: &[u8], split: usize) -> Option<Vec<(Vec<u8>, bool)>> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for part in [&input[..split], &input[split..]] {
        p.feed(part, |e| {
            out.push((e.data.to_vec(), e.error_event));
            Flow::Continue
        })
        .ok()?;
    }
    Some(out)
}

/// SSE parser: never panics, and yields the same events however the input is split. The first
/// byte picks the split point.
pub fn sse(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let split = split.min(input.len());
    assert_eq!(sse_events(input, 0), sse_events(input, split));
}

fn decode(framing: Framing, input: &[u8], split: usize) -> Result<(Vec<u8>, bool), ()> {
    let mut d = BodyDecoder::new(framing);
    let mut body = Vec::new();
    for part in [&input[..split], &input[split..]] {
        let mut piece = part;
        while !piece.is_empty() && !d.is_done() {
            let (n, data) = d.decode(piece).map_err(|_| ())?;
            if let Some(data) = data {
                body.extend_from_slice(data);
            }
            piece = &piece[n..];
        }
    }
    Ok((body, d.is_done()))
}

/// Response head parsing and body framing (chunked decoder included): never panic, and a body
/// decodes to the same data however it is split. The first byte picks the split point.
pub fn http_response(data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize;
    let input = &data[1..];
    if let Ok(Some(head)) = parse_head(input) {
        let body = &input[head.len..];
        let split = split.min(body.len());
        assert_eq!(
            decode(head.framing, body, 0),
            decode(head.framing, body, split)
        );
    }
    let split = split.min(input.len());
    assert_eq!(
        decode(Framing::Chunked, input, 0),
        decode(Framing::Chunked, input, split)
    );
}

/// Chunk payload parsing: never panics, a reused parser gives the same answer twice, and when
/// serde_json also accepts the payload, the fields extracted agree with a plain reading of
/// serde_json's parse ([`reference_chunk`]).
pub fn chunk(data: &[u8]) {
    events::check(data, crate::api::openai::inspect, reference_chunk);
}

/// JSON as parsed by serde_json, with every key of an object kept in order (duplicates
/// included, as the tape that `ChunkParser` walks keeps them).
#[derive(Debug)]
pub enum Json {
    Null,
    Bool,
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Json;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_owned()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Json::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
        let mut v = Vec::new();
        while let Some(kv) = a.next_entry()? {
            v.push(kv);
        }
        Ok(Json::Object(v))
    }
}

/// What a chunk says, read from serde_json's parse with the rules `openai` documents: output is
/// a non-empty `content`, `reasoning_content`, `reasoning` (in `delta`) or `text`; `finish_reason`
/// not null ends a choice; `usage` counts are unsigned integers (the last one given wins); an
/// `error` that is not null is the message of an object, a string, or "unknown error".
pub fn reference_chunk(root: &Json) -> crate::api::openai::ChunkInfo {
    fn pairs(v: &Json) -> Vec<(String, &Json)> {
        match v {
            Json::Object(p) => p.iter().map(|(k, v)| (k.clone(), v)).collect(),
            _ => Vec::new(),
        }
    }
    let mut info = crate::api::openai::ChunkInfo::default();
    let text = |v: &Json| matches!(v, Json::String(s) if !s.is_empty());
    let uint = |v: &Json| match v {
        Json::Number(n) => n.as_u64(),
        _ => None,
    };
    for (key, value) in pairs(root) {
        match key.as_str() {
            "choices" => {
                let Json::Array(choices) = value else {
                    continue;
                };
                for (key, value) in choices.iter().flat_map(pairs) {
                    match key.as_str() {
                        "delta" => {
                            for (key, value) in pairs(value) {
                                if matches!(
                                    key.as_str(),
                                    "content" | "reasoning_content" | "reasoning"
                                ) {
                                    info.has_output |= text(value);
                                }
                                if key == "content" {
                                    info.has_answer |= text(value);
                                }
                            }
                        }
                        "text" => {
                            info.has_output |= text(value);
                            info.has_answer |= text(value);
                        }
                        "finish_reason" => info.finished |= !matches!(value, Json::Null),
                        _ => {}
                    }
                }
            }
            "usage" => {
                for (key, value) in pairs(value) {
                    match key.as_str() {
                        "completion_tokens" => info.completion_tokens = uint(value),
                        "prompt_tokens" => info.prompt_tokens = uint(value),
                        // The first key of that name in each details object, as a lookup by
                        // key finds it.
                        "completion_tokens_details" => {
                            if let Some((_, r)) = pairs(value)
                                .into_iter()
                                .find(|(k, _)| k == "reasoning_tokens")
                            {
                                info.reasoning_tokens = uint(r);
                            }
                        }
                        "prompt_tokens_details" => {
                            if let Some((_, c)) =
                                pairs(value).into_iter().find(|(k, _)| k == "cached_tokens")
                            {
                                info.cached_tokens = uint(c);
                            }
                        }
                        _ => {}
                    }
                }
            }
            "qpsbench_sent_ns" => info.sent_stamp_ns = uint(value),
            "error" if !matches!(value, Json::Null) => {
                let message = match value {
                    Json::Object(p) => {
                        p.iter()
                            .find(|(k, _)| k == "message")
                            .and_then(|(_, m)| match m {
                                Json::String(s) => Some(s.clone()),
                                _ => None,
                            })
                    }
                    Json::String(s) => Some(s.clone()),
                    _ => None,
                };
                info.error = Some(message.unwrap_or_else(|| "unknown error".to_owned()));
            }
            _ => {}
        }
    }
    if info.error.is_some() {
        info.has_output = false;
        info.has_answer = false;
    }
    info
}

/// Prometheus text parser: never panics; every sample has a valid name; and a sample written
/// back in the canonical form reads back the same (name, labels, value; NaN stays NaN).
pub fn prometheus(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = crate::servermetrics::prometheus::parse(&text);
    for s in &parsed.samples {
        let first = s.name.as_bytes()[0];
        assert!(
            first == b'_' || first == b':' || first.is_ascii_alphabetic(),
            "{s:?}"
        );
        let back = crate::servermetrics::prometheus::render(s);
        let again = crate::servermetrics::prometheus::parse(&back);
        assert_eq!(again.samples.len(), 1, "{back:?} from {s:?}");
        let t = &again.samples[0];
        assert_eq!((t.name, &t.labels), (s.name, &s.labels), "{back:?}");
        assert!(
            t.value.to_bits() == s.value.to_bits() || (t.value.is_nan() && s.value.is_nan()),
            "{back:?}: {} vs {}",
            t.value,
            s.value
        );
    }
}
