//! Stage 4, the levels: which rates a run measures, as two strategies behind one interface —
//! a fixed list (`--qps 1,5,10`), or the capacity search (`--qps auto`). Either way each level is
//! measured the same way ([`Levels::measure`]): its records appended, and the results and
//! summary rewritten after it, so that a stopped run keeps what it measured.

use std::fs::File;
use std::io::BufWriter;

use std::collections::BTreeMap;

use super::level::{measure_level, LevelPrompts, LevelSpec};
use super::plan::Plan;
use super::watch;
use crate::engine::{Engine, LevelRun};
use crate::foundation::error::{Result, UserError};
use crate::report::analysis::{self, Baseline, Criteria, LevelView};
use crate::report::results::RunDir;
use crate::servermetrics::scrape::Scraper;
use crate::stats::histograms_file::LevelHistograms;
use crate::stats::validity::Thresholds;
use crate::stats::{json_percentiles, LevelStats, ServerFigures};
use crate::workload::arrivals;
use crate::workload::prepared::RunRequests;

/// How a run chooses its levels.
pub trait Strategy {
    /// Measures levels through `levels` until done; returns the capacity bracket
    /// `[last good, first saturated]` when the strategy looks for one and found it.
    fn run(&self, levels: &mut Levels<'_>) -> Result<Option<[f64; 2]>>;
}

/// The strategy the plan asks for.
pub fn strategy(plan: &Plan) -> Box<dyn Strategy> {
    match &plan.fixed_levels {
        Some(rates) => Box::new(Fixed(rates.clone())),
        None => Box::new(AutoSearch {
            start: plan.args.auto_start,
            max: plan.args.auto_max_qps,
            tolerance: plan.args.auto_tolerance,
        }),
    }
}

/// The levels measured so far, and what measuring another one needs.
pub struct Levels<'a> {
    plan: &'a Plan,
    engine: &'a Engine,
    requests: &'a RunRequests,
    /// `--qps auto`: the prompt number the next level starts at (fixed levels compute theirs).
    next_prompt: u64,
    /// `--reset-prefix-cache`: empties the server's cache before each level.
    pub resetter: Option<super::reset::Resetter>,
    run_dir: &'a RunDir,
    pub criteria: Criteria,
    thresholds: Thresholds,
    percentiles: Vec<f64>,
    requests_file: Option<BufWriter<File>>,
    /// `timeline.jsonl`: each level's seconds, appended after the level.
    timeline_file: BufWriter<File>,
    /// `--server-metrics`'s scraper, for the whole run.
    scraper: Option<Scraper>,
    /// With `--start-at`, the fixed levels already over when this process started (skipped).
    pub skipped: usize,
    /// The scrape taken after the last level ended: the next level's prefix-cache counters
    /// count from it.
    cache_scrape: Option<crate::servermetrics::Scrape>,
    /// Each level's histograms and counters (`histograms.json`).
    histograms: Vec<LevelHistograms>,
    /// In the order measured.
    pub measured: Vec<LevelStats>,
}

impl<'a> Levels<'a> {
    pub fn new(
        plan: &'a Plan,
        engine: &'a Engine,
        requests: &'a RunRequests,
        run_dir: &'a RunDir,
        unloaded: Option<analysis::Unloaded>,
    ) -> Result<Self> {
        let a = &plan.args;
        let mut asked = a.percentiles.clone();
        asked.push(a.checks.slo_percentile);
        let requests_file = if a.save_requests {
            Some(run_dir.create_new("requests.jsonl")?)
        } else {
            None
        };
        Ok(Self {
            plan,
            engine,
            requests,
            next_prompt: 1,
            resetter: None,
            run_dir,
            criteria: Criteria {
                min_success_pct: a.checks.saturation_success,
                min_throughput_ratio: a.checks.saturation_throughput,
                max_ttft_growth: a.checks.saturation_ttft_growth,
                slo_ttft_s: a.checks.slo_ttft,
                slo_e2e_s: a.checks.slo_e2e,
                slo_percentile: a.checks.slo_percentile,
                headroom: 0.75,
                unloaded,
            },
            thresholds: Thresholds {
                max_send_lag_p99_us: a.checks.max_send_lag_ms * 1000.0,
                max_send_lag_share: a.checks.max_send_lag_share,
                min_rate_ratio: a.checks.min_rate_ratio,
            },
            percentiles: json_percentiles(&asked),
            requests_file,
            timeline_file: run_dir.create_new("timeline.jsonl")?,
            scraper: plan.server_metrics.as_ref().map(watch::start),
            skipped: levels_over(plan),
            cache_scrape: None,
            histograms: Vec::new(),
            measured: Vec::new(),
        })
    }

