//! Layer 6 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `api`; `workload` and the layers after it use it.
//!
//! The server's own gauges: `--server-metrics URL` (its Prometheus `/metrics`), scraped about
//! once a second on a thread of its own (`scrape`), reduced to the series qpsbench knows, and
//! summed up per level and per second.
//!
//! Data flow: `bench` starts a [`scrape::Scraper`] before the first level; after each level it
//! takes the scrapes inside the level's window and [`summarize`]s them into the level's
//! `server_metrics` (and the timeline's seconds). Each series is one number per scrape: the
//! samples of all its label sets (or of the one `--server-metrics-label` selects) combined by
//! its [`Kind`].

pub mod prometheus;
pub mod scrape;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::servermetrics::prometheus::Exposition;

/// How a series' label sets combine, and how it is summed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A count of requests (running, waiting): label sets are summed.
    Count,
    /// A fraction (`*_perc`, `token_usage`): label sets are averaged.
    Ratio,
    /// A monotonic counter: label sets are summed, and a level reports its rate per second.
    Counter,
}

/// The series each server exports that qpsbench reads by default.
pub const BUILT_IN: &[(&str, Kind)] = &[
    ("vllm:num_requests_running", Kind::Count),
    ("vllm:num_requests_waiting", Kind::Count),
    ("vllm:kv_cache_usage_perc", Kind::Ratio),
    ("vllm:gpu_cache_usage_perc", Kind::Ratio),
    ("vllm:num_preemptions_total", Kind::Counter),
    ("vllm:prompt_tokens_total", Kind::Counter),
    ("vllm:generation_tokens_total", Kind::Counter),
    ("sglang:num_running_reqs", Kind::Count),
    ("sglang:num_queue_reqs", Kind::Count),
    ("sglang:token_usage", Kind::Ratio),
    ("tgi_queue_size", Kind::Count),
    ("tgi_batch_current_size", Kind::Count),
    ("llamacpp:requests_processing", Kind::Count),
    ("llamacpp:requests_deferred", Kind::Count),
    ("llamacpp:prompt_tokens_total", Kind::Counter),
    ("llamacpp:prompt_tokens_cached_total", Kind::Counter),
    ("llamacpp:tokens_predicted_total", Kind::Counter),
    ("vllm:prefix_cache_queries_total", Kind::Counter),
    ("vllm:prefix_cache_hits_total", Kind::Counter),
    ("sglang:cache_hit_rate", Kind::Ratio),
];

/// The series that count requests waiting in a server's queue (the saturation evidence).
pub const QUEUES: &[&str] = &[
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "tgi_queue_size",
    "llamacpp:requests_deferred",
];

/// The series that count requests a server is generating for (its batch).
pub const RUNNING: &[&str] = &[
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "tgi_batch_current_size",
    "llamacpp:requests_processing",
];

/// The kind of a series named with `--server-metric`: a counter when it says so (`# TYPE`) or
/// ends in `_total`; a ratio when it ends in `_perc`, `_ratio` or `usage`; a count otherwise.
pub fn kind_of(name: &str, declared: Option<&str>) -> Kind {
    if declared == Some("counter") || name.ends_with("_total") {
        Kind::Counter
    } else if ["_perc", "_ratio", "usage"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        Kind::Ratio
    } else {
        Kind::Count
    }
}

/// Which series to keep, and which label set.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Names and kinds (the built-in ones, then `--server-metric`'s).
    pub series: Vec<(String, Option<Kind>)>,
    /// `--server-metrics-label key=value`.
    pub label: Option<(String, String)>,
}

impl Selection {
    /// The built-in series plus `extra` names, with an optional label filter.
    pub fn new(extra: &[String], label: Option<(String, String)>) -> Self {
        let mut series: Vec<(String, Option<Kind>)> = BUILT_IN
            .iter()
            .map(|(n, k)| (n.to_string(), Some(*k)))
            .collect();
        for name in extra {
            if !series.iter().any(|(n, _)| n == name) {
                series.push((name.clone(), None));
            }
        }
        Self { series, label }
    }

    /// One value per series (`None`: not in this scrape), with the kinds resolved.
    pub fn pick(&self, e: &Exposition<'_>) -> Vec<(Kind, Option<f64>)> {
        self.series
            .iter()
            .map(|(name, kind)| {
                let kind =
                    kind.unwrap_or_else(|| kind_of(name, e.types.get(name.as_str()).copied()));
                let values: Vec<f64> = e
                    .samples
                    .iter()
                    .filter(|s| s.name == name && s.value.is_finite())
                    .filter(|s| match &self.label {
                        Some((k, v)) => s.labels.iter().any(|(lk, lv)| lk == k && lv == v),
                        None => true,
                    })
                    .map(|s| s.value)
                    .collect();
                let value = (!values.is_empty()).then(|| {
                    let sum: f64 = values.iter().sum();
                    match kind {
                        Kind::Ratio => sum / values.len() as f64,
                        Kind::Count | Kind::Counter => sum,
                    }
                });
                (kind, value)
            })
            .collect()
    }
}

