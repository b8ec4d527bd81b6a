//! One shard's results folder, read back (`metadata.json`, `histograms.json`, the results JSON),
//! and the checks that the folders given to `merge` are the N shards of one schedule: same
//! schedule, each shard exactly once.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::foundation::error::{Result, UserError};
use crate::report::results::file_name_only;
use crate::stats::histograms_file::LevelHistograms;

/// The `metadata.json` keys that fix the schedule: the shards of one run agree on every one.
const SCHEDULE_KEYS: [&str; 18] = [
    "qps_levels",
    "endpoints",
    "endpoint_strategy",
    "duration",
    "seed",
    "arrival",
    "burstiness",
    "dataset",
    "dataset_name",
    "dataset_params",
    "dataset_samples",
    "warmup_s",
    "shards",
    "start_at_unix_s",
    "cooldown_s",
    "replay",
    "model",
    "max_tokens",
];

/// A shard's folder, read.
pub struct Shard {
    pub dir: PathBuf,
    /// K of `--shard K/N` (0 for an unsharded run).
    pub index: usize,
    /// N (1 for an unsharded run).
    pub count: usize,
    pub meta: Value,
    /// Each measured level's histograms and counters, in the order measured.
    pub levels: Vec<LevelHistograms>,
    /// The results JSON, level for level beside `levels` (what only it holds: server metrics,
    /// the replay's shape).
    pub results: Vec<Value>,
}

fn read_json(dir: &Path, name: &str) -> Result<Value> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        UserError::input(format!(
            "{} is not a qpsbench run folder: cannot read {name} ({e})",
            dir.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| UserError::input(format!("{}: not valid JSON: {e}", path.display())))
}

/// Reads the run folder `dir`.
pub fn load(dir: &Path) -> Result<Shard> {
    if !dir.is_dir() {
        return Err(UserError::input(format!(
            "{}: not a folder (give the shards' results folders)",
            dir.display()
        )));
    }
    let meta = read_json(dir, "metadata.json")?;
    let count = |key: &str| meta.get(key).and_then(Value::as_u64).map(|n| n as usize);
    let (index, shards) = (count("shard").unwrap_or(0), count("shards").unwrap_or(1));
    let histograms = read_json(dir, "histograms.json")?;
    let levels: Vec<LevelHistograms> = serde_json::from_value(histograms).map_err(|e| {
        UserError::input(format!(
            "{}: not qpsbench's histograms.json: {e}",
            dir.join("histograms.json").display()
        ))
    })?;
    let results_file = meta
        .get("results_file")
        .and_then(Value::as_str)
        .unwrap_or("benchmark_qps_results.json");
    let results_file = file_name_only("results_file", results_file)?;
    let results = match read_json(dir, &results_file)? {
        Value::Array(levels) => levels,
        _ => {
            return Err(UserError::input(format!(
                "{}: expected an array of levels",
                dir.join(&results_file).display()
            )))
        }
    };
    if results.len() != levels.len() {
        return Err(UserError::input(format!(
            "{}: {} levels in {results_file} but {} in histograms.json (was the run stopped while writing?)",
            dir.display(),
            results.len(),
            levels.len()
        )));
    }
    Ok(Shard {
        dir: dir.to_path_buf(),
        index,
        count: shards,
        meta,
        levels,
        results,
    })
}

/// Puts the shards in shard order, after checking that they are the N shards of one schedule,
/// each exactly once.
pub fn check(shards: &mut [Shard]) -> Result<()> {
    shards.sort_by_key(|s| s.index);
    let first = &shards[0];
    for s in &shards[1..] {
        for key in SCHEDULE_KEYS {
            let (a, b) = (first.meta.get(key), s.meta.get(key));
            if a != b {
                let shown = |v: Option<&Value>| v.map_or("absent".to_string(), Value::to_string);
                return Err(UserError::input(format!(
                    "{} and {} are not shards of one schedule: their metadata.json differ in {key} ({} and {})",
                    first.dir.display(),
                    s.dir.display(),
                    shown(a),
                    shown(b)
                )));
            }
        }
    }
    let n = first.count;
    for pair in shards.windows(2) {
        if pair[0].index == pair[1].index {
            return Err(UserError::input(format!(
                "shard {} is given twice: {} and {}",
                pair[0].index,
                pair[0].dir.display(),
                pair[1].dir.display()
            )));
        }
    }
    let have: Vec<usize> = shards.iter().map(|s| s.index).collect();
    if let Some(k) = (0..n).find(|k| !have.contains(k)) {
        return Err(UserError::input(format!(
            "shard {k} of {n} is missing: the folders given hold shards {}",
            have.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(s) = shards.iter().find(|s| s.index >= n) {
        return Err(UserError::input(format!(
            "{}: shard {} of a run of {n} shards",
            s.dir.display(),
            s.index
        )));
    }
    Ok(())
}
