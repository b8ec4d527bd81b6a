//! The verdicts' rules, one by one, on hand-made levels.
use super::*;
use crate::report::analysis::{
    offered_qps, saturation_reasons, Baseline, Criteria, LevelView, SessionsView, Unloaded,
};
use std::collections::BTreeMap;

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
        successful_requests: None,
        error_samples: BTreeMap::new(),
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
fn a_run_that_never_saturated_names_no_limit_and_says_test_higher() {
    let ls = [
        level(10.0, 100.0, 10.0, 0.1, 1.0),
        level(20.0, 100.0, 20.0, 0.12, 1.1),
    ];
    let s = analyze(&ls, &Criteria::default());
    assert_eq!(s.max_qps_without_503, Some(20.0));
    assert_eq!(s.saturation_qps, None);
    assert_eq!(s.optimal_qps, None, "the highest level tried is no optimum");
    assert_eq!(s.recommended_limit_qps, None);
    assert!(s.reasons["saturation_qps"]
        .contains("not saturated up to QPS 20.0: the capacity is above 20.0 QPS"));
    let next = s.next_step.as_deref().unwrap();
    assert!(
        next.contains("test higher, e.g. --qps 40.0,80.0,160.0"),
        "{next}"
    );
    let shown = render(&s);
    assert!(shown.contains("Recommended production limit  -"), "{shown}");
    assert!(s.reasons["max_qps_without_503"].contains("no level returned HTTP 503"));
}

#[test]
fn a_run_saturated_at_its_lowest_level_says_test_lower() {
    let ls = [
        level(8.0, 80.0, 6.0, 0.1, 1.0),
        level(16.0, 50.0, 6.0, 0.1, 1.0),
    ];
    let s = analyze(&ls, &Criteria::default());
    assert_eq!(s.saturation_qps, Some(8.0));
    assert_eq!((s.optimal_qps, s.recommended_limit_qps), (None, None));
    let next = s.next_step.as_deref().unwrap();
    assert!(
        next.contains(
            "Saturated at the lowest level tried (QPS 8.0): test lower, e.g. --qps 1.0,2.0,4.0"
        ),
        "{next}"
    );
}

#[test]
fn the_unloaded_baseline_catches_a_loaded_lowest_level() {
    // Every level equally slow: against the lowest level nothing grows, against the endpoint
    // alone (TTFT 0.1 s, E2E 1 s) the lowest level is already 5× slower.
    let ls = [
        level(1.0, 100.0, 0.8, 0.5, 4.0),
        level(2.0, 100.0, 0.8, 0.5, 4.0),
    ];
    let lowest = analyze(&ls, &Criteria::default());
    let c = Criteria {
        unloaded: Some(Unloaded {
            requests: 3,
            ttft_s: Some(0.08),
            ttft_max_s: Some(0.1),
            e2e_s: 1.0,
            e2e_max_s: Some(1.2),
        }),
        ..Criteria::default()
    };
    let s = analyze(&ls, &c);
    assert_eq!(s.saturation_qps, Some(1.0), "{:?}", s.reasons);
    let why = &s.reasons["saturation_qps"];
    assert!(
        why.contains("over 3× the unloaded TTFT max 0.100 s"),
        "{why}"
    );
    assert!(why.contains("the unloaded E2E median 1.000 s"), "{why}");
    assert_ne!(lowest.saturation_qps, Some(1.0));
}

#[test]
fn a_lowest_level_that_holds_is_the_growth_reference_above_the_server_alone() {
    // Two requests sharing one CPU take ten times one alone, while the server keeps up: the
    // lowest level holds by the load rules, so its own TTFT p95 (0.5 s) is the reference, and
    // 1.2 s at 4 QPS is no saturation; 2 s at 8 QPS is.
    let ls = [
        level(2.0, 100.0, 20.0 / 11.0, 0.5, 1.0),
        level(4.0, 100.0, 40.0 / 11.0, 1.2, 1.0),
        level(8.0, 100.0, 80.0 / 11.0, 2.0, 1.0),
    ];
    let c = Criteria {
        unloaded: Some(Unloaded {
            requests: 3,
            ttft_s: Some(0.04),
            ttft_max_s: Some(0.05),
            e2e_s: 1.0,
            e2e_max_s: Some(1.0),
        }),
        ..Criteria::default()
    };
    let s = analyze(&ls, &c);
    assert_eq!(s.saturation_qps, Some(8.0), "{:?}", s.reasons);
    let why = &s.reasons["saturation_qps"];
    assert!(
        why.contains("over 3× the lowest level's TTFT p95 0.500 s"),
        "{why}"
    );
}

#[test]
fn no_success_anywhere_names_no_figure() {
    let mut l = level(5.0, 0.0, 0.0, f64::NAN, f64::NAN);
    l.errors = [("HTTP 404".to_string(), 50)].into();
    l.error_samples = [("HTTP 404".to_string(), "Not found: /".to_string())].into();
    let s = analyze(&[l], &Criteria::default());
    assert_eq!(
        (
            s.max_qps_without_503,
            s.saturation_qps,
            s.optimal_qps,
            s.recommended_limit_qps
        ),
        (None, None, None, None)
    );
    assert!(s.reasons["optimal_qps"].contains("no request succeeded"));
    assert_eq!(s.failed_levels.len(), 1);
    assert!(
        s.failed_levels[0].contains("HTTP 404 ×50 (\"Not found: /\")"),
        "{:?}",
        s.failed_levels
    );
    assert!(!render(&s).contains("Some("));
}

#[test]
fn thin_levels_are_warned_about() {
    let s = analyze(&[level(1.5, 100.0, 1.5, 0.1, 1.0)], &Criteria::default());
    assert_eq!(s.warnings.len(), 1, "15 requests: p95 is their maximum");
    assert!(
        s.warnings[0].contains("needs 20 or more"),
        "{:?}",
        s.warnings
    );
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
    assert!(s.reasons["saturation_qps"]
        .contains("TTFT p95 0.310 s is over 3× the lowest level's TTFT p95 0.100 s"));
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
        why.contains("E2E p95 0.070 s is over 3× the lowest level's E2E p95 0.020 s"),
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
    let base = Baseline::of([&l], &Criteria::default());
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
    assert_eq!(s.saturation_qps, None, "no success: no verdict at all");
    assert_eq!(s.optimal_qps, None);
    // A client-limited level is never the saturation point.
    let mut limited = level(40.0, 50.0, 20.0, 1.0, 5.0);
    limited.client_limited = true;
    let ls = [level(20.0, 100.0, 20.0, 0.1, 1.0), limited];
    let s = analyze(&ls, &Criteria::default());
    assert_eq!(s.saturation_qps, None);
    assert_eq!(s.max_qps_without_503, Some(20.0));
    assert_eq!(s.client_limited_levels, vec![40.0]);
    assert!(
        render(&s).contains("Left out (client-limited)     "),
        "{}",
        render(&s)
    );
    assert!(render(&s).contains("QPS 40.0\n"), "{}", render(&s));
}

#[test]
fn excerpts_are_one_line_and_bounded() {
    assert_eq!(excerpt("a\n  b", 300), "a b");
    assert_eq!(excerpt("ééé", 3), "é …");
}
