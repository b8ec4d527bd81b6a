//! The benchmark's flags (the default command).

use std::path::PathBuf;

use clap::Args;

use super::boxes::ManyBoxesArgs;
use super::checks::ChecksArgs;
pub use super::values::{
    Api, Arrival, ContinuousUsage, DatasetName, EndpointStrategy, Progress, ShowMetric,
};
use super::workload::WorkloadArgs;

/// The benchmark (the default command).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The endpoint's URL, e.g. http://127.0.0.1:8000/v1/chat/completions [required]
    ///
    /// API endpoint URL, e.g. http://127.0.0.1:8000/v1/chat/completions [required]. Give it
    /// several times for replicas of one model without a load balancer: arrivals are spread over
    /// them (--endpoint-strategy), each with its own keep-alive connections, and each level
    /// reports every endpoint's requests, errors and TTFT
    #[arg(help_heading = "Endpoint and API", long, value_name = "URL")]
    pub endpoint: Vec<String>,

    /// API key (or QPSBENCH_API_KEY / OPENAI_API_KEY); none: no auth header
    ///
    /// Authentication key, sent as `Authorization: Bearer <key>` (as `x-api-key: <key>` with
    /// `--api messages`). Also read from
    /// QPSBENCH_API_KEY, then OPENAI_API_KEY, so it need not appear in shell history. Never
    /// written to results or logs. [required]
    #[arg(
        help_heading = "Endpoint and API",
        long,
        env = "QPSBENCH_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,

    /// Model name sent in each request [required]
    ///
    /// Model name sent in each request [required]
    #[arg(help_heading = "Endpoint and API", long)]
    pub model: Option<String>,

    /// Do not send `stream_options: {"include_usage": true}` (for servers that reject it); token
    /// counts are then estimated from content chunks and labelled `estimated`
    #[arg(help_heading = "Endpoint and API", hide_short_help = true, long)]
    pub no_usage_request: bool,

    /// A JSON object merged into every request body, e.g. '{"top_p": 0.9}'. Its keys override
    /// qpsbench's defaults (a `max_tokens` here wins); the keys qpsbench owns for the API (chat:
    /// model, messages, prompt, stream, stream_options; docs/benchmark.md lists each API's) are
    /// refused
    #[arg(
        help_heading = "Endpoint and API",
        hide_short_help = true,
        long,
        value_name = "JSON"
    )]
    pub extra_body: Option<String>,

    /// chat, completions, responses, messages or embeddings (default: from the path)
    ///
    /// The API to speak: `chat`, `completions`, `responses` (OpenAI Responses), `messages`
    /// (Anthropic Messages) or `embeddings` (default: from the endpoint's path's end:
    /// `/completions` but not `/chat/completions`, `/responses`, `/messages`, `/embeddings`;
    /// anything else is chat)
    #[arg(help_heading = "Endpoint and API", long, value_enum)]
    pub api: Option<Api>,

    /// With `--api embeddings`: inputs per request, each a dataset prompt (or synthetic text of
    /// `--random-input-len` tokens)
    #[arg(help_heading = "Endpoint and API", hide_short_help = true, long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub embedding_batch: u32,

    /// Ask for vLLM's `stream_options.continuous_usage_stats` (a running token count in every
    /// chunk, which tells how many tokens each chunk carries, for ITL). `auto` sends one probe
    /// request before the first level and keeps it only if the endpoint accepts it (HTTP 200)
    #[arg(help_heading = "Endpoint and API", hide_short_help = true, long, value_enum, default_value_t = ContinuousUsage::Auto)]
    pub continuous_usage: ContinuousUsage,

    /// Rates to test, e.g. 1,5,10,20, or `auto` to find the capacity
    ///
    /// QPS levels to test, comma-separated; each level sends round(qps × duration) requests.
    /// `auto` finds the capacity instead: doubles from --auto-start until a level saturates,
    /// then bisects until the bracket is within --auto-tolerance
    #[arg(
        help_heading = "Load",
        long,
        value_delimiter = ',',
        default_value = "1,5,10,20",
        allow_negative_numbers = true
    )]
    pub qps: Vec<String>,

    /// With --qps auto: the first rate tried
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        value_name = "QPS",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub auto_start: f64,

    /// With --qps auto: the highest rate tried
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        value_name = "QPS",
        default_value_t = 1000.0,
        allow_negative_numbers = true
    )]
    pub auto_max_qps: f64,

    /// With --qps auto: stop bisecting when (first saturated − last good) ÷ last good is below
    /// this
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        value_name = "FRACTION",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    pub auto_tolerance: f64,

    /// Seconds per level [default: 60]
    ///
    /// Seconds per level (the window in which the level's requests are sent) [default: 60; with
    /// --replay, the whole trace]
    #[arg(help_heading = "Load", long, allow_negative_numbers = true)]
    pub duration: Option<f64>,

    /// Client cores (default: all)
    ///
    /// Client cores (one pinned thread with its own io_uring runtime each); default: every core
    /// this process may run on
    #[arg(help_heading = "Load", long)]
    pub cores: Option<usize>,

    /// Arrivals within a level: poisson, constant or gamma
    ///
    /// Arrival process within a level: `poisson` (exponential gaps), `constant` (even gaps) or
    /// `gamma` (see --burstiness); any way, the level sends exactly round(qps × duration)
    /// requests in its window
    #[arg(help_heading = "Load", long, value_enum, default_value_t = Arrival::Poisson)]
    pub arrival: Arrival,

    /// With `--arrival gamma`: the gamma shape of the gaps (vLLM's burstiness). Below 1 is
    /// burstier than Poisson, 1 is Poisson, above 1 is more even; the mean gap stays 1/qps
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub burstiness: f64,

    /// Seed of the arrival schedule and of `--dataset-name random`'s lengths (recorded in
    /// metadata.json; same seed, same schedule and prompts)
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        default_value_t = 42
    )]
    pub seed: u64,

    /// Run every level even after one with no success
    ///
    /// Run every level even after one where no request succeeded (by default such a level
    /// ends the sweep: higher levels cannot do better). Shards always run every level
    #[arg(help_heading = "Load", long)]
    pub keep_going: bool,

    /// Seconds of warm-up at each level's rate before its measured window: those requests are
    /// sent (same arrival process) but left out of every statistic, so the endpoint is in steady
    /// state when measuring starts
    #[arg(
        help_heading = "Load",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub warmup: f64,

    /// Cap on requests in flight for the whole run (split evenly across cores). An arrival that
    /// finds every slot taken waits for one; each level reports how many waited and how long,
    /// and their latencies still count from the intended send time
    #[arg(help_heading = "Load", hide_short_help = true, long, value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Dataset file (the spec's conversations JSON, ShareGPT, JSONL, Mooncake)
    ///
    /// Path to the dataset: by default the spec's JSON array of {"prompt_content",
    /// "cut_chat_history"} samples (see --dataset-name for the others) [required, except with
    /// --dataset-name random]
    #[arg(help_heading = "Workload", long)]
    pub dataset: Option<PathBuf>,

    /// The dataset's format; `random`: synthetic prompts, no file
    ///
    /// The dataset's format: `seed`, `sharegpt` (a ShareGPT dump), `jsonl` (one OpenAI-style
    /// object per line, with `messages` or `prompt`, and optional `max_tokens`), `mooncake` (a
    /// trace: one {"timestamp", "input_length", "output_length", "hash_ids"} object per line) or
    /// `random` (synthetic prompts, no file; see --random-input-len and the flags after it).
    /// Default: detected from the file
    #[arg(help_heading = "Workload", long, value_enum, value_name = "NAME")]
    pub dataset_name: Option<DatasetName>,

    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Max tokens per answer (`max_tokens`)
    ///
    /// Max tokens per request (`max_tokens` in the request body)
    #[arg(help_heading = "Workload", long, default_value_t = 512)]
    pub max_tokens: u32,

    /// Generation temperature
    #[arg(
        help_heading = "Workload",
        hide_short_help = true,
        long,
        default_value_t = 0.7,
        allow_negative_numbers = true
    )]
    pub temperature: f64,

    #[command(flatten)]
    pub checks: ChecksArgs,

    /// Which percentiles to show in the console table, comma-separated (the JSON always has
    /// p50, p90, p95, p99 and max, plus any asked for here)
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        value_delimiter = ',',
        default_value = "50,95,99",
        allow_negative_numbers = true
    )]
    pub percentiles: Vec<f64>,

    /// (Deprecated - tokens/sec always shown)
    #[arg(help_heading = "Output", hide_short_help = true, long)]
    pub show_tokens: bool,

    /// Also draw the PNG charts
    ///
    /// Write the visualization PNG (the spec's 3×2 charts) into the run's results folder
    #[arg(help_heading = "Output", long)]
    pub plot: bool,

    /// JSON results file name, written inside the run's results folder
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        default_value = "benchmark_qps_results.json"
    )]
    pub output: String,

    /// PNG visualization file name, written inside the run's results folder
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        default_value = "benchmark_qps.png"
    )]
    pub plot_output: String,

    /// Folder for the run's timestamped results folder
    ///
    /// Folder under which each run creates its own timestamped results folder
    #[arg(help_heading = "Output", long, default_value = "results")]
    pub results_dir: PathBuf,

    /// Extra metric columns in the console table, comma-separated: itl (inter-token latency),
    /// tpot (time per output token), ttfb (time to first byte). The JSON always has them
    #[arg(
        help_heading = "Output",
        hide_short_help = true,
        long,
        value_enum,
        value_delimiter = ','
    )]
    pub show: Vec<ShowMetric>,

    /// Also write requests.jsonl, one line per request
    ///
    /// Write requests.jsonl into the results folder: one line per request sent, with its
    /// intended, sent, first-byte, token and done times (µs from the level's start), status,
    /// error and token count. Kept in memory per core during a level, written after it
    #[arg(help_heading = "Output", long)]
    pub save_requests: bool,

    /// Live progress on stderr during each level: `auto` redraws one status line every second
    /// on a terminal and prints a plain line every 10 s otherwise (a pipe, CI); `always` redraws
    /// even when stderr is not a terminal; `never` prints only each level's start and end lines
    #[arg(help_heading = "Output", hide_short_help = true, long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,

    /// The server's Prometheus /metrics URL, read each second
    ///
    /// The server's Prometheus metrics URL (e.g. http://127.0.0.1:8000/metrics), scraped about
    /// once a second during every level on a thread and connection of its own: each level gets
    /// `server_metrics` (vLLM's, SGLang's and TGI's running and waiting requests, cache usage
    /// and token counters), the timeline gets the samples, and a queue that grows through a
    /// level is saturation evidence. A failed scrape is counted, never fatal
    #[arg(help_heading = "Server metrics", long, value_name = "URL")]
    pub server_metrics: Option<String>,

    /// Another series to keep from --server-metrics, besides the built-in ones (repeatable)
    #[arg(
        help_heading = "Server metrics",
        hide_short_help = true,
        long = "server-metric",
        value_name = "NAME"
    )]
    pub server_metric: Vec<String>,

    /// With --server-metrics: keep only the samples with this label (e.g. model_name=my-model);
    /// without it, label sets are summed (counts, counters) or averaged (ratios)
    #[arg(
        help_heading = "Server metrics",
        hide_short_help = true,
        long,
        value_name = "KEY=VALUE"
    )]
    pub server_metrics_label: Option<String>,

    /// PEM CA certificates to trust for https://
    ///
    /// PEM file with one or more CA certificates to trust for https:// endpoints, in addition
    /// to the built-in web roots (for private CAs)
    #[arg(help_heading = "TLS and headers", long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the TLS certificate
    ///
    /// Do not verify the endpoint's TLS certificate (prints a warning once per run)
    #[arg(help_heading = "TLS and headers", long)]
    pub insecure: bool,

    /// Extra header 'Name: value' (repeatable)
    ///
    /// Extra header 'Name: value' added to every request; repeatable (gateways, tenant ids). An
    /// Authorization header replaces the Bearer one. Values of secret-looking headers (*key*,
    /// *token*, authorization, …) are masked in metadata.json and messages
    #[arg(
        help_heading = "TLS and headers",
        long = "header",
        value_name = "NAME: VALUE"
    )]
    pub headers: Vec<String>,

    /// With several --endpoint: how arrivals are spread over them, by their index in the
    /// schedule: `round-robin` (arrival i to endpoint i mod n) or `random` (drawn from --seed)
    #[arg(
        help_heading = "Many boxes",
        hide_short_help = true,
        long,
        value_enum,
        default_value = "round-robin",
        value_name = "STRATEGY"
    )]
    pub endpoint_strategy: EndpointStrategy,

    #[command(flatten)]
    pub boxes: ManyBoxesArgs,

    /// Per-request time limit in seconds, from when the request is sent to its last byte; a
    /// request over it counts as the error "Timeout (total)"
    #[arg(
        help_heading = "Advanced",
        hide_short_help = true,
        long,
        default_value_t = 120.0,
        allow_negative_numbers = true
    )]
    pub timeout: f64,

    /// Limit on opening a connection (TCP connect and TLS handshake), seconds; over it:
    /// "Timeout (connect)"
    #[arg(
        help_heading = "Advanced",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub connect_timeout: f64,

    /// Limit from the send to the first output token, seconds; over it: "Timeout (first token)"
    /// (default: only --timeout applies)
    #[arg(
        help_heading = "Advanced",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub ttft_timeout: Option<f64>,

    /// Limit on the gap between two reads of a response, seconds; over it: "Timeout (idle)"
    /// (default: only --timeout applies)
    #[arg(
        help_heading = "Advanced",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub idle_timeout: Option<f64>,

    /// Keep-alive connections each core opens before each level's timed window, so that
    /// connection and TLS setup stay out of the first requests' TTFT (default: the level's rate
    /// per core × the expected latency, 1 to 256; 0 turns warm-up off)
    #[arg(
        help_heading = "Advanced",
        hide_short_help = true,
        long,
        value_name = "N"
    )]
    pub warmup_connections: Option<usize>,

    /// Client cores never sleep in the kernel while a level runs: they poll the io_uring
    /// completion queue, removing the wake-up latency of an idle CPU (tens of µs on VMs) at the
    /// cost of one fully busy CPU per client core
    #[arg(help_heading = "Advanced", hide_short_help = true, long)]
    pub busy_poll: bool,
}
