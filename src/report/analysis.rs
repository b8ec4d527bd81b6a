//! The saturation analysis: from a run's levels to the verdict a user acts on — the highest
//! level without 503s, the saturation point, the optimal QPS and a recommended production limit,
//! each with its reason in words. Printed after the console table and written as `summary.json`.
//!
//! Data flow: `bench` (or a saved results folder) → level objects as in
//! `benchmark_qps_results.json` → [`LevelView`] → [`analyze`] → [`Summary`].
//!
//! Client-limited levels measure the client, not the endpoint: they are never the saturation
//! point, the optimal level or the last level without 503s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::servermetrics::queue_growth;
use crate::stats::{LevelStats, Percentiles};

/// The endpoint unloaded: the probe's few sequential requests (`bench::probe`), recorded in
/// metadata.json as `baseline`. Every level's growth is measured against it, so that a lowest
/// level that is itself loaded cannot hide its own saturation.
///
/// A level's p95 is compared with the slowest of these requests, not their median: even alone,
/// a server's requests vary (a llama.cpp slot that holds the chat template's prefix answers a
/// first token in a tenth of the time a cold slot takes), and a p95 sees the slow ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Unloaded {
    /// Requests it is made of.
    pub requests: u32,
    /// TTFT, seconds: median and slowest (none without tokens: embeddings).
    pub ttft_s: Option<f64>,
    #[serde(default)]
    pub ttft_max_s: Option<f64>,
    /// E2E latency, seconds: median and slowest.
    pub e2e_s: f64,
    #[serde(default)]
    pub e2e_max_s: Option<f64>,
}

/// The thresholds of the analysis (flags `--saturation-*`, `--slo-*`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Criteria {
    /// A level below this success rate (%) is saturated; the optimal level needs at least it.
    pub min_success_pct: f64,
    /// A level whose throughput QPS is below this fraction of its offered load is saturated
    /// (see [`offered_qps`]).
    pub min_throughput_ratio: f64,
    /// A level whose TTFT p95 is above this multiple of the lowest level's is saturated.
    pub max_ttft_growth: f64,
    /// SLOs at `slo_percentile`, seconds.
    pub slo_ttft_s: Option<f64>,
    pub slo_e2e_s: Option<f64>,
    pub slo_percentile: f64,
    /// The recommended production limit as a fraction of the optimal QPS.
    pub headroom: f64,
    /// The endpoint unloaded (the probe's baseline); without it (`--no-probe`, older runs),
    /// the lowest level is the baseline.
    pub unloaded: Option<Unloaded>,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            min_success_pct: 95.0,
            min_throughput_ratio: 0.9,
            max_ttft_growth: 3.0,
            slo_ttft_s: None,
            slo_e2e_s: None,
            slo_percentile: 95.0,
            headroom: 0.75,
            unloaded: None,
        }
    }
}

impl Criteria {
    /// The thresholds a saved run used, from its `metadata.json` (older runs without them get
    /// the defaults).
    pub fn of_run(meta: &serde_json::Value) -> Self {
        let d = Criteria::default();
        let f = |k: &str| meta.get(k).and_then(serde_json::Value::as_f64);
        Criteria {
            min_success_pct: f("saturation_success_pct").unwrap_or(d.min_success_pct),
            min_throughput_ratio: f("saturation_throughput_ratio")
                .unwrap_or(d.min_throughput_ratio),
            max_ttft_growth: f("saturation_ttft_growth").unwrap_or(d.max_ttft_growth),
            slo_ttft_s: f("slo_ttft_s"),
            slo_e2e_s: f("slo_e2e_s"),
            slo_percentile: f("slo_percentile").unwrap_or(d.slo_percentile),
            headroom: d.headroom,
            unloaded: meta
                .get("baseline")
                .and_then(|b| serde_json::from_value(b.clone()).ok()),
        }
    }
}

/// What the analysis reads of a level (a subset of its JSON object).
#[derive(Debug, Clone, Deserialize)]
pub struct LevelView {
    pub qps_target: f64,
    #[serde(default)]
    pub actual_qps: f64,
    pub success_rate: f64,
    pub throughput_qps: f64,
    pub total_requests: u64,
    /// Older results files lack it: then success rate × total.
    #[serde(default)]
    pub successful_requests: Option<u64>,
    /// The first answer's text of each error category (the server's own words).
    #[serde(default)]
    pub error_samples: BTreeMap<String, String>,
    /// `--duration` (older results files lack it: the rule then compares with the target).
    #[serde(default)]
    pub duration_s: f64,
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    pub ttft: BTreeMap<String, Option<f64>>,
    pub e2e_latency: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    pub tokens_per_sec: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    pub client_limited: bool,
    /// A partial level (the run was stopped during it): left out of the analysis.
    #[serde(default)]
    pub interrupted: bool,
    /// The server's series over the level (`--server-metrics`).
    #[serde(default)]
    pub server_metrics: Option<BTreeMap<String, crate::servermetrics::SeriesStats>>,
    /// Set when the level's TTFT reflects the server's prefix cache (`prefix_cache`).
    #[serde(default)]
    pub prompt_cache_warning: Option<String>,
    /// With sessions: how much faster later turns started than the first.
    #[serde(default)]
    pub sessions: Option<SessionsView>,
    /// With sessions: each turn's TTFT and prompt-cache share (for `turns.png`).
    #[serde(default)]
    pub per_turn: Option<Vec<TurnView>>,
    /// With `--api embeddings`: the inputs embedded per second.
    #[serde(default)]
    pub embeddings: Option<EmbeddingsView>,
}

