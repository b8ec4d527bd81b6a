//! One level, measured: its arrival plan (warm-up seconds, then the measured window), the
//! keep-alive connections opened before it, the run on the engine, and the level's result built
//! by `stats`. Used by the benchmark's level strategies and by `selftest`.

use super::clockstart::Slot;
use super::workload::Replay;
use crate::cli::EndpointStrategy;
use crate::engine::LEAD_NS;
use crate::engine::{Engine, LevelExtras, LevelRun, PlannedArrival};
use crate::foundation::clock::now_ns;
use crate::foundation::error::{Result, UserError};
use crate::report::progress::{LevelInfo, Mode, Reporter};
use crate::stats::validity::Thresholds;
use crate::stats::{LevelContext, LevelStats, ReplayStats};
use crate::workload::arrivals::{self, Arrival};
use crate::workload::prepared::{LevelRequests, RunRequests};

/// One level to measure.
pub struct LevelSpec<'a> {
    /// 0-based, and of how many (for progress lines; 0: an auto search).
    pub index: usize,
    pub levels: usize,
    pub qps: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub arrival: Arrival,
    pub burstiness: f64,
    pub seed: u64,
    pub warmup_connections: Option<usize>,
    pub max_concurrency: Option<usize>,
    pub percentiles: &'a [f64],
    pub thresholds: Thresholds,
    /// What the level's arrivals send (None: every arrival sends the engine's request 0, as
    /// `selftest` runs it).
    pub prompts: Option<LevelPrompts<'a>>,
    /// A trace replayed at its own times: these offsets replace the arrival process.
    pub replay: Option<&'a Replay>,
    /// How the live progress line is shown.
    pub progress: Mode,
    /// `--shard K/N`: this process sends the arrivals i mod N = K of the schedule.
    pub shard: Option<(usize, usize)>,
    /// `--start-at`: how the level meets its planned start.
    pub start: Option<Slot>,
    /// How arrivals are spread over the endpoints, and the endpoints (masked URLs).
    pub replicas: (EndpointStrategy, &'a [String]),
    /// `--session-turns`: the mean turns of a session; each arrival starts one, and arrivals
    /// come at `qps` ÷ this, so that requests average `qps`.
    pub session_turns: Option<f64>,
    /// `--api embeddings`: inputs per request (its token figures then read `-`).
    pub embedding_batch: Option<u32>,
    /// `--cancel-rate`: which of the level's requests are abandoned, and when.
    pub cancels: Option<&'a crate::engine::cancel::CancelPlan>,
}

impl LevelSpec<'_> {
    /// The arrival plan's rate: requests per second, or with sessions, session starts.
    pub fn arrival_qps(&self) -> f64 {
        self.qps / self.session_turns.unwrap_or(1.0)
    }
}

/// The run's requests, and where the level's arrivals sit in the run's whole schedule.
#[derive(Clone, Copy)]
pub struct LevelPrompts<'a> {
    pub requests: &'a RunRequests,
    /// The prompt number of the level's first arrival (warm-up included): 1 + every arrival of
    /// the levels before it, whichever process sent them.
    pub first: u64,
}

/// One planned arrival before its request is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Planned {
    /// When it is due: ns from the level's start.
    offset_ns: u64,
    /// Its prompt number in the whole schedule.
    prompt: u64,
    endpoint: u16,
}

impl Planned {
    /// The arrival as the engine takes it, sending the level's request `sample`.
    fn to_engine(self, sample: u32) -> PlannedArrival {
        PlannedArrival {
            offset_ns: self.offset_ns,
            sample,
            endpoint: self.endpoint,
        }
    }
}

/// Keep-alive connections per core to open before a level: the level's rate per core times the
/// expected latency (the previous level's E2E p90, else 1 s), with 25% headroom, 1 to 256.
fn connections_per_core(qps: f64, cores: usize, expected_latency_s: f64) -> usize {
    ((qps / cores as f64) * expected_latency_s * 1.25)
        .ceil()
        .clamp(1.0, 256.0) as usize
}

