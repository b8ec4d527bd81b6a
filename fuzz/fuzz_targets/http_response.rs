//! Response head parsing and body framing (chunked decoder included): arbitrary bytes never
//! panic, and a body decodes to the same data however the bytes are split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qpsbench::http::body::{BodyDecoder, Framing};
use qpsbench::http::head::parse_head;

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

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize;
    let input = &data[1..];
    if let Ok(Some(head)) = parse_head(input) {
        let body = &input[head.len..];
        let split = split.min(body.len());
        assert_eq!(decode(head.framing, body, 0), decode(head.framing, body, split));
    }
    let split = split.min(input.len());
    assert_eq!(decode(Framing::Chunked, input, 0), decode(Framing::Chunked, input, split));
});
