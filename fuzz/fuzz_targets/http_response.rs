//! Response head parsing and body framing (chunked decoder included): arbitrary bytes never
//! panic, and a body decodes to the same data however the bytes are split
//! (`qpsbench::fuzzing::http_response`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qpsbench::fuzzing::http_response(data));
