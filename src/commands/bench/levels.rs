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
use crate::report::analysis::{self, Criteria, LevelView};
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

/// The levels measured so far, and what measuring another one needs.
pub struct Levels<'a> {
    pub(super) plan: &'a Plan,
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
pub struct Fixed(pub Vec<f64>);

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
