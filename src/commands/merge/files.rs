//! The merged run's line files: `timeline.jsonl`, the shards' seconds added up by wall-clock
//! second, and `requests.jsonl`, the shards' records concatenated with a `shard` field.
//!
//! A second's counts (sent, ok, failed, in flight, tokens) are sums, exact. Its TTFT p50 and
//! p99 are not kept as histograms per second, so the merged second shows the shards' p50
//! weighted by their successes and the largest shard p99: a picture of the run, not a
//! measurement (the level's percentiles, from the merged histograms, are exact).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use super::shard::Shard;
use crate::foundation::error::{Result, UserError};
use crate::recording::timeline::Row;
use crate::report::results::RunDir;

/// Writes the merged `timeline.jsonl`. `starts`: each level's merged window start (Unix s); a
/// shard's second t of a level becomes the merged second that holds the same wall-clock second.
pub fn timeline(shards: &[Shard], starts: &BTreeMap<usize, f64>, out: &RunDir) -> Result<()> {
    let mut merged: BTreeMap<(usize, usize), (Row, f64)> = BTreeMap::new();
    for s in shards {
        let path = s.dir.join("timeline.jsonl");
        let Ok(f) = File::open(&path) else {
            eprintln!(
                "note: {} has no timeline.jsonl; the merged timeline leaves that shard out",
                s.dir.display()
            );
            continue;
        };
        for (n, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| read_error(&path, e))?;
            let row: Row = serde_json::from_str(&line).map_err(|e| {
                UserError::input(format!(
                    "{} line {}: not a timeline row: {e}",
                    path.display(),
                    n + 1
                ))
            })?;
            let Some(own) = s.levels.iter().find(|l| l.level == row.level) else {
                continue;
            };
            let base = starts
                .get(&row.level)
                .copied()
                .unwrap_or(own.window_start_unix_s);
            let shift = (own.window_start_unix_s - base).round().max(0.0) as usize;
            let key = (row.level, row.t_s + shift);
            add(
                merged.entry(key).or_insert_with(|| (empty(key), 0.0)),
                row,
                s.index == 0,
            );
        }
    }
    let mut f = out.create_new("timeline.jsonl")?;
    for (mut row, p50_weight) in merged.into_values() {
        if p50_weight > 0.0 {
            row.ttft_p50 = row
                .ttft_p50
                .map(|sum| (sum / p50_weight * 1e6).round() / 1e6);
        }
        serde_json::to_writer(&mut f, &row)
            .map_err(std::io::Error::from)
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| read_error(&out.path.join("timeline.jsonl"), e))?;
    }
    f.flush()
        .map_err(|e| read_error(&out.path.join("timeline.jsonl"), e))
}

fn empty((level, t_s): (usize, usize)) -> Row {
    Row {
        level,
        t_s,
        counts: Default::default(),
        in_flight: 0,
        ttft_p50: None,
        ttft_p99: None,
        server: BTreeMap::new(),
    }
}

/// Adds one shard's second into the merged one (`ttft_p50` holds the weighted sum until the
/// end; `weight` its weight). Server samples come from shard 0, the one that scraped.
fn add((into, weight): &mut (Row, f64), row: Row, scraper: bool) {
    into.counts.add(&row.counts);
    into.in_flight += row.in_flight;
    if let Some(p50) = row.ttft_p50 {
        into.ttft_p50 = Some(into.ttft_p50.unwrap_or(0.0) + p50 * row.counts.ok as f64);
        *weight += row.counts.ok as f64;
    }
    into.ttft_p99 = match (into.ttft_p99, row.ttft_p99) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if scraper {
        into.server = row.server;
    }
}

/// Concatenates the shards' `requests.jsonl` (in shard order) with a `shard` field, when every
/// shard saved one; returns whether it did.
pub fn requests(shards: &[Shard], out: &RunDir) -> Result<bool> {
    let saved = shards
        .iter()
        .filter(|s| s.dir.join("requests.jsonl").is_file())
        .count();
    if saved < shards.len() {
        if saved > 0 {
            eprintln!("note: only {saved} of {} shards saved requests.jsonl (--save-requests); the merged folder has none", shards.len());
        }
        return Ok(false);
    }
    let out_path = out.path.join("requests.jsonl");
    let mut f = out.create_new("requests.jsonl")?;
    for s in shards {
        let path = s.dir.join("requests.jsonl");
        let lines = File::open(&path).map_err(|e| read_error(&path, e))?;
        for line in BufReader::new(lines).lines() {
            let line = line.map_err(|e| read_error(&path, e))?;
            // Each line is one JSON object: the shard goes first, the record follows as written.
            let Some(rest) = line.strip_prefix('{') else {
                continue;
            };
            writeln!(f, "{{\"shard\":{},{rest}", s.index).map_err(|e| read_error(&out_path, e))?;
        }
    }
    f.flush().map_err(|e| read_error(&out_path, e))?;
    Ok(true)
}

fn read_error(path: &Path, e: std::io::Error) -> UserError {
    UserError::input(format!("{}: {e}", path.display()))
}