/// One scrape: when (monotonic ns), and each series' value.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub t_ns: u64,
    pub values: Vec<(Kind, Option<f64>)>,
}

/// A series over one level: gauges as read, counters as rates per second between scrapes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesStats {
    pub kind: Kind,
    pub mean: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
    pub samples: usize,
}

/// A series' points: (monotonic ns, value).
pub type Points = Vec<(u64, f64)>;

/// Each series' values over `scrapes` (in time order): a gauge's own values; a counter's rate
/// per second between consecutive scrapes. Series never seen are left out.
pub fn series_values(selection: &Selection, scrapes: &[Scrape]) -> Vec<(String, Kind, Points)> {
    let mut out = Vec::new();
    for (i, (name, _)) in selection.series.iter().enumerate() {
        let seen: Vec<(u64, Kind, f64)> = scrapes
            .iter()
            .filter_map(|s| {
                s.values
                    .get(i)
                    .and_then(|&(k, v)| v.map(|v| (s.t_ns, k, v)))
            })
            .collect();
        let Some(&(_, kind, _)) = seen.first() else {
            continue;
        };
        let points: Points = match kind {
            Kind::Counter => seen
                .windows(2)
                .filter(|w| w[1].0 > w[0].0)
                .map(|w| {
                    (
                        w[1].0,
                        ((w[1].2 - w[0].2) / ((w[1].0 - w[0].0) as f64 / 1e9)).max(0.0),
                    )
                })
                .collect(),
            _ => seen.iter().map(|&(t, _, v)| (t, v)).collect(),
        };
        if !points.is_empty() {
            out.push((name.clone(), kind, points));
        }
    }
    out
}