/// The level's arrivals: the warm-up's (own seed), then the measured window's shifted past it,
/// each with its prompt number (arrival i of the level sends the level's first prompt + i).
/// With `--shard K/N` only the arrivals i mod N = K of each part are kept (same times, same
/// prompts). Each arrival's endpoint, too, follows its index i in the whole schedule. Returns
/// (arrivals, warm-up arrivals, the window's start ns, measured arrivals).
fn arrival_plan(spec: &LevelSpec<'_>) -> (Vec<Planned>, usize, u64, usize) {
    let first = spec.prompts.map_or(1, |p| p.first);
    let (strategy, endpoints) = spec.replicas;
    let at = |t: u64, i: usize| {
        let endpoint =
            crate::workload::endpoint_pick::pick(strategy, spec.seed, i, endpoints.len());
        Planned {
            offset_ns: t,
            prompt: first + i as u64,
            endpoint,
        }
    };
    let (k, n) = spec.shard.unwrap_or((0, 1));
    let mine = |i: &usize| *i % n == k;
    if let Some(r) = spec.replay {
        // Row i at its offset, as prompt i + 1: row i.
        let arrivals: Vec<Planned> = (0..r.offsets_ns.len())
            .filter(mine)
            .map(|i| at(r.offsets_ns[i], i))
            .collect();
        let len = arrivals.len();
        return (arrivals, 0, 0, len);
    }
    let plan = |seconds: f64, seed: u64| {
        arrivals::plan(
            spec.arrival_qps(),
            seconds,
            spec.arrival,
            spec.burstiness,
            seed,
        )
    };
    let warmup = if spec.warmup_s > 0.0 {
        plan(spec.warmup_s, spec.seed ^ 0x5741_524d)
    } else {
        Vec::new()
    };
    let measured = plan(spec.duration_s, spec.seed);
    let window_ns = (spec.warmup_s * 1e9).round() as u64;
    let mut arrivals: Vec<Planned> = (0..warmup.len())
        .filter(mine)
        .map(|i| at(warmup[i], i))
        .collect();
    let warmup_n = arrivals.len();
    arrivals.extend(
        (0..measured.len())
            .filter(mine)
            .map(|i| at(measured[i] + window_ns, warmup.len() + i)),
    );
    let planned = arrivals.len() - warmup_n;
    (arrivals, warmup_n, window_ns, planned)
}

/// A shard's own planned rate over its measured arrivals: its share of a level is an uneven
/// thinning (7 or 8 of 30 arrivals, the last one before the window's end), so the rate rule
/// holds it to the rate it was given, which averages qps ÷ N over the shards. None unsharded.
fn shard_rate(spec: &LevelSpec<'_>, measured: &[Planned], window_ns: u64) -> Option<f64> {
    spec.shard.filter(|&(_, n)| n > 1)?;
    let span_ns = measured.last()?.offset_ns.saturating_sub(window_ns);
    (span_ns > 0).then(|| measured.len() as f64 / (span_ns as f64 / 1e9))
}

/// Runs one level on the engine and builds its statistics, validity verdict included.
/// `expected_latency_s` sizes the connection warm-up. Returns the raw run too (for per-request
/// records).
pub fn measure_level(
    engine: &Engine,
    spec: &LevelSpec<'_>,
    expected_latency_s: f64,
    progress: bool,
) -> Result<(LevelStats, LevelRun)> {
    let (mut arrivals, mut warmup_n, window_ns, mut planned) = arrival_plan(spec);
    let shard_rate = shard_rate(spec, &arrivals[warmup_n..], window_ns);
    // The common clock: start at the planned instant, join a level under way (what is already
    // due is left out), or, after a level that ran over, start now and record how late.
    let (start_at, missed, planned_ns) = match spec.start {
        None => (None, None, None),
        Some(Slot::At(t)) => (Some(t), None, Some(t)),
        Some(Slot::Late { planned_ns }) => (None, None, Some(planned_ns)),
        Some(Slot::Join(t)) => {
            let due = (now_ns() + LEAD_NS).saturating_sub(t);
            let gone = arrivals.iter().take_while(|a| a.offset_ns < due).count();
            arrivals.drain(..gone);
            let gone_warm = gone.min(warmup_n);
            warmup_n -= gone_warm;
            planned -= gone - gone_warm;
            eprintln!(
                "note: joining level {} under way: {} of its arrivals were already due and are left out (missed_requests)",
                spec.index + 1,
                gone - gone_warm
            );
            (Some(t), Some((gone - gone_warm) as u64), Some(t))
        }
    };
    // Connections are opened before the timed window, so setup stays out of TTFT.
    let cores = engine.cores();
    let mut per_core = spec
        .warmup_connections
        .unwrap_or_else(|| connections_per_core(spec.qps, cores, expected_latency_s));
    if let Some(cap) = spec.max_concurrency {
        per_core = per_core.min(cap.div_ceil(cores));
    }
    let connections = engine
        .open_connections(per_core)
        .map_err(UserError::runtime)?;
    if progress {
        announce(spec, planned, warmup_n);
    }
    let duration_ns = (spec.duration_s * 1e9).round() as u64;
    let extras = extras(spec, &arrivals);
    let (arrivals, mut requests) = render(spec, &arrivals)?;
    let reporter = Reporter::start(&engine.live, level_info(spec, planned), spec.progress);
    let run = engine.run_level(
        &arrivals,
        warmup_n,
        (window_ns, duration_ns),
        start_at,
        requests.as_mut().map(|r| std::mem::take(&mut r.prepared)),
        extras,
    );
    reporter.finish();
    let mut run = run.map_err(UserError::runtime)?;
    if let Some(r) = &requests {
        // Each record names the row its request sent, not its place in the level.
        for rec in run.merged.records.iter_mut().chain(&mut run.warmup.records) {
            rec.sample = r
                .rows
                .get(rec.sample as usize)
                .copied()
                .unwrap_or(rec.sample);
        }
    }
    let ctx = LevelContext {
        qps: spec.qps,
        duration_s: spec.duration_s,
        warmup_s: spec.warmup_s,
        planned,
        arrival: spec.arrival,
        burstiness: spec.burstiness,
        max_concurrency: spec.max_concurrency,
        percentiles: spec.percentiles,
        thresholds: spec.thresholds,
        interrupted: crate::foundation::interrupt::requested(),
        shards: spec.shard.map_or(1, |(_, n)| n),
        shard_rate,
        endpoint_urls: spec.replicas.1,
        session_turns: spec.session_turns,
        start_lag_s: planned_ns.map(|p| run.start_ns.saturating_sub(p) as f64 / 1e9),
        missed_requests: missed,
        replay: spec.replay.map(|r| ReplayStats {
            rows: r.rows,
            speed: r.speed,
            span_s: r.span_s,
        }),
        prompt_passes: requests.and_then(|r| r.passes).map(|(a, b)| [a, b]),
        embedding_batch: spec.embedding_batch,
    };
    let stats = LevelStats::build(&run, &connections, &ctx);
    if progress {
        print_outcome(&stats);
    }
    Ok((stats, run))
}

