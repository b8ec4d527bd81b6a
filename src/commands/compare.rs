//! `qpsbench compare DIR_A DIR_B`: two saved runs side by side, level by level (matched by
//! target QPS), with the differences — the spec's "Comparing Results" workflow.
//!
//! Data flow: two results folders → `plot::load` → the levels' key metrics → a console table.

use std::fmt::Write as _;

use crate::cli::CompareArgs;
use crate::commands::plot;
use crate::foundation::error::Result;
use crate::report::analysis::{self, LevelView};

type Metric = (&'static str, usize, fn(&LevelView) -> Option<f64>);

const METRICS: [Metric; 10] = [
    ("Actual QPS", 2, |l| Some(l.actual_qps)),
    ("Throughput QPS", 2, |l| Some(l.throughput_qps)),
    ("Success %", 1, |l| Some(l.success_rate)),
    ("TTFT P50 (s)", 3, |l| l.ttft.get("p50").copied().flatten()),
    ("TTFT P95 (s)", 3, |l| l.ttft.get("p95").copied().flatten()),
    ("TTFT P99 (s)", 3, |l| l.ttft.get("p99").copied().flatten()),
    ("E2E P50 (s)", 3, |l| {
        l.e2e_latency.get("p50").copied().flatten()
    }),
    ("E2E P95 (s)", 3, |l| {
        l.e2e_latency.get("p95").copied().flatten()
    }),
    ("Tok/s P50", 1, |l| {
        l.tokens_per_sec.get("p50").copied().flatten()
    }),
    ("Errors", 0, |l| Some(l.errors.values().sum::<u64>() as f64)),
];

fn cell(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// Each level with its occurrence at its rate (0 for the first level at a rate, 1 for a second
/// one: `--qps 2,2` measures 2 QPS twice, and both are shown).
fn keyed(ls: &[LevelView]) -> Vec<((f64, usize), &LevelView)> {
    let mut seen: Vec<f64> = Vec::new();
    ls.iter()
        .map(|l| {
            let k = seen.iter().filter(|&&q| q == l.qps_target).count();
            seen.push(l.qps_target);
            ((l.qps_target, k), l)
        })
        .collect()
}

/// The comparison table.
pub fn render(a_name: &str, a: &[LevelView], b_name: &str, b: &[LevelView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {a_name}\nB: {b_name}\n");
    let (ka, kb) = (keyed(a), keyed(b));
    let mut targets: Vec<(f64, usize)> = ka.iter().chain(&kb).map(|(k, _)| *k).collect();
    targets.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
    targets.dedup();
    let repeated = |q: f64| targets.iter().filter(|k| k.0 == q).count() > 1;
    let find = |ls: &[((f64, usize), &LevelView)], key: (f64, usize)| {
        ls.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, l)| (*l).clone())
    };
    for key in targets.clone() {
        let (q, k) = key;
        let (la, lb) = (find(&ka, key), find(&kb, key));
        if repeated(q) {
            let _ = writeln!(
                out,
                "QPS {} (#{}: the {} level at this rate in its run)",
                crate::foundation::rate::text(q),
                k + 1,
                ordinal(k + 1)
            );
        } else {
            let _ = writeln!(out, "QPS {}", crate::foundation::rate::text(q));
        }
        let (la, lb) = match (la, lb) {
            (Some(la), Some(lb)) => (la, lb),
            (Some(_), None) => {
                let _ = writeln!(out, "  only in A\n");
                continue;
            }
            _ => {
                let _ = writeln!(out, "  only in B\n");
                continue;
            }
        };
        let _ = writeln!(
            out,
            "  {:<16} {:>12} {:>12} {:>12} {:>9}",
            "", "A", "B", "B − A", "change"
        );
        for (name, digits, get) in METRICS {
            let (va, vb) = (get(&la), get(&lb));
            let (diff, pct) = match (va, vb) {
                (Some(x), Some(y)) => (
                    format!("{:+.digits$}", y - x),
                    if x != 0.0 {
                        format!("{:+.1}%", (y - x) / x.abs() * 100.0)
                    } else {
                        "-".into()
                    },
                ),
                _ => ("-".into(), "-".into()),
            };
            let _ = writeln!(
                out,
                "  {name:<16} {:>12} {:>12} {diff:>12} {pct:>9}",
                cell(va, digits),
                cell(vb, digits)
            );
        }
        if la.client_limited || lb.client_limited {
            let _ = writeln!(
                out,
                "  (client-limited in {}: that side measures the client, not the endpoint)",
                match (la.client_limited, lb.client_limited) {
                    (true, true) => "A and B",
                    (true, false) => "A",
                    _ => "B",
                }
            );
        }
        out.push('\n');
    }
    out
}

/// `1st`, `2nd`, `3rd`, `4th`.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, 11) | (2, 12) | (3, 13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What makes two runs comparable, by their metadata: (what, keys whose values must agree).
const SAME: [(&str, &[&str]); 7] = [
    ("endpoint", &["endpoint", "endpoints"]),
    ("model", &["model"]),
    ("API", &["api"]),
    ("dataset", &["dataset", "dataset_name"]),
    ("prompt lengths", &["dataset_params", "max_tokens"]),
    ("arrival", &["arrival", "burstiness", "sessions"]),
    ("duration", &["duration", "warmup_s"]),
];

/// The ways two runs differ that make their levels not like for like, each named with both
/// values.
pub fn differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let shown = |v: Option<&serde_json::Value>| match v {
        None | Some(serde_json::Value::Null) => "-".to_string(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    let mut out = Vec::new();
    for (what, keys) in SAME {
        let differ: Vec<String> = keys
            .iter()
            .filter(|k| a.get(**k) != b.get(**k))
            .map(|k| format!("{k}: A {} · B {}", shown(a.get(*k)), shown(b.get(*k))))
            .collect();
        if !differ.is_empty() {
            out.push(format!("{what} ({})", differ.join("; ")));
        }
    }
    out
}

pub fn run(args: CompareArgs) -> Result<i32> {
    let (meta_a, a) = plot::load(&args.a)?;
    let (meta_b, b) = plot::load(&args.b)?;
    let differ = differences(&meta_a, &meta_b);
    if !differ.is_empty() {
        crate::outln!(
            "warning: the runs differ in {}, so a difference below may come from that and not from the endpoint:",
            differ.iter().map(|d| d.split(" (").next().unwrap_or(d)).collect::<Vec<_>>().join(", ")
        );
        for d in &differ {
            crate::outln!("  - {d}");
        }
        crate::outln!();
    }
    crate::out!(
        "{}",
        render(
            &args.a.display().to_string(),
            &a,
            &args.b.display().to_string(),
            &b
        )
    );
    let sa = crate::report::recommend::analyze(&a, &analysis::Criteria::of_run(&meta_a));
    let sb = crate::report::recommend::analyze(&b, &analysis::Criteria::of_run(&meta_b));
    let v = |x: Option<f64>| x.map_or("-".to_string(), crate::foundation::rate::text);
    crate::outln!("{:<29} {:>12} {:>12}", "Summary (QPS)", "A", "B");
    for (name, x, y) in [
        (
            "Max QPS without 503s",
            sa.max_qps_without_503,
            sb.max_qps_without_503,
        ),
        ("Saturation point", sa.saturation_qps, sb.saturation_qps),
        ("Optimal QPS", sa.optimal_qps, sb.optimal_qps),
        (
            "Recommended production limit",
            sa.recommended_limit_qps,
            sb.recommended_limit_qps,
        ),
    ] {
        crate::outln!("{name:<29} {:>12} {:>12}", v(x), v(y));
    }
    Ok(0)
}
