//! Stages 5 and 6, the report and the exit status: the final summary written, the console table
//! and the summary block printed, the PNG drawn with `--plot`, and the status the process ends
//! with (`error::exit`: 130 interrupted, 4 no success anywhere, 3 every level client-limited,
//! else 0).

use super::plan::Plan;
use crate::foundation::clock::LocalTime;
use crate::foundation::error::Result;
use crate::report::analysis::{self, Criteria};
use crate::report::recommend::{self, Summary};
use crate::report::results::RunDir;
use crate::report::table;
use crate::stats::LevelStats;

/// What the levels stage measured.
pub struct Measured {
    pub levels: Vec<LevelStats>,
    pub criteria: Criteria,
    /// `--qps auto`: the last good and first saturated rate, when found.
    pub auto_bracket: Option<[f64; 2]>,
}

/// Writes the final `summary.json`, prints the table and the summary, and draws the PNG.
pub fn write_and_print(
    plan: &Plan,
    run_dir: &RunDir,
    started: &LocalTime,
    m: &Measured,
) -> Result<()> {
    let summary = (!m.levels.is_empty()).then(|| {
        let mut s = recommend::analyze(&analysis::views(&m.levels), &m.criteria);
        s.auto_bracket = m.auto_bracket;
        s
    });
    if let Some(s) = &summary {
        run_dir.write_json("summary.json", s)?;
    }
    crate::outln!();
    // In QPS order (an auto search probes out of order; the JSON keeps the probe order).
    let mut by_qps = m.levels.clone();
    by_qps.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
    let a = &plan.args;
    crate::out!("{}", table::render(&by_qps, &a.percentiles, &a.show));
    if let Some(s) = &summary {
        crate::out!("{}", recommend::render(s));
    }
    let mut saved: Vec<String> = vec![
        "metadata.json".into(),
        plan.output.clone(),
        "summary.json".into(),
        "timeline.jsonl".into(),
        "histograms.json".into(),
    ];
    if a.save_requests {
        saved.push("requests.jsonl".into());
    }
    if let (true, Some(s)) = (a.plot, &summary) {
        saved.extend(draw(plan, run_dir, started, &m.levels, (s, &m.criteria)));
    }
    list_saved(run_dir, &saved);
    Ok(())
}

/// "Results saved to:" and the files, each only if it exists: a run stopped early, or a
/// picture that could not be drawn, lists nothing it did not write.
fn list_saved(run_dir: &RunDir, names: &[String]) {
    crate::outln!("\nResults saved to: {}", run_dir.path.display());
    for name in names {
        let path = run_dir.path.join(name);
        if path.is_file() {
            crate::outln!("  - {}", path.display());
        }
    }
}

/// The PNGs; returns the names of those written. The results are saved already: a failed
/// picture must not lose them or fail the run.
fn draw(
    plan: &Plan,
    run_dir: &RunDir,
    started: &LocalTime,
    levels: &[LevelStats],
    (s, c): (&Summary, &Criteria),
) -> Vec<String> {
    let mut written = Vec::new();
    let png = run_dir.path.join(&plan.plot_output);
    let title = crate::report::style::plot_title(&plan.model, &plan.shown_endpoint, &started.iso());
    let views = analysis::views(levels);
    match crate::report::plot::render(&png, &views, s, c, &title) {
        Ok(()) => written.push(plan.plot_output.clone()),
        Err(e) => eprintln!("warning: could not write {}: {e}", png.display()),
    }
    let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    match crate::report::turns_plot::render_dir(&run_dir.path, &views, &title) {
        Ok(Some(p)) => written.extend(name(&p)),
        Ok(None) => {}
        Err(e) => eprintln!("warning: could not write the sessions picture: {e}"),
    }
    match crate::report::timeline_plot::render_dir(&run_dir.path, &title) {
        Ok(Some(p)) => written.extend(name(&p)),
        Ok(None) => {}
        Err(e) => eprintln!("warning: could not write the timeline picture: {e}"),
    }
    written
}

/// The process's exit status, with the reason printed for anything but 0: 130 interrupted, 4
/// no request succeeded at any level (no capacity can be named), 3 every level measured was
/// client-limited.
pub fn exit_code(levels: &[LevelStats]) -> i32 {
    use crate::foundation::error::exit;
    if crate::foundation::interrupt::requested() {
        let partial = levels.last().map_or(0, |l| l.unfinished_requests);
        eprintln!(
            "qpsbench: interrupted; {} level(s) saved, the last one marked \"interrupted\"{}",
            levels.len(),
            if partial > 0 {
                format!(" ({partial} request(s) still in flight were not recorded)")
            } else {
                String::new()
            }
        );
        return exit::INTERRUPTED;
    }
    if levels.is_empty() {
        return exit::OK;
    }
    if levels.iter().all(|l| l.successful_requests == 0) {
        eprintln!(
            "error: no request succeeded at any level, so no capacity is named; the errors above say why (each level's are in the results file)"
        );
        return exit::ENDPOINT;
    }
    if levels.iter().all(|l| l.client.client_limited) {
        eprintln!(
            "error: every level was client-limited: the client fell behind its own schedule or ran out of its own descriptors or ports, so these numbers measure qpsbench on this machine, not the endpoint."
        );
        for l in levels {
            eprintln!(
                "  QPS {}: {}",
                crate::foundation::rate::text(l.qps_target),
                l.client.client_limited_reasons.join("; ")
            );
        }
        eprintln!("  Give it more client cores (--cores), lower the rates, raise the open-file limit (ulimit -n), or run it on a less loaded machine; `qpsbench selftest` shows what this machine can drive.");
        return exit::CLIENT_LIMITED;
    }
    exit::OK
}
