//! `qpsbench plot DIR`: re-renders a saved run's pictures (the levels' PNG, and `timeline.png`
//! from `timeline.jsonl`) and summary from its results folder,
//! without sending a request — after changing an SLO, or to get the PNG of a run made without
//! `--plot`.
//!
//! Data flow: `DIR/metadata.json` (which results file, which thresholds) + the results JSON →
//! `report::analysis` → `summary.json` and the PNG, written back into DIR (atomically; the
//! measured results are only read).

use std::path::Path;

use serde_json::Value;

use crate::cli::PlotArgs;
use crate::foundation::error::{Result, UserError};
use crate::report::analysis::{Criteria, LevelView};
use crate::report::results::{file_name_only, RunDir};

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::input(format!(
            "{} is not a qpsbench results folder: cannot read {} ({e})",
            path.parent().unwrap_or(path).display(),
            what
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| UserError::input(format!("{}: not valid JSON: {e}", path.display())))
}

/// Loads a saved run: its metadata and its levels.
pub fn load(dir: &Path) -> Result<(Value, Vec<LevelView>)> {
    if !dir.is_dir() {
        return Err(UserError::input(format!(
            "{}: not a folder (give the run's results folder, e.g. results/2026-01-31_12-00-00)",
            dir.display()
        )));
    }
    let meta = read_json(&dir.join("metadata.json"), "metadata.json")?;
    let results_file = meta
        .get("results_file")
        .and_then(Value::as_str)
        .unwrap_or("benchmark_qps_results.json")
        .to_string();
    let results_path = dir.join(file_name_only("results_file", &results_file)?);
    let results = read_json(&results_path, &results_file)?;
    let arr = results.as_array().ok_or_else(|| {
        UserError::input(format!(
            "{}: expected an array of levels",
            results_path.display()
        ))
    })?;
    let levels = arr
        .iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<LevelView>(v.clone()).map_err(|e| {
                UserError::input(format!(
                    "{}: level {i} is not a qpsbench level: {e}",
                    results_path.display()
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((meta, levels))
}

pub fn run(args: PlotArgs) -> Result<i32> {
    crate::foundation::flag_ranges::seconds_opt("--slo-ttft", args.slo_ttft)?;
    crate::foundation::flag_ranges::seconds_opt("--slo-e2e", args.slo_e2e)?;
    let (meta, levels) = load(&args.dir)?;
    if levels.is_empty() {
        return Err(UserError::input(format!(
            "{}: the run has no completed level to plot",
            args.dir.display()
        )));
    }
    let mut c = Criteria::of_run(&meta);
    c.slo_ttft_s = args.slo_ttft.or(c.slo_ttft_s);
    c.slo_e2e_s = args.slo_e2e.or(c.slo_e2e_s);
    let summary = crate::report::recommend::analyze(&levels, &c);
    let dir = RunDir {
        path: args.dir.clone(),
    };
    dir.write_json("summary.json", &summary)?;
    let name = file_name_only("--plot-output", &args.plot_output)?;
    let title = crate::report::style::title_of_run(&meta);
    // Rendered beside, then renamed: an existing picture is replaced whole or not at all.
    let tmp = args.dir.join(format!(".{name}.tmp.png"));
    crate::report::plot::render(&tmp, &levels, &summary, &c, &title)
        .map_err(|e| UserError::input(format!("cannot render {}: {e}", tmp.display())))?;
    let png = args.dir.join(&name);
    std::fs::rename(&tmp, &png)
        .map_err(|e| UserError::input(format!("cannot write {}: {e}", png.display())))?;
    let timeline = crate::report::timeline_plot::render_dir(&args.dir, &title)
        .map_err(|e| UserError::input(format!("cannot render the timeline: {e}")))?;
    let turns = crate::report::turns_plot::render_dir(&args.dir, &levels, &title)
        .map_err(|e| UserError::input(format!("cannot render the sessions picture: {e}")))?;
    crate::out!("{}", crate::report::recommend::render(&summary));
    crate::outln!(
        "\nWrote {}{} and {}",
        png.display(),
        timeline
            .iter()
            .chain(&turns)
            .map(|p| format!(", {}", p.display()))
            .collect::<String>(),
        args.dir.join("summary.json").display()
    );
    Ok(0)
}
