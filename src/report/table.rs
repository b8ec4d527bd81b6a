//! The console table, exactly as the spec prints it: the title lines, then one row per level
//! with left-aligned 12-character columns (Success% is 10) separated by a space, percentile
//! columns following `--percentiles`; then each level's errors by category.

use std::fmt::Write as _;

use crate::cli::ShowMetric;
use crate::stats::{pct_key, LevelStats, Percentiles};

/// Column name, unit suffix, decimals and values of an extra (`--show`) metric.
fn extra(m: ShowMetric, l: &LevelStats) -> (&'static str, usize, &Percentiles) {
    match m {
        ShowMetric::Itl => ("ITL", 4, &l.itl),
        ShowMetric::Tpot => ("TPOT", 4, &l.tpot),
        ShowMetric::Ttfb => ("TTFB", 3, &l.ttfb),
    }
}

/// Renders the results table; `show` adds metric columns after the spec's.
pub fn render(levels: &[LevelStats], percentiles: &[f64], show: &[ShowMetric]) -> String {
    let mut s = String::new();
    let rule = "=".repeat(80);
    let _ = writeln!(s, "{rule}\nQPS BENCHMARK RESULTS\n{rule}");
    let mut cols: Vec<String> = vec![
        format!("{:<12}", "QPS Target"),
        format!("{:<12}", "Actual QPS"),
        format!("{:<10}", "Success%"),
    ];
    let mut names: Vec<(&str, &str)> = vec![("TTFT", "(s)"), ("E2E", "(s)"), ("Tok/s", "")];
    if let Some(l) = levels.first() {
        names.extend(show.iter().map(|&m| (extra(m, l).0, "(s)")));
    }
    for (name, unit) in names {
        for &p in percentiles {
            cols.push(format!(
                "{:<12}",
                format!("{name} {}{unit}", pct_key(p).to_uppercase())
            ));
        }
    }
    let _ = writeln!(s, "{}", cols.join(" "));
    for l in levels {
        let cached = l.prompt_cache.prompt_cache_warning.is_some();
        let mut cols: Vec<String> = vec![
            format!(
                "{:<12}",
                format!(
                    "{}{}",
                    crate::foundation::rate::text(l.qps_target),
                    if cached { CACHED_MARK } else { "" }
                )
            ),
            format!(
                "{:<12}",
                format!(
                    "{:.2}{}",
                    l.actual_qps,
                    if l.client.client_limited { "*" } else { "" }
                )
            ),
            format!("{:<10}", format!("{:.1}", l.success_rate)),
        ];
        let mut metrics = vec![(&l.ttft, 3), (&l.e2e_latency, 3), (&l.tokens_per_sec, 1)];
        metrics.extend(show.iter().map(|&m| {
            let (_, digits, values) = extra(m, l);
            (values, digits)
        }));
        for (m, digits) in metrics {
            for &p in percentiles {
                cols.push(format!("{:<12}", cell(m, p, digits)));
            }
        }
        let _ = writeln!(s, "{}", cols.join(" "));
    }
    notes(&mut s, levels);
    s
}

