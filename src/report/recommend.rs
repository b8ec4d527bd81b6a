//! The verdict a user acts on, from the levels as the analysis reads them
//! ([`analysis::LevelView`]): the highest level without 503s, the saturation point, the optimal
//! QPS and a recommended production limit, each with its reason in words, and the next step
//! when the levels tried cannot tell. Printed after the console table and written as
//! `summary.json`.
//!
//! Every figure comes from evidence only. A run with no success anywhere names none; a run that
//! never saturated names no optimal level and no production limit (the capacity is above what
//! was tried); a run saturated at its lowest level says to test lower. A figure that does not
//! exist is `null` in JSON and `-` on the console.
//!
//! Client-limited levels measure the client, not the endpoint: they are never the saturation
//! point, the optimal level or the last level without 503s.

use std::collections::BTreeMap;

use serde::Serialize;

use super::analysis::{saturation_reasons, Baseline, Criteria, LevelView};
use crate::foundation::rate::text as rate;
use crate::stats::pct_key;

/// `summary.json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub max_qps_without_503: Option<f64>,
    pub saturation_qps: Option<f64>,
    pub optimal_qps: Option<f64>,
    pub recommended_limit_qps: Option<f64>,
    /// One sentence per field above, keyed by its name.
    pub reasons: BTreeMap<&'static str, String>,
    /// What to run next when the levels tried cannot name the capacity: lower levels when the
    /// lowest already saturated, higher ones when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_step: Option<String>,
    /// Levels where no request succeeded, each with its top error categories.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_levels: Vec<String>,
    /// Levels left out of the analysis because the client fell behind.
    pub client_limited_levels: Vec<f64>,
    /// `--qps auto`: the last good and first saturated rate it found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_bracket: Option<[f64; 2]>,
    /// Verdicts on thin evidence (a level with too few requests for its percentiles).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Levels whose figures reflect the server's prefix cache, each in a sentence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prompt_cache_warnings: Vec<String>,
    /// With sessions: per level, how much faster later turns started than the first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub session_turns: Vec<String>,
}

/// The four verdicts' keys, in the console's order.
const VERDICTS: [(&str, &str); 4] = [
    ("Max QPS without 503s", "max_qps_without_503"),
    ("Saturation point", "saturation_qps"),
    ("Optimal QPS", "optimal_qps"),
    ("Recommended production limit", "recommended_limit_qps"),
];

/// A percentage or factor as written: `95`, not `95.0`.
fn num(v: f64) -> String {
    format!("{v}")
}

/// Analyzes a run's levels (any order): the four verdicts, each with its reason.
pub fn analyze(levels: &[LevelView], c: &Criteria) -> Summary {
    let mut sorted: Vec<&LevelView> = levels.iter().collect();
    sorted.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
    let usable: Vec<&LevelView> = sorted
        .iter()
        .copied()
        .filter(|l| !l.client_limited && !l.interrupted && l.total_requests > 0)
        .collect();
    let mut s = Summary {
        max_qps_without_503: None,
        saturation_qps: None,
        optimal_qps: None,
        recommended_limit_qps: None,
        reasons: BTreeMap::new(),
        next_step: None,
        failed_levels: usable
            .iter()
            .filter(|l| l.successes() == 0)
            .map(|l| failure(l))
            .collect(),
        client_limited_levels: sorted
            .iter()
            .filter(|l| l.client_limited)
            .map(|l| l.qps_target)
            .collect(),
        auto_bracket: None,
        warnings: thin_evidence(&usable, c),
        prompt_cache_warnings: sorted
            .iter()
            .filter_map(|l| l.prompt_cache_warning.clone())
            .collect(),
        session_turns: sorted
            .iter()
            .filter_map(|l| l.sessions.as_ref()?.sentence(l.qps_target))
            .collect(),
    };
    if usable.iter().all(|l| l.successes() == 0) {
        let why = match usable.first() {
            None if !s.client_limited_levels.is_empty() => {
                "no level could be used: every level was client-limited".to_string()
            }
            None => "no level was measured".to_string(),
            Some(_) => "no request succeeded at any level, so there is no capacity to name".into(),
        };
        for (_, key) in VERDICTS {
            s.reasons.insert(key, why.clone());
        }
        return s;
    }
    let (max, why) = max_without_503(&usable);
    s.max_qps_without_503 = max;
    s.reasons.insert("max_qps_without_503", why);
    let (saturation, why) = saturation_point(&usable, c);
    s.saturation_qps = saturation.map(|l| l.qps_target);
    s.reasons.insert("saturation_qps", why);
    s.next_step = next_step(&usable, saturation);
    let (optimal, why) = optimal_level(&usable, s.saturation_qps, c);
    s.optimal_qps = optimal.map(|l| l.qps_target);
    s.reasons.insert("optimal_qps", why);
    let recommended = optimal.map(|l| (l.qps_target * c.headroom * 100.0).round() / 100.0);
    s.recommended_limit_qps = recommended;
    s.reasons.insert(
        "recommended_limit_qps",
        match (optimal, recommended) {
            (Some(l), Some(r)) => format!(
                "{} QPS: {:.0}% of the optimal QPS {}, headroom for bursts and longer prompts than the dataset's",
                rate(r),
                c.headroom * 100.0,
                rate(l.qps_target)
            ),
            _ => "no optimal level, so no production limit".into(),
        },
    );
    s
}

