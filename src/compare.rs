//! `qpsbench compare DIR_A DIR_B`: two saved runs side by side, level by level (matched by
//! target QPS), with the differences — the seed's "Comparing Results" workflow.
//!
//! Data flow: two results folders → `replot::load` → the levels' key metrics → a console table.

use std::fmt::Write as _;

use crate::cli::CompareArgs;
use crate::error::Result;
use crate::replot;
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

/// The comparison table.
pub fn render(a_name: &str, a: &[LevelView], b_name: &str, b: &[LevelView]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A: {a_name}\nB: {b_name}\n");
    let mut targets: Vec<f64> = a.iter().chain(b).map(|l| l.qps_target).collect();
    targets.sort_by(f64::total_cmp);
    targets.dedup();
    let find = |ls: &[LevelView], q: f64| ls.iter().find(|l| l.qps_target == q).cloned();
    for q in targets {
        let (la, lb) = (find(a, q), find(b, q));
        let _ = writeln!(out, "QPS {q}");
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

pub fn run(args: CompareArgs) -> Result<i32> {
    let (meta_a, a) = replot::load(&args.a)?;
    let (meta_b, b) = replot::load(&args.b)?;
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
    let v = |x: Option<f64>| x.map_or("-".to_string(), |v| v.to_string());
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
