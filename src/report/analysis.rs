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
use crate::stats::{pct_key, LevelStats, Percentiles};

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
    fn sentence(&self, qps: f64) -> Option<String> {
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
            duration_s: l.duration_s,
            errors: l.errors.clone(),
            ttft: percentile_map(&l.ttft),
            e2e_latency: percentile_map(&l.e2e_latency),
            tokens_per_sec: percentile_map(&l.tokens_per_sec),
            embeddings: l.embeddings.as_ref().map(|e| EmbeddingsView {
                inputs_per_sec: e.inputs_per_sec,
            }),
            client_limited: l.client_limited,
            interrupted: l.interrupted,
            server_metrics: l.server_metrics.clone(),
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

/// What every level is compared with: the lowest level's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Baseline {
    pub ttft_p95: Option<f64>,
    pub e2e_p50: Option<f64>,
    /// Where no level has a TTFT (embeddings): the latency whose growth marks saturation.
    pub e2e_p95: Option<f64>,
    /// With sessions: the lowest level's sending span (its requests ÷ its request rate): the
    /// window plus the turns its last sessions sent after it, unloaded.
    pub send_span_s: Option<f64>,
}

impl Baseline {
    /// From the lowest-rate level that has the figures (`levels` in any order).
    pub fn of<'a>(levels: impl IntoIterator<Item = &'a LevelView>) -> Self {
        let mut sorted: Vec<&LevelView> = levels.into_iter().collect();
        sorted.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
        Self {
            ttft_p95: sorted.iter().find_map(|l| l.ttft("p95")),
            e2e_p50: sorted.iter().find_map(|l| l.e2e("p50")),
            e2e_p95: sorted.iter().find_map(|l| l.e2e("p95")),
            send_span_s: sorted
                .iter()
                .filter(|l| l.sessions.is_some() && l.actual_qps > 0.0)
                .map(|l| l.total_requests as f64 / l.actual_qps)
                .next(),
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
    fn ttft(&self, key: &str) -> Option<f64> {
        self.ttft.get(key).copied().flatten()
    }
    fn e2e(&self, key: &str) -> Option<f64> {
        self.e2e_latency.get(key).copied().flatten()
    }
    fn http_503(&self) -> u64 {
        self.errors.get("HTTP 503").copied().unwrap_or(0)
    }
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub max_qps_without_503: Option<f64>,
    pub saturation_qps: Option<f64>,
    pub optimal_qps: Option<f64>,
    pub recommended_limit_qps: Option<f64>,
    /// One sentence per field above, keyed by its name.
    pub reasons: BTreeMap<&'static str, String>,
    /// Levels left out of the analysis because the client fell behind.
    pub client_limited_levels: Vec<f64>,
    /// `--qps auto`: the last good and first saturated rate it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_bracket: Option<[f64; 2]>,
    /// Levels whose figures reflect the server's prefix cache, each in a sentence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prompt_cache_warnings: Vec<String>,
    /// With sessions: per level, how much faster later turns started than the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_turns: Vec<String>,
}

/// A rate (or percentage) as written: `5`, not `5.0`.
fn qps_text(v: f64) -> String {
    format!("{v}")
}

/// Why a level is saturated (empty: it is not): success below the threshold, throughput below
/// its share of the offered load ([`offered_qps`]), or TTFT p95 past its growth limit over the
/// lowest level's (E2E p95, where no level has a TTFT: embeddings).
pub fn saturation_reasons(l: &LevelView, base: &Baseline, c: &Criteria) -> Vec<String> {
    let mut why = Vec::new();
    if l.success_rate < c.min_success_pct {
        why.push(format!(
            "success {:.1}% is below {}%",
            l.success_rate,
            qps_text(c.min_success_pct)
        ));
    }
    let offered = offered_qps(l, base);
    if l.throughput_qps < c.min_throughput_ratio * offered {
        why.push(format!(
            "throughput {:.2} QPS is below {:.0}% of the offered {:.2} QPS{}",
            l.throughput_qps,
            c.min_throughput_ratio * 100.0,
            offered,
            if l.duration_s > 0.0 {
                format!(
                    " ({} requests ÷ ({} s{} + the lowest level's E2E p50 {:.3} s))",
                    l.total_requests,
                    (base.span(l) * 1000.0).round() / 1000.0,
                    if base.span(l) > l.duration_s {
                        ", the lowest level's sending span with its sessions' later turns"
                    } else {
                        ""
                    },
                    base.e2e_p50.unwrap_or(0.0)
                )
            } else {
                String::new()
            }
        ));
    }
    if let (Some(base), Some(t)) = (base.ttft_p95, l.ttft("p95")) {
        if base > 0.0 && t > c.max_ttft_growth * base {
            why.push(format!(
                "TTFT p95 {:.3} s is over {}× the lowest level's {:.3} s",
                t,
                qps_text(c.max_ttft_growth),
                base
            ));
        }
    }
    // No TTFT at all (embeddings: one answer, no tokens): E2E p95's growth stands in for it.
    if let (None, Some(base), Some(t)) = (base.ttft_p95, base.e2e_p95, l.e2e("p95")) {
        if base > 0.0 && t > c.max_ttft_growth * base {
            why.push(format!(
                "E2E p95 {:.3} s is over {}× the lowest level's {:.3} s (no TTFT: answers are not streamed)",
                t,
                qps_text(c.max_ttft_growth),
                base
            ));
        }
    }
    // The server's own evidence: its queue grew through the level.
    if let Some(grew) = l.server_metrics.as_ref().and_then(queue_growth) {
        why.push(format!("{grew} during QPS {}", qps_text(l.qps_target)));
    }
    why
}

/// Analyzes a run's levels (any order): the four verdicts, each with its reason.
pub fn analyze(levels: &[LevelView], c: &Criteria) -> Summary {
    let mut sorted: Vec<&LevelView> = levels.iter().collect();
    sorted.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
    let client_limited_levels: Vec<f64> = sorted
        .iter()
        .filter(|l| l.client_limited)
        .map(|l| l.qps_target)
        .collect();
    let usable: Vec<&LevelView> = sorted
        .iter()
        .copied()
        .filter(|l| !l.client_limited && !l.interrupted && l.total_requests > 0)
        .collect();
    let mut reasons = BTreeMap::new();
    let (max_qps_without_503, why) = max_without_503(&usable);
    reasons.insert("max_qps_without_503", why);
    let (saturation, why) = saturation_point(&usable, c);
    reasons.insert("saturation_qps", why);
    let (optimal, why) = optimal_level(&usable, saturation, c);
    reasons.insert("optimal_qps", why);
    let recommended = optimal.map(|l| (l.qps_target * c.headroom * 100.0).round() / 100.0);
    reasons.insert(
        "recommended_limit_qps",
        match (optimal, recommended) {
            (Some(l), Some(r)) => format!(
                "{r} QPS: {:.0}% of the optimal QPS {}, headroom for bursts and longer prompts than the dataset's",
                c.headroom * 100.0,
                qps_text(l.qps_target)
            ),
            _ => "no optimal level, so no recommendation".into(),
        },
    );
    Summary {
        max_qps_without_503,
        saturation_qps: saturation,
        optimal_qps: optimal.map(|l| l.qps_target),
        recommended_limit_qps: recommended,
        reasons,
        client_limited_levels,
        auto_bracket: None,
        prompt_cache_warnings: sorted
            .iter()
            .filter_map(|l| l.prompt_cache_warning.clone())
            .collect(),
        session_turns: sorted
            .iter()
            .filter_map(|l| l.sessions.as_ref()?.sentence(l.qps_target))
            .collect(),
    }
}

/// The highest level before the first one with 503s, and why.
fn max_without_503(usable: &[&LevelView]) -> (Option<f64>, String) {
    match usable.iter().position(|l| l.http_503() > 0) {
        Some(0) => {
            let l = usable[0];
            let why = format!(
                "even the lowest level (QPS {}) got HTTP 503 ({} of {} requests)",
                qps_text(l.qps_target),
                l.http_503(),
                l.total_requests
            );
            (None, why)
        }
        Some(i) => {
            let (ok, bad) = (usable[i - 1], usable[i]);
            let why = format!(
                "QPS {} is the highest level before the first 503s (QPS {}: {} of {} requests)",
                qps_text(ok.qps_target),
                qps_text(bad.qps_target),
                bad.http_503(),
                bad.total_requests
            );
            (Some(ok.qps_target), why)
        }
        None => match usable.last() {
            Some(l) => {
                let why = format!(
                    "no level returned HTTP 503, up to the highest tested (QPS {})",
                    qps_text(l.qps_target)
                );
                (Some(l.qps_target), why)
            }
            None => (None, "no level could be used".into()),
        },
    }
}

/// The saturation point: the first level breaking any rule, and why.
fn saturation_point(usable: &[&LevelView], c: &Criteria) -> (Option<f64>, String) {
    let base = Baseline::of(usable.iter().copied());
    for l in usable {
        let why = saturation_reasons(l, &base, c);
        if !why.is_empty() {
            let text = format!("QPS {}: {}", qps_text(l.qps_target), why.join("; "));
            return (Some(l.qps_target), text);
        }
    }
    let why = match usable.last() {
        Some(l) => format!(
            "no level saturated, up to QPS {} (success, throughput and TTFT growth all within bounds)",
            qps_text(l.qps_target)
        ),
        None => "no level could be used".into(),
    };
    (None, why)
}

/// Whether a level meets the success threshold and every SLO (the reason it does not).
fn meets(l: &LevelView, c: &Criteria) -> Result<(), String> {
    let key = pct_key(c.slo_percentile);
    if l.success_rate < c.min_success_pct {
        return Err(format!("success {:.1}%", l.success_rate));
    }
    if let Some(slo) = c.slo_ttft_s {
        match l.ttft(&key) {
            Some(t) if t <= slo => {}
            t => return Err(format!("TTFT {key} {t:?} s over the {slo} s SLO")),
        }
    }
    if let Some(slo) = c.slo_e2e_s {
        match l.e2e(&key) {
            Some(t) if t <= slo => {}
            t => return Err(format!("E2E {key} {t:?} s over the {slo} s SLO")),
        }
    }
    Ok(())
}

/// The optimal level: the highest below the saturation point meeting success and every SLO.
fn optimal_level<'a>(
    usable: &[&'a LevelView],
    saturation: Option<f64>,
    c: &Criteria,
) -> (Option<&'a LevelView>, String) {
    let key = pct_key(c.slo_percentile);
    let candidates: Vec<&LevelView> = usable
        .iter()
        .copied()
        .filter(|l| saturation.is_none_or(|s| l.qps_target < s))
        .collect();
    let optimal = candidates
        .iter()
        .rev()
        .find(|l| meets(l, c).is_ok())
        .copied();
    let mut slo_list = Vec::new();
    if let Some(t) = c.slo_ttft_s {
        slo_list.push(format!("TTFT {key} ≤ {t} s"));
    }
    if let Some(e) = c.slo_e2e_s {
        slo_list.push(format!("E2E {key} ≤ {e} s"));
    }
    let slos = if slo_list.is_empty() {
        String::new()
    } else {
        format!(" and the SLOs ({})", slo_list.join(", "))
    };
    let why = match optimal {
        Some(l) => format!(
            "QPS {} is the highest level{} with success ≥ {}%{}",
            qps_text(l.qps_target),
            saturation.map_or(String::new(), |s| format!(
                " below saturation (QPS {})",
                qps_text(s)
            )),
            qps_text(c.min_success_pct),
            slos
        ),
        None => {
            let why = candidates
                .first()
                .and_then(|l| meets(l, c).err())
                .map_or_else(
                    || "no level below the saturation point".to_string(),
                    |w| format!("the lowest level fails it: {w}"),
                );
            format!(
                "no level met success ≥ {}%{}: {why}",
                qps_text(c.min_success_pct),
                slos
            )
        }
    };
    (optimal, why)
}

/// The console block printed after the results table.
pub fn render(s: &Summary) -> String {
    let v = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v} QPS"));
    let r = |k: &str| s.reasons.get(k).cloned().unwrap_or_default();
    let mut out = String::from("\nSUMMARY AND RECOMMENDATIONS\n");
    for (label, value, key) in [
        (
            "Max QPS without 503s",
            s.max_qps_without_503,
            "max_qps_without_503",
        ),
        ("Saturation point", s.saturation_qps, "saturation_qps"),
        ("Optimal QPS", s.optimal_qps, "optimal_qps"),
        (
            "Recommended production limit",
            s.recommended_limit_qps,
            "recommended_limit_qps",
        ),
    ] {
        out.push_str(&format!("  {label:<29} {:<12} {}\n", v(value), r(key)));
    }
    if let Some([lo, hi]) = s.auto_bracket {
        out.push_str(&format!(
            "  {:<29} {lo} QPS holds, {hi} QPS saturates\n",
            "Capacity (--qps auto)"
        ));
    }
    if !s.client_limited_levels.is_empty() {
        out.push_str(&format!(
            "  Left out (client-limited): QPS {}\n",
            s.client_limited_levels
                .iter()
                .map(|q| q.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for w in &s.prompt_cache_warnings {
        out.push_str(&format!("  Prompt cache: {w}\n"));
    }
    for t in &s.session_turns {
        out.push_str(&format!("  Sessions: {t}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(qps: f64, success: f64, throughput: f64, ttft_p95: f64, e2e_p95: f64) -> LevelView {
        let p = |v: f64| {
            ["p50", "p90", "p95", "p99", "max"]
                .iter()
                .map(|k| (k.to_string(), Some(v)))
                .collect()
        };
        let sent = (qps * 10.0) as u64;
        let failed = sent - (sent as f64 * success / 100.0).round() as u64;
        LevelView {
            qps_target: qps,
            actual_qps: qps,
            tokens_per_sec: p(50.0),
            success_rate: success,
            throughput_qps: throughput,
            total_requests: sent,
            duration_s: 10.0,
            errors: if failed > 0 {
                [("HTTP 503".to_string(), failed)].into()
            } else {
                BTreeMap::new()
            },
            ttft: p(ttft_p95),
            e2e_latency: p(e2e_p95),
            client_limited: false,
            interrupted: false,
            server_metrics: None,
            prompt_cache_warning: None,
            sessions: None,
            per_turn: None,
            embeddings: None,
        }
    }

    #[test]
    fn healthy_run_has_no_saturation_and_recommends_headroom() {
        let ls = [
            level(10.0, 100.0, 10.0, 0.1, 1.0),
            level(20.0, 100.0, 20.0, 0.12, 1.1),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.max_qps_without_503, Some(20.0));
        assert_eq!(s.saturation_qps, None);
        assert_eq!(s.optimal_qps, Some(20.0));
        assert_eq!(s.recommended_limit_qps, Some(15.0));
        assert!(s.reasons["saturation_qps"].contains("no level saturated"));
        assert!(s.reasons["max_qps_without_503"].contains("no level returned HTTP 503"));
    }

    #[test]
    fn each_saturation_rule_fires_on_its_own() {
        // Success below 95%.
        let ls = [
            level(5.0, 100.0, 5.0, 0.1, 1.0),
            level(10.0, 90.0, 9.0, 0.1, 1.0),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, Some(10.0));
        assert_eq!(s.max_qps_without_503, Some(5.0));
        assert!(s.reasons["saturation_qps"].contains("success 90.0%"));
        assert_eq!(s.optimal_qps, Some(5.0));
        // Throughput below 90% of the offered load, every request succeeding (a queueing
        // server): 100 requests ÷ (10 s + E2E p50 1 s) = 9.09 offered, 8.0 done.
        let ls = [
            level(5.0, 100.0, 50.0 / 11.0, 0.1, 1.0),
            level(10.0, 100.0, 8.5, 0.1, 1.0),
            level(20.0, 100.0, 8.0, 0.1, 1.0),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, Some(20.0), "8.5 of 9.09 offered holds");
        let why = &s.reasons["saturation_qps"];
        assert!(why.contains("throughput 8.00 QPS"), "{why}");
        assert!(why.contains("offered 18.18 QPS"), "{why}");
        assert!(why.contains("(200 requests ÷ (10 s + the lowest level's E2E p50 1.000 s))"));
        // TTFT p95 past 3× the lowest level's.
        let ls = [
            level(5.0, 100.0, 5.0, 0.1, 1.0),
            level(10.0, 100.0, 10.0, 0.29, 1.0),
            level(20.0, 100.0, 20.0, 0.31, 1.2),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, Some(20.0));
        assert!(s.reasons["saturation_qps"].contains("TTFT p95 0.310 s is over 3×"));
        assert_eq!(s.optimal_qps, Some(10.0));
        assert_eq!(s.recommended_limit_qps, Some(7.5));
    }

    #[test]
    fn without_any_ttft_e2e_growth_marks_saturation() {
        // Embeddings: no TTFT anywhere, so E2E p95 past 3× the lowest level's saturates.
        let none = |mut l: LevelView| {
            l.ttft.values_mut().for_each(|v| *v = None);
            l
        };
        let ls = [
            none(level(5.0, 100.0, 5.0, 0.0, 0.02)),
            none(level(10.0, 100.0, 10.0, 0.0, 0.05)),
            none(level(20.0, 100.0, 20.0, 0.0, 0.07)),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, Some(20.0));
        let why = &s.reasons["saturation_qps"];
        assert!(
            why.contains("E2E p95 0.070 s is over 3× the lowest level's 0.020 s"),
            "{why}"
        );
        // With a TTFT, E2E's growth alone does not.
        let ls = [
            level(5.0, 100.0, 5.0, 0.1, 0.02),
            level(20.0, 100.0, 20.0, 0.1, 0.07),
        ];
        assert_eq!(analyze(&ls, &Criteria::default()).saturation_qps, None);
    }

    #[test]
    fn sessions_are_offered_over_the_span_their_later_turns_take() {
        // Sessions' later turns go on ~3 s past the 10 s window even unloaded: the lowest
        // level sent its 50 requests over 13 s. Measured over --duration alone, the 4.4
        // requests/s it finished would read as below 90% of 50 ÷ 11 s and saturated.
        let sessions = |mut l: LevelView, span: f64| {
            l.sessions = Some(SessionsView::default());
            l.actual_qps = l.total_requests as f64 / span;
            l
        };
        let ls = [
            sessions(level(5.0, 100.0, 50.0 / 14.0, 0.1, 1.0), 13.0),
            sessions(level(10.0, 100.0, 100.0 / 14.2, 0.1, 1.0), 13.2),
            sessions(level(20.0, 100.0, 10.0, 0.1, 1.0), 16.0),
        ];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, Some(20.0), "{:?}", s.reasons);
        let why = &s.reasons["saturation_qps"];
        assert!(
            why.contains("(200 requests ÷ (13 s, the lowest level's sending span"),
            "{why}"
        );
    }

    #[test]
    fn slos_pick_the_optimal_level_and_order_does_not_matter() {
        let ls = [
            level(30.0, 100.0, 30.0, 0.25, 3.0),
            level(10.0, 100.0, 10.0, 0.1, 1.0),
            level(20.0, 100.0, 20.0, 0.2, 2.0),
        ];
        let c = Criteria {
            slo_ttft_s: Some(0.22),
            slo_e2e_s: Some(2.5),
            ..Criteria::default()
        };
        let s = analyze(&ls, &c);
        assert_eq!(s.optimal_qps, Some(20.0));
        assert!(s.reasons["optimal_qps"].contains("TTFT p95 ≤ 0.22 s"));
        let strict = Criteria {
            slo_e2e_s: Some(0.5),
            ..Criteria::default()
        };
        let s = analyze(&ls, &strict);
        assert_eq!(s.optimal_qps, None);
        assert_eq!(s.recommended_limit_qps, None);
        assert!(
            s.reasons["optimal_qps"].contains("over the 0.5 s SLO"),
            "{s:?}"
        );
    }

    #[test]
    fn an_unloaded_level_reads_as_its_offered_load() {
        // The demo's 5 QPS × 5 s: 25 requests, the last finishing one E2E (0.7 s) after the
        // window: 25 ÷ 5.7 = 4.39 QPS, 0.88 of the target but 1.0 of the offered load.
        let mut l = level(5.0, 100.0, 25.0 / 5.7, 0.1, 0.7);
        l.total_requests = 25;
        l.duration_s = 5.0;
        let base = Baseline::of([&l]);
        assert!((offered_qps(&l, &base) - 25.0 / 5.7).abs() < 1e-9);
        assert!(saturation_reasons(&l, &base, &Criteria::default()).is_empty());
        // An old results file (no duration_s) compares with the target.
        l.duration_s = 0.0;
        assert_eq!(offered_qps(&l, &base), 5.0);
    }

    #[test]
    fn all_failing_and_client_limited_levels() {
        let ls = [level(5.0, 0.0, 0.0, f64::NAN, f64::NAN)];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.max_qps_without_503, None);
        assert_eq!(s.saturation_qps, Some(5.0));
        assert_eq!(s.optimal_qps, None);
        // A client-limited level is never the saturation point.
        let mut limited = level(40.0, 50.0, 20.0, 1.0, 5.0);
        limited.client_limited = true;
        let ls = [level(20.0, 100.0, 20.0, 0.1, 1.0), limited];
        let s = analyze(&ls, &Criteria::default());
        assert_eq!(s.saturation_qps, None);
        assert_eq!(s.max_qps_without_503, Some(20.0));
        assert_eq!(s.client_limited_levels, vec![40.0]);
        assert!(render(&s).contains("Left out (client-limited): QPS 40"));
    }
}
