//! Messages API event payloads: arbitrary bytes never panic, and what serde_json parses reads as
//! the reference does (`qpsbench::fuzzing::messages`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qpsbench::fuzzing::messages(data));
