//! SSE parser: arbitrary bytes, split at an arbitrary point, never panic and yield the same
//! events as the unsplit input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qpsbench::sse::{Flow, SseParser};

fn events(input: &[u8], split: usize) -> Option<Vec<(Vec<u8>, bool)>> {
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

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let split = data[0] as usize % data.len();
    let input = &data[1..];
    let split = split.min(input.len());
    assert_eq!(events(input, 0), events(input, split));
});