    /// Measures one level at `qps`; its records are appended, and the results and summary
    /// rewritten.
    pub fn measure(&mut self, qps: f64) -> Result<LevelStats> {
        let (a, i) = (&self.plan.args, self.measured.len() + self.skipped);
        let start = self
            .plan
            .workload
            .timetable
            .map(|t| t.slot(i, self.measured.is_empty(), crate::engine::LEAD_NS));
        let spec = LevelSpec {
            index: i,
            levels: self.plan.fixed_levels.as_ref().map_or(0, Vec::len),
            qps,
            duration_s: self.plan.workload.duration,
            warmup_s: a.warmup,
            arrival: a.arrival,
            burstiness: a.burstiness,
            seed: arrivals::level_seed(a.seed, i),
            warmup_connections: a.warmup_connections,
            max_concurrency: a.max_concurrency,
            percentiles: &self.percentiles,
            thresholds: self.thresholds,
            prompts: Some(LevelPrompts {
                requests: self.requests,
                first: self.first_prompt(i),
            }),
            replay: self.plan.workload.replay.as_ref(),
            progress: crate::report::progress::Mode::from_flag(a.progress),
            shard: self.plan.shard,
            start,
            replicas: (a.endpoint_strategy, &self.plan.shown_endpoints),
            session_turns: self.plan.session_turns(),
            embedding_batch: self.plan.embedding_batch(),
            cancels: self.plan.cancels.as_ref(),
        };
        let expected_latency = self
            .measured
            .last()
            .and_then(|l| l.e2e_latency.get("p90"))
            .unwrap_or(1.0);
        let errors_before = self.scraper.as_ref().map_or(0, Scraper::errors);
        // The previous level has drained (its every request ended); the next has not started.
        let reset = self.resetter.as_mut().map(|r| r.before_level());
        let (mut stats, mut run) = measure_level(self.engine, &spec, expected_latency, true)?;
        self.next_prompt += self.plan.arrivals_at(qps);
        let server_seconds = self.attach_server_metrics(&mut stats, &run, errors_before);
        self.warn_about_cache(&mut stats, reset);
        if let Some(f) = self.requests_file.as_mut() {
            let mut records = std::mem::take(&mut run.warmup.records);
            records.append(&mut run.merged.records);
            let at = crate::recording::request_log::LevelRecords {
                level: i + 1,
                qps_target: qps,
                // With `--start-at`, from the planned start (a late level's records say how late).
                start_ns: start.map_or(run.start_ns, super::clockstart::Slot::planned_ns),
                trace_rows: self
                    .plan
                    .workload
                    .dataset
                    .trace
                    .as_ref()
                    .map(|t| &t.lines[..]),
            };
            crate::recording::request_log::write_level(f, &at, &mut records)
                .and_then(|()| std::io::Write::flush(f))
                .map_err(|e| {
                    let path = self.run_dir.path.join("requests.jsonl");
                    UserError::input(format!("cannot write {}: {e}", path.display()))
                })?;
        }
        self.write_timeline(i + 1, &run.merged.timeline, server_seconds)?;
        self.histograms
            .push(LevelHistograms::new(i + 1, &stats, &run).map_err(UserError::runtime)?);
        self.run_dir
            .write_json("histograms.json", &self.histograms)?;
        self.measured.push(stats.clone());
        // Saved after every level: an interrupted run keeps what it measured.
        self.run_dir.write_json(&self.plan.output, &self.measured)?;
        let summary =
            crate::report::recommend::analyze(&analysis::views(&self.measured), &self.criteria);
        self.run_dir.write_json("summary.json", &summary)?;
        Ok(stats)
    }
}