/// `QPS 5: no request succeeded (25 sent): HTTP 404 ×25 ("Not found: …")`: a level that failed
/// whole, with its top three error categories and one sample each.
pub fn failure(l: &LevelView) -> String {
    let mut top: Vec<(&String, &u64)> = l.errors.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let causes: Vec<String> = top
        .iter()
        .take(3)
        .map(
            |(k, n)| match l.error_samples.get(*k).filter(|s| !s.trim().is_empty()) {
                Some(sample) => format!("{k} ×{n} ({:?})", excerpt(sample, 120)),
                None => format!("{k} ×{n}"),
            },
        )
        .collect();
    format!(
        "QPS {}: no request succeeded ({} sent): {}",
        rate(l.qps_target),
        l.total_requests,
        if causes.is_empty() {
            "no error recorded".to_string()
        } else {
            causes.join("; ")
        }
    )
}

/// At most about `max` bytes of a server's text `s` (cut on a character boundary, marked " …"),
/// on one line: the failed levels' samples here, and the endpoint check's message.
pub fn excerpt(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let one_line = s[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    if end < s.len() {
        one_line + " …"
    } else {
        one_line
    }
}

/// Levels whose verdict rests on a percentile their requests are too few for: with fewer than
/// 1 ÷ (1 − p) successes, the p-th percentile is their maximum (a p95 needs 20).
fn thin_evidence(usable: &[&LevelView], c: &Criteria) -> Vec<String> {
    let mut ps = vec![95.0];
    if c.slo_ttft_s.is_some() || c.slo_e2e_s.is_some() {
        ps.push(c.slo_percentile);
    }
    let p = ps.into_iter().fold(0.0, f64::max);
    let need = (1.0 / (1.0 - p / 100.0)).ceil() as u64;
    usable
        .iter()
        .filter(|l| (1..need).contains(&l.successes()))
        .map(|l| {
            format!(
                "QPS {}: {} successful requests are too few for a {}: it is their maximum, and the verdict on it is weak (it needs {need} or more: lengthen --duration)",
                rate(l.qps_target),
                l.successes(),
                pct_key(p)
            )
        })
        .collect()
}

/// The highest level before the first one with 503s, and why.
fn max_without_503(usable: &[&LevelView]) -> (Option<f64>, String) {
    match usable.iter().position(|l| l.http_503() > 0) {
        Some(0) => {
            let l = usable[0];
            let why = format!(
                "even the lowest level (QPS {}) got HTTP 503 ({} of {} requests)",
                rate(l.qps_target),
                l.http_503(),
                l.total_requests
            );
            (None, why)
        }
        Some(i) => {
            let (ok, bad) = (usable[i - 1], usable[i]);
            let why = format!(
                "QPS {} is the highest level before the first 503s (QPS {}: {} of {} requests)",
                rate(ok.qps_target),
                rate(bad.qps_target),
                bad.http_503(),
                bad.total_requests
            );
            (Some(ok.qps_target), why)
        }
        None => {
            let l = usable[usable.len() - 1];
            let why = format!(
                "no level returned HTTP 503, up to the highest tested (QPS {})",
                rate(l.qps_target)
            );
            (Some(l.qps_target), why)
        }
    }
}

/// The saturation point: the first level breaking any rule, and why.
fn saturation_point<'a>(usable: &[&'a LevelView], c: &Criteria) -> (Option<&'a LevelView>, String) {
    let base = Baseline::of(usable.iter().copied(), c);
    for l in usable {
        let why = saturation_reasons(l, &base, c);
        if !why.is_empty() {
            let text = format!("QPS {}: {}", rate(l.qps_target), why.join("; "));
            return (Some(l), text);
        }
    }
    let top = usable[usable.len() - 1];
    let growth = if base.ttft_p95.is_some() {
        "TTFT"
    } else {
        "E2E"
    };
    let why = format!(
        "not saturated up to QPS {q}: the capacity is above {q} QPS (success, throughput and {growth} growth all within bounds)",
        q = rate(top.qps_target)
    );
    (None, why)
}

