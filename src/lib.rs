//! qpsbench: load-tests LLM inference endpoints (OpenAI chat, completions and Responses, Anthropic
//! Messages, embeddings) at fixed request rates.
//!
//! `docs/architecture.md` is the map: the data flow of one request from the arrival plan to the
//! histogram, the layers below (each uses only those listed before it), the hot path's
//! invariants and where to start reading. The modules, one per layer, bottom up:

/// What each API's answers say: OpenAI chat and completions, Responses, Messages, embeddings.
pub mod api;
/// Every command's flags, documented where defined (what `--help` prints).
pub mod cli;
/// The commands, which wire the layers together: bench, merge, selftest, plot, compare, demo…
pub mod commands;
/// Pinned cores sending a level's arrivals: pacer, keep-alive pools, exchanges, streams.
pub mod engine;
/// Errors and exit statuses, console output, flag ranges, clocks, secrets, signals, OS limits.
pub mod foundation;
/// The fuzz targets' properties (used by `fuzz/` and the corpus replay test).
#[doc(hidden)]
pub mod fuzzing;
/// The hand-written HTTP/1.1 client, TLS, and the zero-copy SSE parser.
pub mod http;
/// What the hot path records per core: outcomes, histograms, timeline, request log.
pub mod recording;
/// The saturation rules, the verdict, the table, the results folder, the pictures.
pub mod report;
/// Each thread's io_uring runtime, its timers and a client core's receive ring.
pub mod rt;
/// The server's own `/metrics`: the Prometheus parser, the series kept, the scraper.
pub mod servermetrics;
/// A level's figures from its merged recorder: the per-level schema and its parts.
pub mod stats;
/// What a run sends and when: datasets, arrival plans, endpoint choice, request bytes.
pub mod workload;
