//! The benchmark's flags for a run spread over many load boxes: its shard, and the common clock
//! that lines the shards' levels up (docs/many-boxes.md). Flattened into `BenchArgs`.

use clap::Args;

/// `--shard`, `--shards`, `--start-at`, `--start-in`, `--cooldown`.
#[derive(Debug, Clone, Args)]
pub struct ManyBoxesArgs {
    /// Run as shard K of N (see docs/many-boxes.md)
    ///
    /// Run as shard K of N (0-based, e.g. 2/4): send exactly the arrivals i of the run's
    /// schedule with i mod N = K (same --seed, levels, intended times and samples), so that N
    /// processes together send the single-process schedule. `auto`: K and N from Slurm's array
    /// (SLURM_ARRAY_TASK_ID with SLURM_ARRAY_TASK_COUNT or _MIN/_MAX) or a Kubernetes Indexed
    /// Job (JOB_COMPLETION_INDEX, with --shards N)
    #[arg(help_heading = "Many boxes", long, value_name = "K/N|auto")]
    pub shard: Option<String>,

    /// Start the first level at this wall-clock instant (Unix seconds, e.g. $(date -d '+2 min'
    /// +%s)); level i starts at it + i × (warm-up + duration + --cooldown), so shards on several
    /// boxes line up without talking to each other
    #[arg(
        help_heading = "Many boxes",
        hide_short_help = true,
        long,
        value_name = "UNIX_SECONDS",
        allow_negative_numbers = true
    )]
    pub start_at: Option<f64>,

    /// Like --start-at, this many seconds from now (for a single process)
    #[arg(
        help_heading = "Many boxes",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub start_in: Option<f64>,

    /// With --start-at or --start-in: seconds between one level's window and the next level's
    /// planned start, for the requests still in flight to finish. A level that cannot start on
    /// time waits for the previous one and records start_lag_s
    #[arg(
        help_heading = "Many boxes",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub cooldown: f64,

    /// With --shard auto on Kubernetes: the number of shards (the Job's completions)
    #[arg(
        help_heading = "Many boxes",
        hide_short_help = true,
        long,
        value_name = "N"
    )]
    pub shards: Option<usize>,
}