/// The level's requests, rendered from the run's (arrival j sends request j), and the arrivals
/// that index them; without them, every arrival sends the engine's request 0.
fn render(
    spec: &LevelSpec<'_>,
    planned: &[Planned],
) -> Result<(Vec<PlannedArrival>, Option<LevelRequests>)> {
    let Some(p) = spec.prompts else {
        let arrivals = planned.iter().map(|a| a.to_engine(0)).collect();
        return Ok((arrivals, None));
    };
    let requests = p
        .requests
        .level(planned.iter().map(|a| (a.prompt, a.endpoint)))?;
    let arrivals = planned
        .iter()
        .enumerate()
        .map(|(j, a)| a.to_engine(j as u32))
        .collect();
    Ok((arrivals, Some(requests)))
}

/// What the level's requests carry beyond their bytes: a session's id is its first prompt's
/// number, and the abandoned requests are chosen over the whole schedule, so every shard agrees.
fn extras(spec: &LevelSpec<'_>, planned: &[Planned]) -> LevelExtras {
    let prompts = || planned.iter().map(|a| a.prompt);
    let rate = spec.arrival_qps();
    let schedule = match spec.replay {
        Some(r) => (0, r.offsets_ns.len() as u64),
        None if spec.warmup_s > 0.0 => (
            arrivals::request_count(rate, spec.warmup_s),
            arrivals::request_count(rate, spec.duration_s),
        ),
        None => (0, arrivals::request_count(rate, spec.duration_s)),
    };
    let first = spec.prompts.map_or(1, |p| p.first);
    LevelExtras {
        session_ids: spec.session_turns.map(|_| prompts().collect()),
        cancel_after_ns: spec
            .cancels
            .map(|c| c.level(spec.seed, (first, schedule.0, schedule.1), prompts())),
    }
}

/// What the progress line says about the level.
fn level_info(spec: &LevelSpec<'_>, planned: usize) -> LevelInfo {
    LevelInfo {
        label: label(spec),
        qps: spec.qps,
        duration_s: spec.duration_s,
        warmup_s: spec.warmup_s,
        // With sessions, the turns they plan (each session's turns on average): the progress
        // line counts requests.
        planned: (planned as f64 * spec.session_turns.unwrap_or(1.0)).round() as usize,
    }
}

/// `1/4`, or `auto 2` in a capacity search.
fn label(spec: &LevelSpec<'_>) -> String {
    if spec.levels > 0 {
        format!("{}/{}", spec.index + 1, spec.levels)
    } else {
        format!("auto {}", spec.index + 1)
    }
}

