//! The properties the fuzz targets in `fuzz/` check, as plain functions: the cargo-fuzz targets
//! call them with libFuzzer's inputs, and `tests/fuzz_corpus.rs` replays the checked-in seed
//! corpus (`fuzz/seeds/`) through them on the stable toolchain. Each panics when its property
//! fails, as a fuzz target must.

use crate::http::body::{BodyDecoder, Framing};
use crate::http::head::parse_head;
use crate::openai::ChunkParser;
use crate::sse::{Flow, SseParser};

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

/// Chunk payload parsing: never panics, and a reused parser gives the same answer twice.
pub fn chunk(data: &[u8]) {
    let mut p = ChunkParser::new();
    let first = p.parse(data);
    assert_eq!(first, p.parse(data));
}
