//! Chunk payload parsing: arbitrary bytes never panic (`qpsbench::fuzzing::chunk`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qpsbench::fuzzing::chunk(data));
