//! Layer 7 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `servermetrics`; `recording` and the layers after it use it.
//!
//! The workload layer: what a run sends and when, decided before any request leaves. The rows a
//! run sends (`dataset`, one module per source), the arrival plan of a level (`arrivals`), the
//! endpoint each arrival goes to (`endpoint_pick`), and the request bytes rendered from them
//! (`prepared`). Below it: the foundations, `cli`'s values, `http` (URLs) and `api`; above it, the
//! engine sends what it prepared.

pub mod arrivals;
pub mod dataset;
pub mod endpoint_pick;
pub mod prepared;