/// What the picture draws of an embeddings level.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EmbeddingsView {
    pub inputs_per_sec: f64,
}

/// What the sessions picture draws of one turn.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TurnView {
    /// `1` … `7`, `≥8`.
    pub turn: String,
    #[serde(default)]
    pub ttft: BTreeMap<String, Option<f64>>,
    #[serde(default)]
    pub prompt_cache_hit_share: Option<f64>,
}

/// What the summary says of a level's sessions.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SessionsView {
    #[serde(default)]
    pub first_turn_ttft_p50_s: Option<f64>,
    #[serde(default)]
    pub later_turns_ttft_p50_s: Option<f64>,
    #[serde(default)]
    pub later_turns_ttft_speedup: Option<f64>,
}

impl SessionsView {
    /// `QPS 4: later turns' TTFT p50 0.12 s is 3.1× faster than the first turn's 0.37 s`.
    pub(crate) fn sentence(&self, qps: f64) -> Option<String> {
        let (first, later, x) = (
            self.first_turn_ttft_p50_s?,
            self.later_turns_ttft_p50_s?,
            self.later_turns_ttft_speedup?,
        );
        let how = if (0.95..=1.05).contains(&x) {
            "about as fast as".to_string()
        } else if x > 1.0 {
            format!("{x}× faster than")
        } else {
            format!("{:.2}× slower than", 1.0 / x)
        };
        Some(format!(
            "QPS {}: later turns' TTFT p50 {later:.3} s is {how} the first turn's {first:.3} s",
            qps_text(qps)
        ))
    }
}

fn percentile_map(p: &Percentiles) -> BTreeMap<String, Option<f64>> {
    p.0.iter().cloned().collect()
}

impl From<&LevelStats> for LevelView {
    /// The view of a level just measured (no JSON round trip: nothing can be lost on the way).
    fn from(l: &LevelStats) -> Self {
        Self {
            qps_target: l.qps_target,
            actual_qps: l.actual_qps,
            success_rate: l.success_rate,
            throughput_qps: l.throughput_qps,
            total_requests: l.total_requests,
            successful_requests: Some(l.successful_requests),
            error_samples: l.error_samples.clone(),
            duration_s: l.duration_s,
            errors: l.errors.clone(),
            ttft: percentile_map(&l.ttft),
            e2e_latency: percentile_map(&l.e2e_latency),
            tokens_per_sec: percentile_map(&l.tokens_per_sec),
            embeddings: l.embeddings.as_ref().map(|e| EmbeddingsView {
                inputs_per_sec: e.inputs_per_sec,
            }),
            client_limited: l.client.client_limited,
            interrupted: l.interrupted,
            server_metrics: l.server.server_metrics.clone(),
            prompt_cache_warning: l.prompt_cache.prompt_cache_warning.clone(),
            sessions: l.sessions.as_ref().map(|s| SessionsView {
                first_turn_ttft_p50_s: s.first_turn_ttft_p50_s,
                later_turns_ttft_p50_s: s.later_turns_ttft_p50_s,
                later_turns_ttft_speedup: s.later_turns_ttft_speedup,
            }),
            per_turn: l.per_turn.as_ref().map(|turns| {
                turns
                    .iter()
                    .map(|t| TurnView {
                        turn: t.turn.clone(),
                        ttft: percentile_map(&t.ttft),
                        prompt_cache_hit_share: t.prompt_cache_hit_share,
                    })
                    .collect()
            }),
        }
    }
}

/// The levels as the analysis reads them.
pub fn views(levels: &[LevelStats]) -> Vec<LevelView> {
    levels.iter().map(LevelView::from).collect()
}