/// The line printed when a level starts.
fn announce(spec: &LevelSpec<'_>, planned: usize, warmup_n: usize) {
    let which = label(spec);
    let warmup = if warmup_n > 0 {
        let unit = if spec.session_turns.is_some() {
            "sessions"
        } else {
            "requests"
        };
        format!(" after {warmup_n} warm-up {unit} over {} s", spec.warmup_s)
    } else {
        String::new()
    };
    let mut how = match spec.replay {
        Some(r) => format!(" (trace replay at speed {})", r.speed),
        None => String::new(),
    };
    if let Some((k, n)) = spec.shard {
        how.push_str(&format!(
            " as shard {k}/{n} ({:.2} QPS)",
            spec.qps / n as f64
        ));
    }
    let what = match spec.session_turns {
        Some(turns) => format!(
            "starting {planned} sessions of {turns} turns on average ({:.2} per second)",
            spec.arrival_qps()
        ),
        None => format!("sending {planned} requests"),
    };
    eprintln!(
        "[{which}] QPS {}: {what} over {} s{warmup}{how} ...",
        crate::foundation::rate::text(spec.qps),
        spec.duration_s
    );
}

/// The lines printed when a level ends: its warnings, counts, and the client-limited verdict.
fn print_outcome(stats: &LevelStats) {
    for w in &stats.warnings {
        eprintln!("      warning: {w}");
    }
    let waited = stats
        .client
        .concurrency_cap
        .as_ref()
        .map_or(0, |c| c.waited);
    eprintln!(
        "      {} sent, {} ok ({:.1}%), actual {:.2} QPS, send lag p99 {:.0} µs{}",
        stats.total_requests,
        stats.successful_requests,
        stats.success_rate,
        stats.actual_qps,
        stats.send_lag_us.p99,
        if waited > 0 {
            format!(", {waited} waited for a --max-concurrency slot")
        } else if stats.cancelled_requests > 0 {
            format!(", {} abandoned (--cancel-rate)", stats.cancelled_requests)
        } else {
            String::new()
        }
    );
    if stats.client.client_limited {
        eprintln!(
            "      CLIENT-LIMITED: {}",
            stats.client.client_limited_reasons.join("; ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        arrival: Arrival,
        burstiness: f64,
        shard: Option<(usize, usize)>,
    ) -> LevelSpec<'static> {
        LevelSpec {
            index: 0,
            levels: 1,
            qps: 50.0,
            duration_s: 4.0,
            warmup_s: 1.0,
            arrival,
            burstiness,
            seed: 7,
            warmup_connections: None,
            max_concurrency: None,
            percentiles: &[],
            thresholds: Thresholds {
                max_send_lag_p99_us: 1000.0,
                max_send_lag_share: 0.05,
                min_rate_ratio: 0.99,
            },
            prompts: None,
            replay: None,
            progress: Mode::Off,
            shard,
            start: None,
            // Three replicas, drawn at random: each arrival's endpoint must follow it too.
            replicas: (
                EndpointStrategy::Random,
                Box::leak(vec![String::new(); 3].into_boxed_slice()),
            ),
            session_turns: None,
            embedding_batch: None,
            cancels: None,
        }
    }

    /// The N shards' arrivals together are the single-process schedule, arrival for arrival:
    /// the same intended times, prompts and endpoints, warm-up and measured window alike.
    #[test]
    fn the_shards_schedules_together_are_the_single_schedule() {
        for (arrival, b) in [
            (Arrival::Poisson, 1.0),
            (Arrival::Gamma, 0.5),
            (Arrival::Constant, 1.0),
        ] {
            let (all, warm, window, planned) = arrival_plan(&spec(arrival, b, None));
            assert_eq!((warm, planned, window), (50, 200, 1_000_000_000));
            let mut union = Vec::new();
            let (mut warm_sum, mut planned_sum) = (0, 0);
            for k in 0..4 {
                let (mine, w, win, p) = arrival_plan(&spec(arrival, b, Some((k, 4))));
                assert_eq!(win, window);
                assert!(
                    mine.windows(2).all(|x| x[0].offset_ns <= x[1].offset_ns),
                    "in time order"
                );
                warm_sum += w;
                planned_sum += p;
                union.extend(mine);
            }
            assert_eq!((warm_sum, planned_sum), (warm, planned));
            union.sort_unstable();
            let mut all_sorted = all.clone();
            all_sorted.sort_unstable();
            assert_eq!(union, all_sorted, "{arrival:?}");
            assert!(
                (0..3).all(|e| all.iter().any(|a| a.endpoint == e)),
                "all endpoints used"
            );
        }
    }
}
