//! The server's own gauges during the run (`--server-metrics`): the scrape target checked with
//! the plan, the scraper started before the first level (after one scrape that says at once
//! whether the URL answers), and each level's share of the scrapes: its `server_metrics`, and
//! the per-second samples of its timeline.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cli::BenchArgs;
use crate::engine::LevelRun;
use crate::foundation::error::{Result, UserError};
use crate::foundation::secret::mask_url;
use crate::servermetrics::scrape::{fetch, Scraper, Target};
use crate::servermetrics::{
    prefix_cache_share, series_values, summarize, Scrape, Selection, SeriesStats,
};
use crate::stats::prompt_cache::ServerCache;

/// Between scrapes.
const PERIOD: Duration = Duration::from_secs(1);
/// One scrape's limit, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// What to scrape and keep.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    pub target: Target,
    pub selection: Selection,
    /// The URL as shown (secret query parameters masked).
    pub shown: String,
}

/// `--server-metrics`, `--server-metric` and `--server-metrics-label`, checked.
pub fn plan(args: &BenchArgs) -> Result<Option<ServerMetrics>> {
    let Some(url) = &args.server_metrics else {
        if args.server_metrics_label.is_some() || !args.server_metric.is_empty() {
            eprintln!(
                "note: --server-metric and --server-metrics-label apply with --server-metrics only"
            );
        }
        return Ok(None);
    };
    let shown = mask_url(url);
    let target = Target::parse(url).map_err(|e| {
        UserError::input(format!(
            "--server-metrics {}",
            e.replace(url.as_str(), &shown)
        ))
    })?;
    let label = match &args.server_metrics_label {
        None => None,
        Some(raw) => match raw.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Some((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(UserError::input(format!(
                    "--server-metrics-label '{raw}': expected KEY=VALUE, e.g. model_name=my-model"
                )))
            }
        },
    };
    Ok(Some(ServerMetrics {
        target,
        selection: Selection::new(&args.server_metric, label),
        shown,
    }))
}

/// Scrapes once (warning if that fails: the run goes on), then starts the scraper.
pub fn start(m: &ServerMetrics) -> Scraper {
    match fetch(&m.target, TIMEOUT) {
        Ok(text) => {
            let picked = m.selection.pick(&crate::servermetrics::prometheus::parse(&text));
            let found = picked.iter().filter(|(_, v)| v.is_some()).count();
            eprintln!(
                "server metrics: {} answers; {found} of the {} known series found",
                m.shown,
                m.selection.series.len()
            );
        }
        Err(e) => eprintln!(
            "warning: --server-metrics {}: the scrape before the first level failed ({e}); scraping goes on during the levels",
            m.shown
        ),
    }
    Scraper::start(m.target.clone(), m.selection.clone(), PERIOD, TIMEOUT)
}

/// A level's summary of the scrapes taken while it sent (from its start to the end of its
/// sending window: the drain after it is not the load it offered), and every scrape of the
/// level, drain included (for the timeline).
pub fn level_summary(
    m: &ServerMetrics,
    scraper: &Scraper,
    run: &LevelRun,
) -> (BTreeMap<String, SeriesStats>, Vec<Scrape>) {
    let scrapes = scraper.between(run.start_ns, run.end_ns);
    let sending: Vec<Scrape> = scrapes
        .iter()
        .filter(|s| s.t_ns <= run.window_end_ns)
        .cloned()
        .collect();
    (summarize(&m.selection, &sending), scrapes)
}

/// The server's prefix-cache hit share over a level, where it exports one: its counters in a
/// scrape taken now, once the level has ended (the periodic scrapes may miss its last second),
/// against `before` (the previous level's such scrape) or else the last scrape before the level
/// started. Returns the scrape taken now too, for the next level.
pub fn level_cache(
    m: &ServerMetrics,
    scraper: &Scraper,
    run: &LevelRun,
    before: Option<Scrape>,
) -> (Option<ServerCache>, Option<Scrape>) {
    let after = fetch(&m.target, TIMEOUT).ok().map(|text| Scrape {
        t_ns: crate::foundation::clock::now_ns(),
        values: m
            .selection
            .pick(&crate::servermetrics::prometheus::parse(&text)),
    });
    let before = before.or_else(|| scraper.between(0, run.start_ns).pop());
    let share = match (&before, &after) {
        (Some(b), Some(a)) => prefix_cache_share(&m.selection, b, a),
        _ => None,
    };
    let cache = share.map(|(hit_share, source)| ServerCache {
        hit_share,
        source: source.to_string(),
    });
    (cache, after)
}

/// Each second's last value of every series (a counter's rate), by second since `start_ns`.
pub fn per_second(
    m: &ServerMetrics,
    scrapes: &[Scrape],
    start_ns: u64,
) -> BTreeMap<usize, BTreeMap<String, f64>> {
    let mut out: BTreeMap<usize, BTreeMap<String, f64>> = BTreeMap::new();
    for (name, _, points) in series_values(&m.selection, scrapes) {
        for (t, v) in points {
            let second = (t.saturating_sub(start_ns) / 1_000_000_000) as usize;
            out.entry(second)
                .or_default()
                .insert(name.clone(), (v * 1000.0).round() / 1000.0);
        }
    }
    out
}
