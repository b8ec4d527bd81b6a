//! Layer 8 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `workload`; `engine` and the layers after it use it.
//!
//! The recording layer: what the engine's hot path writes as requests end, one recorder per core
//! per level, merged when the level ends. A request's outcome and the error categories
//! (`outcome`), the per-core `recorder` with its histograms, the per-second `timeline`, the
//! per-request records of `requests.jsonl` (`request_log`), what sessions got per turn
//! (`session_counts`), each endpoint's counts (`endpoints`) and the live counters the progress line
//! reads (`live`). Above it the engine records; below it `stats` turns a merged recorder into a
//! level's figures.

pub mod endpoints;
pub mod live;
pub mod outcome;
pub mod recorder;
pub mod request_log;
pub mod session_counts;
pub mod timeline;