/// What to run next when the levels cannot name the capacity.
fn next_step(usable: &[&LevelView], saturation: Option<&LevelView>) -> Option<String> {
    let (low, top) = (usable[0].qps_target, usable[usable.len() - 1].qps_target);
    let list = |qs: [f64; 3]| {
        qs.map(|q| rate(crate::foundation::rate::round(q)))
            .join(",")
    };
    match saturation {
        Some(l) if std::ptr::eq(l, usable[0]) => Some(format!(
            "Saturated at the lowest level tried (QPS {}): test lower, e.g. --qps {} (or --qps auto --auto-start {})",
            rate(low),
            list([low / 8.0, low / 4.0, low / 2.0]),
            rate(crate::foundation::rate::round(low / 4.0))
        )),
        Some(_) => None,
        None => Some(format!(
            "Not saturated up to QPS {}: test higher, e.g. --qps {} or --qps auto --auto-start {}",
            rate(top),
            list([top * 2.0, top * 4.0, top * 8.0]),
            rate(top)
        )),
    }
}

/// Whether a level meets the success threshold and every SLO (the reason it does not).
fn meets(l: &LevelView, c: &Criteria) -> Result<(), String> {
    let key = pct_key(c.slo_percentile);
    let shown = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.3}"));
    if l.success_rate < c.min_success_pct {
        return Err(format!("success {:.1}%", l.success_rate));
    }
    if let Some(slo) = c.slo_ttft_s {
        match l.ttft(&key) {
            Some(t) if t <= slo => {}
            t => return Err(format!("TTFT {key} {} s over the {slo} s SLO", shown(t))),
        }
    }
    if let Some(slo) = c.slo_e2e_s {
        match l.e2e(&key) {
            Some(t) if t <= slo => {}
            t => return Err(format!("E2E {key} {} s over the {slo} s SLO", shown(t))),
        }
    }
    Ok(())
}

/// The optimal level: the highest below the saturation point meeting success and every SLO.
/// Without a saturation point it is only known where a level failed success or an SLO: the
/// highest level tried is no optimum, only a lower bound.
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
    let top = usable[usable.len() - 1];
    if let (None, Some(l)) = (saturation, optimal) {
        if std::ptr::eq(l, top) {
            let why = format!(
                "not known: no level saturated, so the optimal QPS is above the highest tried (QPS {})",
                rate(top.qps_target)
            );
            return (None, why);
        }
    }
    let why = match optimal {
        Some(l) => format!(
            "QPS {} is the highest level{} with success ≥ {}%{}",
            rate(l.qps_target),
            saturation.map_or(String::new(), |s| format!(
                " below saturation (QPS {})",
                rate(s)
            )),
            num(c.min_success_pct),
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
                num(c.min_success_pct),
                slos
            )
        }
    };
    (optimal, why)
}

/// The summary's lines as the console prints them, in order: (label, value, reason). The PNG's
/// summary panel draws the same lines in the same order.
pub fn lines(s: &Summary) -> Vec<(String, String, String)> {
    let v = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{} QPS", rate(v)));
    let mut out: Vec<(String, String, String)> = VERDICTS
        .iter()
        .map(|(label, key)| {
            let value = match *key {
                "max_qps_without_503" => s.max_qps_without_503,
                "saturation_qps" => s.saturation_qps,
                "optimal_qps" => s.optimal_qps,
                _ => s.recommended_limit_qps,
            };
            let why = s.reasons.get(key).cloned().unwrap_or_default();
            (label.to_string(), v(value), why)
        })
        .collect();
    if let Some([lo, hi]) = s.auto_bracket {
        out.push((
            "Capacity (--qps auto)".into(),
            String::new(),
            format!("{} QPS holds, {} QPS saturates", rate(lo), rate(hi)),
        ));
    }
    if let Some(n) = &s.next_step {
        out.push(("Next step".into(), String::new(), n.clone()));
    }
    for f in &s.failed_levels {
        out.push(("Failed whole".into(), String::new(), f.clone()));
    }
    if !s.client_limited_levels.is_empty() {
        let qs: Vec<String> = s.client_limited_levels.iter().map(|q| rate(*q)).collect();
        out.push((
            "Left out (client-limited)".into(),
            String::new(),
            format!("QPS {}", qs.join(", ")),
        ));
    }
    for w in &s.warnings {
        out.push(("Few requests".into(), String::new(), w.clone()));
    }
    for w in &s.prompt_cache_warnings {
        out.push(("Prompt cache".into(), String::new(), w.clone()));
    }
    for t in &s.session_turns {
        out.push(("Sessions".into(), String::new(), t.clone()));
    }
    out
}

/// The console block printed after the results table.
pub fn render(s: &Summary) -> String {
    let mut out = String::from("\nSUMMARY AND RECOMMENDATIONS\n");
    for (label, value, why) in lines(s) {
        out.push_str(&format!("  {label:<29} {value:<12} {why}\n"));
    }
    out
}

#[cfg(test)]
#[path = "recommend_tests.rs"]
mod tests;
