//! Layer 12 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `report`; nothing uses it.
//!
//! The commands, the bottom layer: the only modules that wire several layers together. The
//! benchmark (`bench`, the default command), `merge` (shards into one run), `selftest` (how far
//! this machine's client goes), `plot` (a saved run's pictures redrawn), `compare` (two runs side
//! by side), `demo`, `k8s` (`k8s-manifest`) and `mock` (`serve-mock`, the built-in endpoint, which
//! `demo`, `selftest` and the tests also start in-process).

pub mod bench;
pub mod compare;
pub mod demo;
pub mod k8s;
pub mod merge;
pub mod mock;
pub mod plot;
pub mod selftest;