impl Levels<'_> {
    /// The prompt number level `i` (of the whole schedule) starts at: 1 + the arrivals of every
    /// level before it, warm-up included, skipped ones too (a shard that joined late, or
    /// another process's levels), so every process agrees.
    fn first_prompt(&self, i: usize) -> u64 {
        match &self.plan.fixed_levels {
            Some(rates) if self.plan.workload.replay.is_none() => {
                1 + rates[..i]
                    .iter()
                    .map(|&q| self.plan.arrivals_at(q))
                    .sum::<u64>()
            }
            _ => self.next_prompt,
        }
    }

    /// Says so when the level's TTFT reflects the server's prefix cache (or the reset before it
    /// did not hold).
    fn warn_about_cache(&self, stats: &mut LevelStats, reset: Option<super::reset::Outcome>) {
        let shared = self.plan.shared_on_purpose();
        let way = self.resetter.as_ref().and_then(|r| r.way);
        let cx = crate::stats::prompt_cache::WarningContext {
            expected: shared.as_deref(),
            after_reset: reset.as_ref().is_some_and(|r| r.done),
            reset_caveat: way.map(super::reset::Way::caveat),
        };
        stats.prompt_cache.prefix_cache_reset = reset.map(|r| r.said);
        if let Some(w) = stats.warn_about_cache(cx) {
            eprintln!("warning: {w}");
        }
    }

    /// With `--server-metrics`: the level's `server_metrics` and scrape errors, and the scrapes'
    /// values by second of the measured window (for the timeline).
    fn attach_server_metrics(
        &mut self,
        stats: &mut LevelStats,
        run: &LevelRun,
        errors_before: u64,
    ) -> BTreeMap<usize, BTreeMap<String, f64>> {
        let (Some(m), Some(scraper)) = (&self.plan.server_metrics, &self.scraper) else {
            return BTreeMap::new();
        };
        let (summary, scrapes) = watch::level_summary(m, scraper, run);
        let (cache, after) = watch::level_cache(m, scraper, run, self.cache_scrape.take());
        self.cache_scrape = after;
        stats.attach_server_figures(
            ServerFigures {
                server_metrics: Some(summary),
                server_metrics_errors: Some(scraper.errors() - errors_before),
            },
            cache,
        );
        watch::per_second(m, &scrapes, run.window_start_ns)
    }

    /// Appends level `level`'s seconds to `timeline.jsonl`, with the server's samples.
    fn write_timeline(
        &mut self,
        level: usize,
        timeline: &crate::recording::timeline::Timeline,
        mut server: BTreeMap<usize, BTreeMap<String, f64>>,
    ) -> Result<()> {
        use std::io::Write;
        let f = &mut self.timeline_file;
        let mut write = || -> std::io::Result<()> {
            for mut row in timeline.rows(level) {
                row.server = server.remove(&row.t_s).unwrap_or_default();
                serde_json::to_writer(&mut *f, &row)?;
                f.write_all(b"\n")?;
            }
            f.flush()
        };
        write().map_err(|e| {
            let path = self.run_dir.path.join("timeline.jsonl");
            UserError::input(format!("cannot write {}: {e}", path.display()))
        })
    }
}

/// With `--start-at` and fixed levels: the levels already over when this process starts (a late
/// joiner skips them, and says so).
fn levels_over(plan: &Plan) -> usize {
    let (Some(t), Some(rates)) = (plan.workload.timetable, &plan.fixed_levels) else {
        return 0;
    };
    let over = t
        .levels_over(plan.args.warmup + plan.workload.duration)
        .min(rates.len());
    if over > 0 {
        eprintln!(
            "note: the run started at {:.0} (Unix seconds); {over} of its {} levels are over and are skipped",
            t.start_unix_s,
            rates.len()
        );
    }
    over
}

/// `--qps 1,5,10,20`: each rate in the order given.
struct Fixed(Vec<f64>);

impl Strategy for Fixed {
    fn run(&self, levels: &mut Levels<'_>) -> Result<Option<[f64; 2]>> {
        let rest = self.0.len().saturating_sub(levels.skipped);
        for (i, &q) in self.0.iter().skip(levels.skipped).enumerate() {
            let stats = levels.measure(q)?;
            if crate::foundation::interrupt::requested() {
                break;
            }
            if stats.successful_requests == 0 && i + 1 < rest && !levels.keep_going() {
                eprintln!(
                    "qpsbench: {}; stopping the sweep: higher levels cannot do better ({} level(s) not run; --keep-going runs them anyway)",
                    crate::report::recommend::failure(&LevelView::from(&stats)),
                    rest - i - 1
                );
                break;
            }
        }
        Ok(None)
    }
}

impl Levels<'_> {
    /// Whether a level with no success still lets the sweep go on: `--keep-going`, or a shard
    /// (every shard must measure the same levels for `merge`).
    fn keep_going(&self) -> bool {
        self.plan.args.keep_going || self.plan.shard.is_some()
    }
}

/// `--qps auto`: doubles from `--auto-start` until a level saturates (the analysis' rules,
/// against the endpoint unloaded), or halves from it while even the first rate saturates, then
/// bisects between the last good and the first saturated rate until they are within
/// `--auto-tolerance`, or until no rate between them would send a different number of
/// requests (the resolution of `--duration`). Every probed level is a normal level. A
/// client-limited level stops the search: it would measure the client, not the endpoint.
struct AutoSearch {
    start: f64,
    max: f64,
    tolerance: f64,
}

use crate::foundation::rate::{round as round_rate, text as rate};

