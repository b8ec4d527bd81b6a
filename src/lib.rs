//! qpsbench: load-tests OpenAI-compatible LLM chat endpoints at fixed request rates.
//!
//! One module per box of the data flow, in order: `cli` → `dataset` → `request`
//! (HTTP bytes rendered once per sample) → `schedule` (arrival times) → `engine` (pinned cores,
//! pacer, keep-alive pool, per-request state machine) → `http` (head, body framing) → `sse` →
//! `openai` (chunk payloads) → `metrics` (per-core histograms, merged per level) → `report`
//! (console table, results folder). `mock` is the built-in endpoint; `demo` wires both together.

pub mod arrivals;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod dataset;
pub mod demo;
pub mod engine;
pub mod error;
pub mod flags;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod interrupt;
pub mod limits;
pub mod mock;
pub mod openai;
pub mod outcome;
pub mod prepared;
pub mod recorder;
pub mod records;
pub mod replot;
pub mod report;
pub mod rt;
pub mod secret;
pub mod selftest;
pub mod sse;
pub mod stalls;
pub mod stats;
pub mod validity;