/// The level's `server_metrics`: each series' mean, max, first and last.
pub fn summarize(selection: &Selection, scrapes: &[Scrape]) -> BTreeMap<String, SeriesStats> {
    series_values(selection, scrapes)
        .into_iter()
        .map(|(name, kind, points)| {
            let vals: Vec<f64> = points.iter().map(|p| p.1).collect();
            let stats = SeriesStats {
                kind,
                mean: round3(vals.iter().sum::<f64>() / vals.len() as f64),
                max: round3(vals.iter().copied().fold(f64::MIN, f64::max)),
                first: round3(vals[0]),
                last: round3(vals[vals.len() - 1]),
                samples: vals.len(),
            };
            (name, stats)
        })
        .collect()
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The saturation evidence in a level's series: a queue that grew through the level, from its
/// first scrape to its last, to at least [`QUEUE_GROWTH_MIN`] and more than twice where it
/// started plus 2 (so that the brief queues of a busy but keeping-up server, a few requests at
/// a time, are not growth). Returns e.g. "waiting requests
/// (vllm:num_requests_waiting) grew from 0 to 143".
pub fn queue_growth(metrics: &BTreeMap<String, SeriesStats>) -> Option<String> {
    QUEUES.iter().find_map(|name| {
        let s = metrics.get(*name)?;
        (s.samples >= 2 && s.last >= QUEUE_GROWTH_MIN && s.last > 2.0 * s.first + 2.0).then(|| {
            format!(
                "waiting requests ({name}) grew from {} to {}",
                s.first, s.last
            )
        })
    })
}

/// The least queue a level must end with for its growth to count.
pub const QUEUE_GROWTH_MIN: f64 = 10.0;

/// The server's prefix-cache hit share between two scrapes (`before`, at or before the level's
/// start, and `after`, once it ended), and the series it comes from: vLLM's hit and query
/// counters (tokens), llama.cpp's cached prompt tokens against its prompt tokens (which count
/// only the uncached ones), or SGLang's `cache_hit_rate` gauge as read at the end. `None` when
/// the server exports none of them, or the level's counters did not move.
pub fn prefix_cache_share(
    selection: &Selection,
    before: &Scrape,
    after: &Scrape,
) -> Option<(f64, &'static str)> {
    let value = |s: &Scrape, name: &str| {
        let i = selection.series.iter().position(|(n, _)| n == name)?;
        s.values.get(i).and_then(|v| v.1)
    };
    let delta = |name: &str| Some((value(after, name)? - value(before, name)?).max(0.0));
    let vllm = || {
        let (hits, queries) = (
            delta("vllm:prefix_cache_hits_total")?,
            delta("vllm:prefix_cache_queries_total")?,
        );
        (queries > 0.0).then(|| {
            (
                hits / queries,
                "vllm:prefix_cache_hits_total ÷ vllm:prefix_cache_queries_total",
            )
        })
    };
    let llama = || {
        let (cached, uncached) = (
            delta("llamacpp:prompt_tokens_cached_total")?,
            delta("llamacpp:prompt_tokens_total")?,
        );
        (cached + uncached > 0.0).then(|| {
            (
                cached / (cached + uncached),
                "llamacpp:prompt_tokens_cached_total ÷ (it + llamacpp:prompt_tokens_total)",
            )
        })
    };
    let sglang = || {
        Some((
            value(after, "sglang:cache_hit_rate")?,
            "sglang:cache_hit_rate",
        ))
    };
    vllm()
        .or_else(llama)
        .or_else(sglang)
        .map(|(v, src)| ((v.clamp(0.0, 1.0) * 1e6).round() / 1e6, src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_combine_by_kind_and_counters_become_rates() {
        let text = "vllm:num_requests_waiting{engine=\"0\",model_name=\"a\"} 3\nvllm:num_requests_waiting{engine=\"1\",model_name=\"b\"} 4\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.4\nmy_thing_total 10\n";
        let e = crate::servermetrics::prometheus::parse(text);
        let all = Selection::new(&["my_thing_total".into()], None);
        let v = all.pick(&e);
        let get = |v: &[(Kind, Option<f64>)], n: &str| {
            v[all.series.iter().position(|(s, _)| s == n).unwrap()]
        };
        assert_eq!(
            get(&v, "vllm:num_requests_waiting"),
            (Kind::Count, Some(7.0))
        );
        let (k, r) = get(&v, "vllm:kv_cache_usage_perc");
        assert_eq!(k, Kind::Ratio);
        assert!((r.unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(get(&v, "my_thing_total").0, Kind::Counter);
        assert_eq!(get(&v, "tgi_queue_size").1, None);
        let one = Selection::new(&[], Some(("model_name".into(), "b".into())));
        let w = one.pick(&e);
        assert_eq!(w[1], (Kind::Count, Some(4.0)));
        // Counters: rates between scrapes; gauges: as read.
        let scrape = |t: u64, waiting: f64, total: f64| Scrape {
            t_ns: t * 1_000_000_000,
            values: all
                .series
                .iter()
                .map(|(n, _)| match n.as_str() {
                    "vllm:num_requests_waiting" => (Kind::Count, Some(waiting)),
                    "my_thing_total" => (Kind::Counter, Some(total)),
                    _ => (Kind::Count, None),
                })
                .collect(),
        };
        let scrapes = [
            scrape(1, 0.0, 100.0),
            scrape(2, 40.0, 150.0),
            scrape(3, 143.0, 250.0),
        ];
        let m = summarize(&all, &scrapes);
        assert_eq!(m["my_thing_total"].mean, 75.0);
        assert_eq!(m["my_thing_total"].last, 100.0);
        assert_eq!(m["vllm:num_requests_waiting"].max, 143.0);
        assert!(!m.contains_key("tgi_queue_size"));
        assert_eq!(
            queue_growth(&m).unwrap(),
            "waiting requests (vllm:num_requests_waiting) grew from 0 to 143"
        );
        let flat = summarize(&all, &[scrape(1, 3.0, 0.0), scrape(2, 4.0, 0.0)]);
        assert_eq!(queue_growth(&flat), None);
    }

    #[test]
    fn llama_cpp_series_are_known_and_its_cache_share_counts_cached_against_all() {
        let text = "llamacpp:prompt_tokens_total 40\nllamacpp:prompt_tokens_cached_total 38\nllamacpp:requests_deferred 12\nllamacpp:requests_processing 4\n";
        let all = Selection::new(&[], None);
        let at = |t: u64, text: &str| Scrape {
            t_ns: t,
            values: all.pick(&crate::servermetrics::prometheus::parse(text)),
        };
        let before = at(0, text);
        let after = at(
            5,
            "llamacpp:prompt_tokens_total 140\nllamacpp:prompt_tokens_cached_total 338\nllamacpp:requests_deferred 30\n",
        );
        // 300 cached of 400 prompt tokens during the level.
        let (share, source) = prefix_cache_share(&all, &before, &after).unwrap();
        assert_eq!(share, 0.75);
        assert!(source.starts_with("llamacpp:prompt_tokens_cached_total"));
        // vLLM's counters win where both are exported; nothing moved: no share.
        let vllm = |h: u64, q: u64| {
            format!("vllm:prefix_cache_hits_total {h}\nvllm:prefix_cache_queries_total {q}\n")
        };
        let (v, _) =
            prefix_cache_share(&all, &at(0, &vllm(10, 100)), &at(1, &vllm(30, 200))).unwrap();
        assert_eq!(v, 0.2);
        assert_eq!(prefix_cache_share(&all, &before, &before), None);
        let m = summarize(&all, &[before, after]);
        assert_eq!(
            queue_growth(&m).unwrap(),
            "waiting requests (llamacpp:requests_deferred) grew from 12 to 30"
        );
    }
}
