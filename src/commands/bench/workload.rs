//! Part of stage 1, the workload: which rows the run sends and when. The dataset (a file, the
//! demo's, or `random`'s synthetic prompts), whether requests ask for exact answer lengths
//! (`--ignore-eos`), the level's length (`--duration`), and with `--replay` the trace's own send
//! times instead of `--qps` levels.

use std::path::PathBuf;

use serde::Serialize;

use super::clockstart::Timetable;
use crate::cli::{BenchArgs, DatasetName};
use crate::foundation::error::{Result, UserError};
use crate::foundation::flag_ranges::MAX_SECONDS;
use crate::workload::dataset::{self, Dataset};

/// The default `--duration`, seconds.
pub const DEFAULT_DURATION_S: f64 = 60.0;

/// Where the dataset comes from.
#[derive(Debug, Clone)]
pub enum DatasetSource {
    File(PathBuf),
    /// A dataset built into the binary (the demo's), with the name shown in metadata.
    Embedded {
        name: String,
        json: &'static str,
    },
}

/// A trace replayed at its own times (`--replay`): one level.
#[derive(Debug, Clone, Serialize)]
pub struct Replay {
    /// Rows sent (all, or those within `--duration`).
    pub rows: usize,
    /// `--replay-speed`.
    pub speed: f64,
    /// From the first row's send time to the last's, seconds, at `speed`.
    pub span_s: f64,
    /// Each row's send offset from the first, ns (at `speed`).
    #[serde(skip)]
    pub offsets_ns: Vec<u64>,
}

/// What the run sends, and when.
pub struct Workload {
    pub dataset: Dataset,
    /// The dataset as shown in files and messages (its path, or the demo's name).
    pub shown: String,
    /// Seconds per level (with `--replay`, the replay's window).
    pub duration: f64,
    /// Ask for exact answer lengths (the probe may turn it off).
    pub ignore_eos: bool,
    pub replay: Option<Replay>,
    /// `--start-at` / `--start-in`: when each level is planned to start.
    pub timetable: Option<Timetable>,
}

impl Workload {
    /// Loads the dataset and resolves the flags that depend on it.
    pub fn new(args: &BenchArgs, source: Option<DatasetSource>) -> Result<Self> {
        let (dataset, shown) = load(args, source)?;
        let w = &args.workload;
        let ignore_eos = if w.ignore_eos {
            true
        } else if w.no_ignore_eos {
            false
        } else {
            matches!(dataset.name, DatasetName::Random | DatasetName::Mooncake)
        };
        let replay = w.replay.then(|| replay(&dataset, args)).transpose()?;
        let duration = args
            .duration
            .or(replay.as_ref().map(|r| r.span_s))
            .unwrap_or(DEFAULT_DURATION_S);
        Ok(Self {
            timetable: super::clockstart::plan(args, args.warmup + duration)?,
            duration,
            dataset,
            shown,
            ignore_eos,
            replay,
        })
    }
}

/// The dataset, and the name it is shown by.
fn load(args: &BenchArgs, source: Option<DatasetSource>) -> Result<(Dataset, String)> {
    if args.dataset_name == Some(DatasetName::Random) {
        if let Some(p) = &args.dataset {
            eprintln!(
                "note: --dataset-name random makes its own prompts; --dataset {} is not read",
                p.display()
            );
        }
        let d = dataset::random(&args.workload, args.seed);
        return Ok((d, "random".to_string()));
    }
    let source = match source {
        Some(s) => s,
        None => DatasetSource::File(args.dataset.clone().ok_or_else(|| {
            UserError::input(
                "Missing --dataset argument (path to your conversations JSON file, or --dataset-name random)",
            )
        })?),
    };
    let (loaded, shown) = match &source {
        DatasetSource::File(p) => (
            dataset::load(p, args.dataset_name)?,
            p.display().to_string(),
        ),
        DatasetSource::Embedded { name, json } => (
            Dataset::from_samples(dataset::parse(json.as_bytes(), name)?, DatasetName::Seed, 0),
            name.clone(),
        ),
    };
    if let dataset::Rows::Synthetic(set) = loaded.rows.as_ref() {
        if set.text.repeats() {
            eprintln!(
                "note: the trace has more distinct blocks and rows than the synthetic text has starting points ({}); some distinct blocks share their text, so a prefix cache may see a few hits the trace did not have",
                crate::workload::dataset::text::RING_WORDS
            );
        }
    }
    if loaded.skipped > 0 {
        eprintln!(
            "note: {} of the dataset's conversations were skipped (no human turn, or another role); {} samples remain",
            loaded.skipped,
            loaded.rows.len()
        );
    }
    Ok((loaded, shown))
}

/// The replay of a trace at `--replay-speed`, cut at `--duration` when one is given.
fn replay(dataset: &Dataset, args: &BenchArgs) -> Result<Replay> {
    let w = &args.workload;
    let trace = dataset.trace.as_ref().ok_or_else(|| {
        UserError::input(format!(
            "--replay needs a trace with send times (--dataset-name mooncake); this dataset is {}",
            serde_json::to_value(dataset.name).map_or_else(|_| "?".into(), |v| v.to_string())
        ))
    })?;
    if let Some(why) = &trace.not_replayable {
        return Err(UserError::input(format!(
            "--replay: the trace cannot be replayed at its times: {why}"
        )));
    }
    if args.warmup > 0.0 {
        return Err(UserError::input(
            "--warmup does not apply to --replay (the trace's rows are sent as recorded); drop one of them",
        ));
    }
    // Checked with the other numeric flags.
    let speed = w.replay_speed;
    let mut offsets_ns = trace.offsets_ns(speed);
    let span_s = offsets_ns.last().copied().unwrap_or(0) as f64 / 1e9;
    if span_s <= 0.0 {
        return Err(UserError::input(
            "--replay: every row of the trace has the same time (it spans 0 ms), so it has no rate to replay; send it at --qps levels instead",
        ));
    }
    if span_s > MAX_SECONDS {
        return Err(UserError::input(format!(
            "--replay: the trace spans {span_s:.0} s at --replay-speed {speed}; at most {MAX_SECONDS} s"
        )));
    }
    let all = offsets_ns.len();
    if let Some(d) = args.duration.filter(|&d| d < span_s) {
        let limit = (d * 1e9).round() as u64;
        offsets_ns.retain(|&o| o <= limit);
        eprintln!(
            "note: --duration {d} s cuts the replay: {} of the trace's {all} rows are sent (it spans {span_s:.3} s at --replay-speed {speed})",
            offsets_ns.len()
        );
    }
    Ok(Replay {
        rows: offsets_ns.len(),
        speed,
        span_s,
        offsets_ns,
    })
}