impl Strategy for AutoSearch {
    fn run(&self, levels: &mut Levels<'_>) -> Result<Option<[f64; 2]>> {
        let mut judge = Judge::new(&levels.criteria);
        let q = self.start;
        let Some(first) = judge.saturated(levels, q)? else {
            return Ok(None);
        };
        let bracket = if first {
            self.step_down(levels, &mut judge, q)?
        } else {
            self.step_up(levels, &mut judge, q)?
        };
        let Some([mut lo, mut hi]) = bracket else {
            return Ok(None);
        };
        let d = levels.plan.workload.duration;
        while (hi - lo) / lo > self.tolerance {
            let mid = round_rate((lo + hi) / 2.0);
            let n = |q: f64| levels.plan.arrivals_at(q);
            if mid <= lo || mid >= hi || n(mid) == n(lo) || n(mid) == n(hi) {
                eprintln!(
                    "auto: stopping at the resolution of --duration {d} s: QPS {} and QPS {} send {} and {} requests, and no rate between them sends another number (a longer --duration refines it)",
                    rate(lo), rate(hi), n(lo), n(hi)
                );
                break;
            }
            match judge.saturated(levels, mid)? {
                None => break,
                Some(true) => hi = mid,
                Some(false) => lo = mid,
            }
        }
        eprintln!(
            "auto: capacity between QPS {} (holds) and QPS {} (saturates)",
            rate(lo),
            rate(hi)
        );
        Ok(Some([lo, hi]))
    }
}

impl AutoSearch {
    /// The first rate held: doubles until a level saturates; the bracket, or `None` when the
    /// search stops (interrupted, client-limited, or no saturation up to `--auto-max-qps`).
    fn step_up(
        &self,
        levels: &mut Levels<'_>,
        judge: &mut Judge,
        mut q: f64,
    ) -> Result<Option<[f64; 2]>> {
        loop {
            if q >= self.max {
                eprintln!(
                    "auto: no saturation up to --auto-max-qps {}; the capacity is higher",
                    rate(self.max)
                );
                return Ok(None);
            }
            let next = round_rate((q * 2.0).min(self.max));
            match judge.saturated(levels, next)? {
                None => return Ok(None),
                Some(true) => return Ok(Some([q, next])),
                Some(false) => q = next,
            }
        }
    }

    /// The first rate saturated already: halves until a level holds, rather than take a loaded
    /// first level for a healthy one. `None` when even a rate of one request per level
    /// saturates (or the search stops).
    fn step_down(
        &self,
        levels: &mut Levels<'_>,
        judge: &mut Judge,
        mut q: f64,
    ) -> Result<Option<[f64; 2]>> {
        loop {
            let next = round_rate(q / 2.0);
            if levels.plan.arrivals_at(next) < 2 {
                eprintln!(
                    "auto: saturated even at QPS {}; a lower rate would send fewer than 2 requests in --duration {} s: the capacity is below QPS {} (lengthen --duration to go lower)",
                    rate(q),
                    levels.plan.workload.duration,
                    rate(q)
                );
                return Ok(None);
            }
            eprintln!(
                "auto: QPS {} already saturates; stepping down to QPS {}",
                rate(q),
                rate(next)
            );
            match judge.saturated(levels, next)? {
                None => return Ok(None),
                Some(true) => q = next,
                Some(false) => return Ok(Some([next, q])),
            }
        }
    }
}

/// The search's judge: each level against the endpoint unloaded (the probe's baseline),
/// settled by the first level that holds by the load rules, or, without one, against the
/// first level measured.
struct Judge {
    base: Baseline,
}

impl Judge {
    fn new(c: &Criteria) -> Self {
        Self {
            base: Baseline::of([], c),
        }
    }

    /// Measures `q`: whether it saturates, or `None` when the search must stop (interrupted, or
    /// client-limited).
    fn saturated(&mut self, levels: &mut Levels<'_>, q: f64) -> Result<Option<bool>> {
        let stats = levels.measure(q)?;
        if crate::foundation::interrupt::requested() {
            return Ok(None);
        }
        if stats.client.client_limited {
            eprintln!(
                "auto: QPS {} is client-limited ({}); stopping the search: beyond this rate qpsbench would measure itself, not the endpoint. Give it more cores (--cores) or run it on a bigger machine.",
                rate(q),
                stats.client.client_limited_reasons.join("; ")
            );
            return Ok(None);
        }
        let v = LevelView::from(&stats);
        if self.base.unloaded {
            // The first level that holds by the load rules settles the growth reference.
            self.base.settle(&v, &levels.criteria);
        } else {
            let first = Baseline::of([&v], &levels.criteria);
            self.base.ttft_p95 = self.base.ttft_p95.or(first.ttft_p95);
            self.base.e2e_p50 = self.base.e2e_p50.or(first.e2e_p50);
            self.base.e2e_p95 = self.base.e2e_p95.or(first.e2e_p95);
        }
        let why = analysis::saturation_reasons(&v, &self.base, &levels.criteria);
        if why.is_empty() {
            eprintln!("auto: QPS {} holds", rate(q));
        } else {
            eprintln!("auto: QPS {} saturates: {}", rate(q), why.join("; "));
        }
        Ok(Some(!why.is_empty()))
    }
}
