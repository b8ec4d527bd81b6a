//! Fault modes of the built-in endpoint (`serve-mock --fault MODE[:PROBABILITY]`): the ways
//! overloaded or broken servers answer, on demand, so the client's handling of each can be tried
//! over a real socket. Each request draws its fault (the first listed whose probability hits);
//! the others are served normally.
//!
//! Data flow: `handler::respond` asks [`pick`] for a fault after reading a valid request and, if
//! one comes up, hands the connection to [`serve`] instead of the normal stream.

use std::time::Duration;

use super::events::Events;
use super::wire::{push_chunk, push_response, Io, SSE_HEAD};

/// One way to fail (or, for the last three, an unusual but valid answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// Bytes that are not HTTP, then close.
    Garbage,
    /// Close without answering.
    CloseBeforeHead,
    /// A few tokens, then a TCP reset.
    ResetMidStream,
    /// A few tokens, then close in the middle of a chunk.
    TruncatedChunk,
    /// Never send the response head.
    StallHead,
    /// Send the head (and a role chunk), never a token.
    StallFirstToken,
    /// A few tokens, then nothing more.
    StallBetweenTokens,
    /// A response head over 64 KiB.
    HugeHead,
    /// Tokens forever, never a finish.
    Endless,
    /// A chunk that is not JSON.
    BadJson,
    /// `event: error` with an `{"error": …}` payload.
    ErrorEvent,
    /// A non-streaming JSON completion instead of a stream.
    JsonAnswer,
    /// An HTML 502 page, as a proxy in front of a dead server sends.
    Html502,
    /// 429 with `Retry-After`.
    Retry429,
    /// HTTP/1.0 with a close-delimited body (valid: must succeed).
    Http10,
    /// Chunk extensions and trailers (valid: must succeed).
    ChunkExtensions,
}

/// A fault and how often it strikes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultSpec {
    pub fault: Fault,
    pub probability: f64,
}

/// Parses `MODE[:PROBABILITY]`.
pub fn parse(raw: &str) -> Result<FaultSpec, String> {
    use clap::ValueEnum;
    let (mode, p) = match raw.split_once(':') {
        Some((m, p)) => (m, Some(p)),
        None => (raw, None),
    };
    let fault = Fault::from_str(mode.trim(), true).map_err(|_| {
        let names: Vec<String> = Fault::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!(
            "--fault {raw}: unknown mode '{mode}'; expected one of {}",
            names.join(", ")
        )
    })?;
    let probability = match p {
        None => 1.0,
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => v,
            _ => {
                return Err(format!(
                    "--fault {raw}: the probability must be a number from 0 to 1"
                ))
            }
        },
    };
    Ok(FaultSpec { fault, probability })
}

/// The fault for request number `id`, if any (deterministic in `id`).
pub fn pick(specs: &[FaultSpec], id: u64) -> Option<Fault> {
    use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
    let mut draws = rand_xoshiro::SplitMix64::seed_from_u64(id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    specs.iter().find_map(|s| {
        let u = draws.next_u64() as f64 / u64::MAX as f64;
        (u < s.probability).then_some(s.fault)
    })
}

/// What [`serve`] needs to write chunks: the answer's events, in its API's dialect.
pub(crate) struct Stream<'a> {
    pub events: &'a Events,
    pub tokens: u64,
    pub itl: Duration,
}

/// Token `i`'s event, as one HTTP chunk; `i` counts from the answer's start.
fn token(s: &Stream<'_>, i: u64, out: &mut Vec<u8>) {
    // After any reasoning: the token is the answer's.
    let sent = s.events.counts.reasoning + i;
    s.events.piece(out, &format!(" tok{i}"), sent, "");
}

/// The events of a normal stream, each as its own HTTP chunk, with the body's end.
fn full_stream(s: &Stream<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    s.events.start(&mut out, true, "");
    for i in 0..s.tokens {
        token(s, i, &mut out);
    }
    s.events.finish(&mut out, true, "");
    out
}

/// The SSE text of [`full_stream`], without the HTTP chunking.
fn full_stream_text(s: &Stream<'_>) -> String {
    String::from_utf8(crate::http::body::unchunk(&full_stream(s))).unwrap_or_default()
}

/// Long enough to outlast any client timeout a test sets; the connection ends with the client.
const STALL: Duration = Duration::from_secs(3600);

/// Serves `fault`; returns whether the connection stays open. One arm per family of faults,
/// each written out below.
pub(crate) async fn serve(fault: Fault, io: &mut Io, s: &Stream<'_>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match fault {
        Fault::CloseBeforeHead => false,
        Fault::StallHead => {
            monoio::time::sleep(STALL).await;
            false
        }
        Fault::Garbage | Fault::HugeHead | Fault::Http10 => {
            broken_head(fault, out, s);
            let _ = io.write(out).await;
            false
        }
        Fault::ResetMidStream | Fault::TruncatedChunk | Fault::StallBetweenTokens => {
            broken_stream(fault, io, s, out).await
        }
        Fault::StallFirstToken => {
            out.extend_from_slice(SSE_HEAD);
            s.events.start(out, true, "");
            if io.write(out).await.is_ok() {
                monoio::time::sleep(STALL).await;
            }
            false
        }
        Fault::Endless => endless(io, s, out).await,
        Fault::BadJson | Fault::ErrorEvent | Fault::ChunkExtensions => {
            odd_stream(fault, s, out);
            io.write(out).await.is_ok()
        }
        Fault::JsonAnswer | Fault::Html502 | Fault::Retry429 => {
            canned_response(fault, s, out);
            io.write(out).await.is_ok()
        }
    }
}

