//! What a run sends beyond the dataset file (`WorkloadArgs`, flattened into the benchmark's
//! flags): synthetic prompts and their prefix groups, exact answer lengths, trace replay, what
//! keeps repeats apart, the cache reset, multi-turn sessions and abandoned requests. Each flag is
//! documented where it is defined (what `--help` prints).

use clap::Args;

/// What a run sends beyond the dataset file: synthetic prompts, exact answer lengths, trace
/// replay.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// With --dataset-name random: prompt tokens
    ///
    /// With --dataset-name random: the prompt length in tokens (≈ words of a fixed vocabulary of
    /// single-token words), before --random-prefix-len
    #[arg(
        help_heading = "Workload",
        long,
        value_name = "TOKENS",
        default_value_t = 1024
    )]
    pub random_input_len: u32,

    /// With --dataset-name random: answer tokens (exact where the server allows)
    ///
    /// With --dataset-name random: the answer length in tokens (each request's max_tokens)
    #[arg(
        help_heading = "Workload",
        long,
        value_name = "TOKENS",
        default_value_t = 128
    )]
    pub random_output_len: u32,

    /// With --dataset-name random: lengths are drawn uniformly in [len × (1 − r), len × (1 + r)]
    /// (0 to below 1; 0: every sample has the given lengths)
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "R",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub random_range_ratio: f64,

    /// With --dataset-name random: a prefix of this many tokens shared by every prompt (to
    /// exercise a server's prefix cache), before each prompt's own text
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "TOKENS",
        default_value_t = 0
    )]
    pub random_prefix_len: u32,

    /// With --random-prefix-len: G distinct prefixes of that length instead of one, spread
    /// evenly over the prompts (each G consecutive prompts send every prefix once, in an order
    /// fixed by --seed): SGLang's generated-shared-prefix, vLLM's prefix_repetition
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "G"
    )]
    pub prefix_groups: Option<u32>,

    /// With --dataset-name random: draw N distinct prompts once, then cycle them, so prompts
    /// repeat on purpose (requests per level still come from --qps × --duration). Default: no
    /// pool, every prompt of the run is drawn anew and none repeats
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "N"
    )]
    pub random_pool_size: Option<u32>,

    /// Ask for exactly max_tokens tokens: adds vLLM's "ignore_eos": true and "min_tokens" equal
    /// to max_tokens to every request. On by default with --dataset-name random or mooncake (as
    /// vLLM's bench does); when the endpoint refuses the fields (HTTP 4xx to the probe before the
    /// first level) they are dropped, and metadata.json says so
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        conflicts_with = "no_ignore_eos"
    )]
    pub ignore_eos: bool,

    /// Do not add ignore_eos and min_tokens (answers end where the model stops)
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        conflicts_with = "ignore_eos"
    )]
    pub no_ignore_eos: bool,

    /// With a mooncake trace: send each row at its recorded time (from the first row), divided
    /// by --replay-speed, as one level instead of the --qps levels
    #[arg(help_heading = "Workload", hide_short_help = true, long)]
    pub replay: bool,

    /// With --replay: how much faster than recorded (2: twice as fast; 0.5: half as fast)
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub replay_speed: f64,

    /// When a dataset's rows must repeat (a run of more requests than rows): `prefix` starts
    /// each row's first user message with a short marker of its pass over the dataset (every
    /// pass, the first included); `salt` sends vLLM's `cache_salt` body field, one per pass;
    /// `off` sends repeated rows as they are, so a server's prefix cache answers them; `auto`:
    /// `prefix` from the second pass on. The probe before the first level always sends text no
    /// level sends (but with `off`)
    #[arg(help_heading = "Workload", hide_short_help = true, long, value_enum, value_name = "HOW", default_value_t = UniquePrompts::Auto)]
    pub unique_prompts: UniquePrompts,

    /// Empty the server's prefix cache before every level (the first included), once the
    /// previous level has drained: `auto` finds which way the server answers (vLLM's
    /// `POST /reset_prefix_cache`, SGLang's `POST /flush_cache`, llama.cpp's slot erase), or give
    /// the URL to POST. A refusal is a warning with the server's reason; the run goes on
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "auto|off|URL",
        default_value = "off"
    )]
    pub reset_prefix_cache: String,

    /// Multi-turn sessions of this many turns (history re-sent)
    ///
    /// Multi-turn sessions of this many turns (on average, with --session-turns-stddev): each
    /// level arrival starts a session; every later turn re-sends the whole history, with the
    /// server's own streamed answers, plus a new user message. Sessions start at --qps ÷ this
    /// (so requests average --qps), and every session started in the window runs to its end.
    /// With a ShareGPT, JSONL or `seed`-format file: each conversation's user turns (at most N),
    /// with the server's answers between them. Chat, Responses and Messages APIs only (1: single
    /// requests)
    #[arg(help_heading = "Workload", long, value_name = "N")]
    pub session_turns: Option<f64>,

    /// With --session-turns: each session's turn count is drawn from a normal distribution with
    /// this standard deviation (rounded, at least 1), fixed by --seed
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "N",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub session_turns_stddev: f64,

    /// With --session-turns: words (≈ tokens) of each later turn's new user message (default:
    /// --random-input-len)
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "TOKENS"
    )]
    pub turn_input_len: Option<u32>,

    /// With --session-turns: a turn is sent this long after the previous turn's last byte (the
    /// user reading and typing; an agent's tool call). Its latencies count from then
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub think_time_ms: f64,

    /// With --session-turns: `constant` think times, or `exponential` with mean --think-time-ms
    #[arg(help_heading = "Workload", hide_short_help = true, long, value_enum, value_name = "DIST", default_value_t = ThinkTimeDist::Constant)]
    pub think_time_dist: ThinkTimeDist,

    /// Abandon this percentage of each level's requests (a user's stop button, an agent's
    /// timeout): exactly round(rate × requests) of them, chosen with --seed, are cancelled by
    /// closing their connection --cancel-after-ms after their intended send (one whose answer
    /// ends first completes normally). Cancelled requests
    /// count in total_requests and cancelled_requests, never as errors, in latencies or in the
    /// success rate (0 to 100)
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "PERCENT",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub cancel_rate: f64,

    /// With --cancel-rate: how long after its intended send a request is abandoned, in ms: a
    /// fixed time, or a range such as 20-200 drawn uniformly per request with --seed
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        value_name = "MS|MIN-MAX"
    )]
    pub cancel_after_ms: Option<String>,
}

/// `--think-time-dist`: how think times between a session's turns are drawn.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ThinkTimeDist {
    /// Every think time is --think-time-ms.
    Constant,
    /// Exponential, with mean --think-time-ms (seeded).
    Exponential,
}

/// `--unique-prompts`: what keeps a repeated row from being answered by a prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UniquePrompts {
    /// `prefix` from the second pass over the dataset on; the first pass as the rows are.
    Auto,
    /// A marker of the pass at the start of each row's first user message, every pass.
    Prefix,
    /// vLLM's `cache_salt` body field, one per pass.
    Salt,
    /// Repeated rows are sent as they are.
    Off,
}
