//! Prometheus text parsing: arbitrary bytes never panic, and samples round-trip through their
//! canonical form (`qpsbench::fuzzing::prometheus`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qpsbench::fuzzing::prometheus(data));
