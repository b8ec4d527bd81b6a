//! qpsbench: load-tests LLM inference endpoints (OpenAI chat, completions and Responses, Anthropic
//! Messages, embeddings) at fixed request rates.
//!
//! `docs/architecture.md` is the map: the data flow of one request from the arrival plan to the
//! histogram, the layers below (each uses only those listed before it), the hot path's
//! invariants and where to start reading.
//!
//! - foundations: `error`, `flags`, `cli`, `clock`, `secret`, `interrupt`, `limits`;
//! - runtime and protocol: `rt`, `http`, `sse`, `api` (each API's answers: `openai`, `anthropic`,
//!   `responses`, `embeddings`);
//! - inputs: `dataset`, `arrivals` (the arrival plan), `prepared` (request bytes);
//! - outcomes: `outcome`, `records`, `recorder` (the hot path's per-core recorder);
//! - `engine`: pinned cores, pacer, keep-alive pools, one request (`exchange`), one stream;
//! - results: `validity`, `stats` (the per-level schema);
//! - `report`: analysis, table, results folder, PNG;
//! - commands: `bench`, `selftest`, `replot` (`plot`), `compare`, `demo`, `mock` (`serve-mock`).

pub mod api;
pub mod arrivals;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod compare;
pub mod console;
pub mod dataset;
pub mod demo;
pub mod engine;
pub mod error;
pub mod flags;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod interrupt;
pub mod k8s;
pub mod limits;
pub mod live;
pub mod merge;
pub mod mergeable;
pub mod mock;
pub mod outcome;
pub mod per_turn;
pub mod percentiles;
pub mod prefix_cache;
pub mod prepared;
pub mod prometheus;
pub mod recorder;
pub mod records;
pub mod replicas;
pub mod replot;
pub mod report;
pub mod rt;
pub mod secret;
pub mod selftest;
pub mod servermetrics;
pub mod sse;
pub mod stalls;
pub mod stats;
pub mod timeline;
pub mod turns;
pub mod validity;