/// What the table's marks mean, interrupted levels, then each level's errors by category.
fn notes(s: &mut String, levels: &[LevelStats]) {
    if levels.iter().any(|l| l.client.client_limited) {
        let _ = writeln!(
            s,
            "\n* client-limited: the client fell behind its own schedule at this level, so its numbers measure the client, not the endpoint:"
        );
        for l in levels.iter().filter(|l| l.client.client_limited) {
            let _ = writeln!(
                s,
                "  - QPS {}: {}",
                crate::foundation::rate::text(l.qps_target),
                l.client.client_limited_reasons.join("; ")
            );
        }
    }
    if levels.iter().any(|l| l.prompt_cache_warning().is_some()) {
        let _ = writeln!(
            s,
            "\n{CACHED_MARK} prefix cache: the server answered part of this level from its cache:"
        );
        for w in levels.iter().filter_map(LevelStats::prompt_cache_warning) {
            let _ = writeln!(s, "  - {w}");
        }
    }
    if levels.iter().any(|l| l.embeddings.is_some()) {
        let _ = writeln!(
            s,
            "\nEmbeddings (not streamed: no TTFT or output tokens, marked -):"
        );
        for l in levels {
            if let Some(e) = &l.embeddings {
                let _ = writeln!(
                    s,
                    "  - QPS {}: {:.1} inputs/s ({} per request), {:.1} prompt tokens/s",
                    crate::foundation::rate::text(l.qps_target),
                    e.inputs_per_sec,
                    e.batch,
                    e.prompt_tokens_per_sec
                );
            }
        }
    }
    for l in levels.iter().filter(|l| l.interrupted) {
        let _ = writeln!(
            s,
            "\nQPS {}: interrupted (a partial level: {} sent, {} still in flight not recorded)",
            crate::foundation::rate::text(l.qps_target),
            l.total_requests,
            l.unfinished_requests
        );
    }
    for l in levels {
        let total: u64 = l.errors.values().sum();
        if total == 0 {
            continue;
        }
        let _ = writeln!(
            s,
            "\nQPS {} - Errors ({total} total):",
            crate::foundation::rate::text(l.qps_target)
        );
        let mut errs: Vec<_> = l.errors.iter().collect();
        errs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (k, v) in errs {
            let _ = writeln!(
                s,
                "  - {k}: {v} occurrence{}",
                if *v == 1 { "" } else { "s" }
            );
        }
    }
}

/// Marks a level whose figures reflect the server's prefix cache (its footnote says how much).
pub const CACHED_MARK: &str = "†";

fn cell(m: &Percentiles, p: f64, digits: usize) -> String {
    match m.get(&pct_key(p)) {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::outcome::{ErrorKind, Success, TokenSource};
    use crate::recording::recorder::Recorder;
    use crate::stats::{json_percentiles, LevelClock};

    #[test]
    fn matches_the_spec_layout() {
        let mut r = Recorder::new();
        r.record_send(1_000_000_000, 10, false, 0);
        r.record_success(Success {
            ttft_ns: Some(120_000_000),
            e2e_ns: 2_500_000_000,
            output_tokens: 213,
            source: TokenSource::Usage,
            prompt_tokens: None,
            cached_tokens: None,
            token_reads: 1,
            ttfb_ns: 1_000_000,
            decode_ns: 1_000_000,
            done_ns: 2_500_000_000,
            reasoning: Default::default(),
        });
        r.record_send(1_000_000_000, 10, false, 0);
        r.record_error(ErrorKind::Http(503), None);
        let clock = LevelClock {
            start_ns: 0,
            duration_s: 1.0,
            end_ns: 0,
            interrupted: false,
        };
        let l = LevelStats::new(
            &r,
            1.0,
            clock,
            &json_percentiles(&[50.0, 95.0, 99.0]),
            Default::default(),
        );
        let out = render(std::slice::from_ref(&l), &[50.0, 95.0, 99.0], &[]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "=".repeat(80));
        assert_eq!(lines[1], "QPS BENCHMARK RESULTS");
        assert_eq!(
            lines[3],
            "QPS Target   Actual QPS   Success%   TTFT P50(s)  TTFT P95(s)  TTFT P99(s)  E2E P50(s)   E2E P95(s)   E2E P99(s)   Tok/s P50    Tok/s P95    Tok/s P99   "
        );
        assert!(
            lines[4].starts_with("1.0          2.00         50.0       0.120        "),
            "{}",
            lines[4]
        );
        assert!(out.contains("\nQPS 1.0 - Errors (1 total):\n  - HTTP 503: 1 occurrence\n"));
        let wide = render(&[l], &[50.0], &[ShowMetric::Itl, ShowMetric::Ttfb]);
        let header = wide.lines().nth(3).unwrap();
        assert!(
            header.ends_with("Tok/s P50    ITL P50(s)   TTFB P50(s) "),
            "{header:?}"
        );
    }
}
