//! What a level's figures are built from besides its merged recorder: what the level was asked
//! to do ([`LevelContext`]), the client's verdict on itself ([`ClientVerdict`]), where it sits in
//! its run ([`LevelPlace`]), the server's own figures
//! ([`ServerFigures`]), and the parts a benchmark and a merge each work out their own way
//! ([`Parts`]).

use std::collections::BTreeMap;

use serde::Serialize;

use super::endpoints;
use super::parts::ConnectionStats;
use super::parts::{CapStats, CoreCpu, WarmupStats};
use super::validity::{self, Thresholds};
use crate::workload::arrivals::Arrival;

/// The client's verdict on itself for a level, and what it rests on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClientVerdict {
    /// The client fell behind its own schedule (`validity`): this level measures the client.
    pub client_limited: bool,
    pub client_limited_reasons: Vec<String>,
    /// How well the realised send gaps follow the configured arrival process.
    pub send_gap_fit: Option<validity::GapFit>,
    /// CPU time of each client core's thread during the level, and its share of the level's
    /// wall time.
    pub client_cpu_per_core: Vec<CoreCpu>,
    /// `--max-concurrency`: arrivals it held back and for how long (their latencies still
    /// count from the intended time).
    pub concurrency_cap: Option<CapStats>,
    /// `--warmup`: requests sent before the measured window and left out of every statistic.
    pub warmup: Option<WarmupStats>,
}

/// Where a level sits in its run: what the run's flags made of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LevelPlace {
    /// A trace replayed at its own times (`--replay`): its rows sent, the speed, its span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayStats>,
    /// `--shard K/N`: this shard's share of `qps_target` (qps ÷ N), which its client-limited
    /// rules use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_qps: Option<f64>,
    /// The first and last pass over the dataset the level's prompts were on (`--unique-prompts`):
    /// a pass past the first repeats rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_passes: Option<[u64; 2]>,
    /// `--start-at`: how late the level started against its planned start, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_lag_s: Option<f64>,
    /// `--start-at`, a process that joined the level under way: arrivals it left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missed_requests: Option<u64>,
    /// With several `--endpoint`s: each one's requests, successes, errors and TTFT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<Vec<endpoints::EndpointStats>>,
}

/// The server's own figures over a level (`--server-metrics`), which `bench` works out from its
/// scrapes once the level has ended ([`LevelStats::attach_server_figures`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerFigures {
    /// With `--server-metrics`: each series over the level (gauges as read, counters as rates
    /// per second), and the scrapes that failed during it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_metrics: Option<BTreeMap<String, crate::servermetrics::SeriesStats>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_metrics_errors: Option<u64>,
}

/// What a level's figures are built from besides its merged recorder: the parts that a
/// benchmark ([`LevelStats::build`]) and a merge of shards each work out their own way.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub client: ClientVerdict,
    pub place: LevelPlace,
    /// The connections opened for the level (before it and during it).
    pub connections: Option<ConnectionStats>,
    /// With sessions: their planned starts per second.
    pub session_rate: Option<f64>,
    /// `--api embeddings`: inputs per request.
    pub embedding_batch: Option<u32>,
    /// Warnings the parts call for, after the recorder's own.
    pub warnings: Vec<String>,
}

/// A replay's shape, in its level's JSON.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReplayStats {
    pub rows: usize,
    pub speed: f64,
    pub span_s: f64,
}

/// What a level was asked to do: the parts of its result that are not in the recorder.
pub struct LevelContext<'a> {
    pub qps: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Arrivals planned in the measured window.
    pub planned: usize,
    pub arrival: Arrival,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    pub percentiles: &'a [f64],
    pub thresholds: Thresholds,
    /// Ctrl-C / SIGTERM stopped the run during this level.
    pub interrupted: bool,
    /// A trace replayed at its times (its gaps follow no arrival process).
    pub replay: Option<ReplayStats>,
    /// `--shard K/N`: the shards the schedule is split into (1: unsharded).
    pub shards: usize,
    /// A shard's own planned rate (its measured arrivals over their span), for the rate rule.
    pub shard_rate: Option<f64>,
    /// With `--start-at`: how late the level started against its planned start, seconds; and,
    /// for a process that joined it under way, the arrivals already due that it left out.
    pub start_lag_s: Option<f64>,
    pub missed_requests: Option<u64>,
    /// Every `--endpoint` (masked), for the level's `endpoints`.
    pub endpoint_urls: &'a [String],
    /// `--session-turns`: each arrival started a session of this many turns on average.
    pub session_turns: Option<f64>,
    /// The first and last pass over the dataset the level's prompts were on.
    pub prompt_passes: Option<[u64; 2]>,
    /// `--api embeddings`: inputs per request.
    pub embedding_batch: Option<u32>,
}
