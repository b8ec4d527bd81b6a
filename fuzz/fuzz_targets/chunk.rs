//! Chunk payload parsing: arbitrary bytes never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qpsbench::openai::ChunkParser;

fuzz_target!(|data: &[u8]| {
    let mut p = ChunkParser::new();
    let _ = p.parse(data);
    let _ = p.parse(data);
});
