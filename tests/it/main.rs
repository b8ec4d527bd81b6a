//! The integration tests, one binary with a module per area (as ripgrep and cargo do), so the
//! crate is linked once: `cargo test --test it` runs them all, `cargo test sessions::` one area.
//! They talk to real servers over real sockets: `serve-mock` as a child process, and real
//! third-party software where an area names it (nginx, Slurm, llama.cpp). Load tests take
//! `common::serial()`, so two of them never share the cores. `tests/memory.rs` and
//! `tests/session_memory.rs` stay binaries of their own: they read their children's peak RSS
//! with `getrusage(RUSAGE_CHILDREN)`, which every child of the process would add to.

#[path = "../common/mod.rs"]
mod common;

mod absurd_input;
mod analysis;
mod apis;
mod cancel;
mod ceiling;
mod cli_errors;
mod datasets;
mod deploy;
mod docs;
mod faults;
mod first_minute;
mod fuzz_corpus;
mod http_servers;
mod llama;
mod llama_apis;
mod merge;
mod mock_endpoint;
mod nginx;
mod no_debug_text;
mod prefix_cache;
mod progress;
mod queueing;
mod reasoning;
mod recv_path;
mod replicas;
mod run;
mod server_metrics;
mod sessions;
mod shards;
mod slurm;
mod timeline;
mod tls;
mod validity;
mod vocabulary;
mod workloads;
