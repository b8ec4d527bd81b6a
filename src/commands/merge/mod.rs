//! `qpsbench merge DIR...`: the results folders of the N shards of one run (`--shard K/N`) become
//! one ordinary run folder, as one very large client would have written it: percentiles from the
//! merged HDR histograms (never averaged), counts summed, windows taken on the wall clock.
//!
//! Data flow: each folder → [`shard::load`] (metadata, `histograms.json`, results) →
//! [`shard::check`] (one schedule, every shard once) → per level [`level::merge`] → the merged
//! folder: `metadata.json` (saying it is a merge, of which folders), the results JSON,
//! `summary.json`, [`files::timeline`], [`files::requests`], and the PNGs with `--plot`.

mod files;
mod level;
mod shard;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::cli::MergeArgs;
use crate::foundation::clock::LocalTime;
use crate::foundation::error::{Result, UserError};
use crate::report::analysis;
use crate::report::results::{file_name_only, RunDir};
use crate::stats::{json_percentiles, LevelStats};

pub fn run(args: MergeArgs) -> Result<i32> {
    let mut shards = args
        .dirs
        .iter()
        .map(|d| shard::load(d))
        .collect::<Result<Vec<_>>>()?;
    shard::check(&mut shards)?;
    let meta = &shards[0].meta;
    let schedule = schedule(meta);
    let (levels, json, starts) = merge_levels(&shards, &schedule)?;
    let out = RunDir::create(&args.results_dir, &LocalTime::now())?;
    out.write_json("metadata.json", &merged_metadata(&shards))?;
    let results_file = meta
        .get("results_file")
        .and_then(Value::as_str)
        .unwrap_or("benchmark_qps_results.json");
    let results_file = file_name_only("results_file", results_file)?;
    out.write_json(&results_file, &json)?;
    let summary = crate::report::recommend::analyze(
        &analysis::views(&levels),
        &analysis::Criteria::of_run(meta),
    );
    out.write_json("summary.json", &summary)?;
    files::timeline(&shards, &starts, &out)?;
    let requests = files::requests(&shards, &out)?;
    crate::out!(
        "{}",
        crate::report::table::render(&levels, &user_percentiles(meta), &[])
    );
    crate::out!("{}", crate::report::recommend::render(&summary));
    crate::outln!(
        "\nMerged {} shards into {}",
        shards.len(),
        out.path.display()
    );
    for name in [
        "metadata.json",
        results_file.as_str(),
        "summary.json",
        "timeline.jsonl",
    ] {
        crate::outln!("  - {}", out.path.join(name).display());
    }
    if requests {
        crate::outln!("  - {}", out.path.join("requests.jsonl").display());
    }
    if args.plot {
        draw(&out, meta, &levels, &summary, &args.plot_output)?;
    }
    Ok(0)
}

/// Every level any shard measured, merged; with each level's merged window start (Unix s).
type Merged = (Vec<LevelStats>, Vec<Value>, BTreeMap<usize, f64>);

fn merge_levels(shards: &[shard::Shard], s: &level::Schedule) -> Result<Merged> {
    let numbers: BTreeSet<usize> = shards
        .iter()
        .flat_map(|sh| sh.levels.iter().map(|l| l.level))
        .collect();
    let (mut stats, mut json, mut starts) = (Vec::new(), Vec::new(), BTreeMap::new());
    for n in numbers {
        let parts: Vec<level::Part<'_>> = shards
            .iter()
            .filter_map(|sh| {
                let i = sh.levels.iter().position(|l| l.level == n)?;
                Some(level::Part {
                    shard: sh.index,
                    histograms: &sh.levels[i],
                    result: &sh.results[i],
                })
            })
            .collect();
        let start = parts
            .iter()
            .map(|p| p.histograms.window_start_unix_s)
            .fold(f64::MAX, f64::min);
        let (one, one_json) = level::merge(&parts, shards[0].count, s)?;
        starts.insert(n, start);
        stats.push(one);
        json.push(one_json);
    }
    if stats.is_empty() {
        return Err(UserError::input(
            "the shards hold no completed level to merge".to_string(),
        ));
    }
    Ok((stats, json, starts))
}

/// The percentiles the run reported (`--percentiles`).
fn user_percentiles(meta: &Value) -> Vec<f64> {
    meta.get("percentiles")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_else(|| vec![50.0, 90.0, 95.0, 99.0])
}

/// The schedule the shards share, from shard 0's metadata.
fn schedule(meta: &Value) -> level::Schedule {
    let f = |k: &str| meta.get(k).and_then(Value::as_f64);
    let mut asked = user_percentiles(meta);
    asked.push(f("slo_percentile").unwrap_or(95.0));
    level::Schedule {
        duration_s: f("duration").unwrap_or(0.0),
        warmup_s: f("warmup_s").unwrap_or(0.0),
        arrival: meta
            .get("arrival")
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or(crate::cli::Arrival::Poisson),
        burstiness: f("burstiness").unwrap_or(1.0),
        max_concurrency: meta
            .get("max_concurrency")
            .and_then(Value::as_u64)
            .map(|n| n as usize),
        percentiles: json_percentiles(&asked),
        replay: meta.get("replay").is_some_and(|r| !r.is_null()),
        shared_on_purpose: meta
            .pointer("/prompt_uniqueness/shared_on_purpose")
            .and_then(Value::as_str)
            .map(str::to_string),
        session_turns: meta.pointer("/sessions/turns").and_then(Value::as_f64),
        embedding_batch: (meta.get("api").and_then(Value::as_str) == Some("embeddings")).then(
            || {
                let batch = meta.get("embedding_batch").and_then(Value::as_u64);
                batch.map_or(1, |b| b as u32)
            },
        ),
    }
}

/// Shard 0's metadata, saying that this is a merge and of which folders (no `shard`: the
/// merged run is the whole schedule).
fn merged_metadata(shards: &[shard::Shard]) -> Value {
    let mut meta = shards[0].meta.clone();
    if let Some(m) = meta.as_object_mut() {
        m.remove("shard");
        m.insert(
            "merged".into(),
            json!({
                "shards": shards.len(),
                "folders": shards.iter().map(|s| s.dir.display().to_string()).collect::<Vec<_>>(),
                "merged_at": LocalTime::now().iso(),
            }),
        );
    }
    meta
}

/// The PNGs (`--plot`).
fn draw(
    out: &RunDir,
    meta: &Value,
    levels: &[LevelStats],
    summary: &crate::report::recommend::Summary,
    name: &str,
) -> Result<()> {
    let title = crate::report::style::title_of_run(meta);
    let png = out.path.join(file_name_only("--plot-output", name)?);
    let views = analysis::views(levels);
    let c = analysis::Criteria::of_run(meta);
    crate::report::plot::render(&png, &views, summary, &c, &title)
        .map_err(|e| UserError::runtime(format!("cannot render {}: {e}", png.display())))?;
    crate::outln!("  - {}", png.display());
    if let Ok(Some(p)) = crate::report::timeline_plot::render_dir(&out.path, &title) {
        crate::outln!("  - {}", p.display());
    }
    if let Ok(Some(p)) = crate::report::turns_plot::render_dir(&out.path, &views, &title) {
        crate::outln!("  - {}", p.display());
    }
    Ok(())
}
