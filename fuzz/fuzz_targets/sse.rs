//! SSE parser: arbitrary bytes, split at an arbitrary point, never panic and yield the same
//! events as the unsplit input (`qpsbench::fuzzing::sse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qpsbench::fuzzing::sse(data));