/// Answers that end with the connection: not HTTP, a head too large, or HTTP/1.0 with a
/// close-delimited body (valid).
fn broken_head(fault: Fault, out: &mut Vec<u8>, s: &Stream<'_>) {
    match fault {
        Fault::Garbage => out.extend_from_slice(b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n"),
        Fault::HugeHead => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n");
            let pad = "x".repeat(1000);
            for i in 0..70 {
                out.extend_from_slice(format!("X-Pad-{i}: {pad}\r\n").as_bytes());
            }
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        }
        _ => {
            out.extend_from_slice(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n");
            out.extend_from_slice(full_stream_text(s).as_bytes());
        }
    }
}

/// Two tokens, then a reset, half a chunk, or silence.
async fn broken_stream(fault: Fault, io: &mut Io, s: &Stream<'_>, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(SSE_HEAD);
    s.events.start(out, true, "");
    for i in 0..2 {
        token(s, i, out);
    }
    if fault == Fault::TruncatedChunk {
        let mut next = Vec::new();
        token(s, 2, &mut next);
        // Half of the chunk: its size line promises more than comes.
        out.extend_from_slice(&next[..next.len() / 2]);
    }
    if io.write(out).await.is_err() {
        return false;
    }
    match fault {
        Fault::ResetMidStream => io.reset(),
        Fault::StallBetweenTokens => monoio::time::sleep(STALL).await,
        _ => {}
    }
    false
}

/// Tokens forever, one per inter-token latency.
async fn endless(io: &mut Io, s: &Stream<'_>, out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(SSE_HEAD);
    s.events.start(out, true, "");
    let mut i = 0;
    loop {
        token(s, i, out);
        if io.write(out).await.is_err() {
            return false;
        }
        i += 1;
        monoio::time::sleep(s.itl.max(Duration::from_millis(1))).await;
    }
}

/// Streams that arrive whole but say something odd: a chunk that is not JSON, an error event,
/// or (valid) chunk extensions and trailers.
fn odd_stream(fault: Fault, s: &Stream<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(SSE_HEAD);
    if fault == Fault::ChunkExtensions {
        for (i, ev) in full_stream_text(s).split_inclusive("\n\n").enumerate() {
            out.extend_from_slice(format!("{:x};seq={i}\r\n{ev}\r\n", ev.len()).as_bytes());
        }
        out.extend_from_slice(b"0\r\nX-Mock-Trailer: done\r\nX-Other: 1\r\n\r\n");
        return;
    }
    s.events.start(out, true, "");
    token(s, 0, out);
    push_chunk(
        out,
        if fault == Fault::BadJson {
            "data: {\"choices\": [ not json\n\n"
        } else {
            "event: error\ndata: {\"error\":{\"message\":\"mock fault: model overloaded\",\"type\":\"server_error\",\"code\":503}}\n\n"
        },
    );
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Whole answers with a Content-Length: JSON instead of a stream, a proxy's HTML 502, a 429.
fn canned_response(fault: Fault, s: &Stream<'_>, out: &mut Vec<u8>) {
    match fault {
        Fault::JsonAnswer => {
            let body = format!(
                "{}\"object\":\"chat.completion\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"not streamed\"}},\"finish_reason\":\"stop\"}}],\"usage\":{}}}",
                s.events.prefix.replace("chat.completion.chunk", "chat.completion"),
                s.events.usage
            );
            push_response(out, "200 OK", "application/json", "", &body);
        }
        Fault::Html502 => {
            let body = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\r\n";
            push_response(out, "502 Bad Gateway", "text/html", "", body);
        }
        _ => {
            let body = "{\"error\":{\"message\":\"Rate limit reached; retry after 1 s\",\"type\":\"rate_limit_error\",\"code\":429}}";
            push_response(
                out,
                "429 Too Many Requests",
                "application/json",
                "Retry-After: 1\r\n",
                body,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_draw_at_their_rate() {
        assert_eq!(
            parse("html502").unwrap(),
            FaultSpec {
                fault: Fault::Html502,
                probability: 1.0
            }
        );
        assert_eq!(parse("reset-mid-stream:0.25").unwrap().probability, 0.25);
        assert!(parse("nope")
            .unwrap_err()
            .contains("expected one of garbage"));
        assert!(parse("garbage:2").unwrap_err().contains("from 0 to 1"));
        let specs = [parse("garbage:0.3").unwrap()];
        let hits = (0..10_000).filter(|&id| pick(&specs, id).is_some()).count();
        assert!((2_700..3_300).contains(&hits), "{hits}");
        assert_eq!(pick(&[parse("garbage:0").unwrap()], 7), None);
    }
}