/// What every level is compared with: the endpoint unloaded (the probe's), else the lowest
/// level's figures.
///
/// With the endpoint unloaded, the offered load is corrected by its E2E median, and a level's
/// growth is measured against its slowest unloaded request, until the lowest level shows that
/// it holds by the rules that need no growth reference (success, throughput, the server's
/// queue): then its own p95s, where higher, become the growth reference ([`Baseline::settle`]).
/// Requests slow each other down even on a server that keeps up (two prompts sharing one CPU:
/// ten times one alone, on llama.cpp with one thread), which is no saturation; a lowest level
/// that does not hold keeps the server alone as its reference, so it cannot hide itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    /// The figures are the probe's unloaded requests (else the lowest level's).
    pub unloaded: bool,
    /// The growth reference was raised to a holding lowest level's p95s.
    pub growth_from_level: bool,
    /// A level that holds has settled the growth reference ([`Baseline::settle`]).
    pub settled: bool,
    pub ttft_p95: Option<f64>,
    pub e2e_p50: Option<f64>,
    /// Where no level has a TTFT (embeddings): the latency whose growth marks saturation.
    pub e2e_p95: Option<f64>,
    /// With sessions: the lowest level's sending span (its requests ÷ its request rate): the
    /// window plus the turns its last sessions sent after it, unloaded.
    pub send_span_s: Option<f64>,
}

impl Baseline {
    /// From the endpoint unloaded when the probe measured it (`c.unloaded`), settled by the
    /// lowest level; else from the lowest-rate level that has the figures (`levels` in any
    /// order).
    pub fn of<'a>(levels: impl IntoIterator<Item = &'a LevelView>, c: &Criteria) -> Self {
        let mut sorted: Vec<&LevelView> = levels.into_iter().collect();
        sorted.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
        let span = sorted
            .iter()
            .filter(|l| l.sessions.is_some() && l.actual_qps > 0.0)
            .map(|l| l.total_requests as f64 / l.actual_qps)
            .next();
        if let Some(u) = c.unloaded.filter(|u| u.requests > 0) {
            let mut b = Self {
                unloaded: true,
                ttft_p95: u.ttft_max_s.or(u.ttft_s),
                e2e_p50: Some(u.e2e_s),
                e2e_p95: Some(u.e2e_max_s.unwrap_or(u.e2e_s)),
                send_span_s: span,
                ..Self::default()
            };
            if let Some(lowest) = sorted.iter().find(|l| l.successes() > 0) {
                b.settle(lowest, c);
            }
            return b;
        }
        Self {
            ttft_p95: sorted.iter().find_map(|l| l.ttft("p95")),
            e2e_p50: sorted.iter().find_map(|l| l.e2e("p50")),
            e2e_p95: sorted.iter().find_map(|l| l.e2e("p95")),
            send_span_s: span,
            ..Self::default()
        }
    }

    /// With the endpoint unloaded as the reference: the first level given that holds by the
    /// load rules (the lowest, in an analysis) raises the growth reference to its own p95s.
    pub fn settle(&mut self, lowest: &LevelView, c: &Criteria) {
        if !self.unloaded || self.settled || !load_reasons(lowest, self, c).is_empty() {
            return;
        }
        self.settled = true;
        let higher = |mine: &mut Option<f64>, its: Option<f64>| match (*mine, its) {
            (Some(m), Some(i)) if i > m => {
                *mine = Some(i);
                true
            }
            _ => false,
        };
        let t = higher(&mut self.ttft_p95, lowest.ttft("p95"));
        let e = higher(&mut self.e2e_p95, lowest.e2e("p95"));
        self.growth_from_level = t || e;
    }

    /// Whose figures a reason cites: for growth (`p95`) or for the offered load.
    fn whose(&self, p95: bool) -> &'static str {
        match (self.unloaded, p95 && self.growth_from_level) {
            (true, false) => "the unloaded",
            _ => "the lowest level's",
        }
    }

    /// The statistic a reason cites: the slowest unloaded request (the median for the offered
    /// load), or the lowest level's p95 (p50).
    fn stat(&self, p95: bool) -> &'static str {
        match (self.unloaded, p95, self.growth_from_level) {
            (true, true, false) => "max",
            (true, false, _) => "median",
            (_, true, _) => "p95",
            (false, false, _) => "p50",
        }
    }

    /// The time a level's requests are offered over: `--duration`, or with sessions the lowest
    /// level's sending span (later turns go on after the window by design).
    fn span(&self, l: &LevelView) -> f64 {
        match (self.send_span_s, &l.sessions) {
            (Some(span), Some(_)) => span.max(l.duration_s),
            _ => l.duration_s,
        }
    }
}

/// The load a level offered, measured the way its throughput is: its requests ÷ (`--duration`
/// plus the lowest level's E2E p50). An unloaded level's last requests finish about one E2E after
/// the window, so its throughput over the completion window reads as 1.0 of this, where a plain
/// comparison with the target would read below 1 and call a healthy level saturated. Levels
/// from files without `duration_s` fall back to the target. A level of sessions is offered over
/// the lowest level's sending span instead of `--duration` ([`Baseline::span`]).
pub fn offered_qps(l: &LevelView, base: &Baseline) -> f64 {
    if l.duration_s > 0.0 {
        l.total_requests as f64 / (base.span(l) + base.e2e_p50.unwrap_or(0.0))
    } else {
        l.qps_target
    }
}

impl LevelView {
    /// Successful requests (older files: success rate × requests).
    pub(crate) fn successes(&self) -> u64 {
        self.successful_requests.unwrap_or_else(|| {
            (self.success_rate * self.total_requests as f64 / 100.0).round() as u64
        })
    }
    pub(crate) fn ttft(&self, key: &str) -> Option<f64> {
        self.ttft.get(key).copied().flatten()
    }
    pub(crate) fn e2e(&self, key: &str) -> Option<f64> {
        self.e2e_latency.get(key).copied().flatten()
    }
    pub(crate) fn http_503(&self) -> u64 {
        self.errors.get("HTTP 503").copied().unwrap_or(0)
    }
}

/// A rate as every output writes it (`foundation::rate`).
fn qps_text(v: f64) -> String {
    crate::foundation::rate::text(v)
}

/// A percentage or factor as written: `95`, not `95.0`.
fn num(v: f64) -> String {
    format!("{v}")
}

/// Why a level is saturated (empty: it is not): success below the threshold, throughput below
/// its share of the offered load ([`offered_qps`]), TTFT p95 past its growth limit over the
/// baseline's (E2E p95, where no level has a TTFT: embeddings), or the server's queue grew.
pub fn saturation_reasons(l: &LevelView, base: &Baseline, c: &Criteria) -> Vec<String> {
    let mut why: Vec<String> = [success_reason(l, c), throughput_reason(l, base, c)]
        .into_iter()
        .flatten()
        .collect();
    why.extend(growth_reasons(l, base, c));
    why.extend(queue_reason(l));
    why
}

/// The rules that need no growth reference: success, throughput, the server's queue.
pub fn load_reasons(l: &LevelView, base: &Baseline, c: &Criteria) -> Vec<String> {
    [
        success_reason(l, c),
        throughput_reason(l, base, c),
        queue_reason(l),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn success_reason(l: &LevelView, c: &Criteria) -> Option<String> {
    (l.success_rate < c.min_success_pct).then(|| {
        format!(
            "success {:.1}% is below {}%",
            l.success_rate,
            num(c.min_success_pct)
        )
    })
}

fn throughput_reason(l: &LevelView, base: &Baseline, c: &Criteria) -> Option<String> {
    let offered = offered_qps(l, base);
    if l.throughput_qps >= c.min_throughput_ratio * offered {
        return None;
    }
    let how = if l.duration_s > 0.0 {
        format!(
            " ({} requests ÷ ({} s{} + {} E2E {} {:.3} s))",
            l.total_requests,
            (base.span(l) * 1000.0).round() / 1000.0,
            if base.span(l) > l.duration_s {
                ", the lowest level's sending span with its sessions' later turns"
            } else {
                ""
            },
            base.whose(false),
            base.stat(false),
            base.e2e_p50.unwrap_or(0.0)
        )
    } else {
        String::new()
    };
    Some(format!(
        "throughput {:.2} QPS is below {:.0}% of the offered {:.2} QPS{how}",
        l.throughput_qps,
        c.min_throughput_ratio * 100.0,
        offered,
    ))
}

/// TTFT p95's growth over the baseline; without any TTFT (embeddings: one answer, no tokens),
/// E2E p95's stands in for it.
fn growth_reasons(l: &LevelView, base: &Baseline, c: &Criteria) -> Option<String> {
    let (whose, stat) = (base.whose(true), base.stat(true));
    let grew = |b: f64, t: f64| b > 0.0 && t > c.max_ttft_growth * b;
    if let (Some(b), Some(t)) = (base.ttft_p95, l.ttft("p95")) {
        return grew(b, t).then(|| {
            format!(
                "TTFT p95 {t:.3} s is over {}× {whose} TTFT {stat} {b:.3} s",
                num(c.max_ttft_growth)
            )
        });
    }
    match (base.ttft_p95, base.e2e_p95, l.e2e("p95")) {
        (None, Some(b), Some(t)) if grew(b, t) => Some(format!(
            "E2E p95 {t:.3} s is over {}× {whose} E2E {stat} {b:.3} s (no TTFT: answers are not streamed)",
            num(c.max_ttft_growth)
        )),
        _ => None,
    }
}

/// The server's own evidence: its queue grew through the level.
fn queue_reason(l: &LevelView) -> Option<String> {
    let grew = l.server_metrics.as_ref().and_then(queue_growth)?;
    Some(format!("{grew} during QPS {}", qps_text(l.qps_target)))
}
