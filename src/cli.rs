//! Command-line interface. The default command is the benchmark, with every flag of the seed
//! spec (same names, same defaults) plus qpsbench's own; `serve-mock` runs the built-in endpoint
//! and `demo` runs a short sweep against it. Each flag is documented where it is defined: this is
//! what `--help` prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::arrivals::Arrival;

#[derive(Debug, Parser)]
#[command(
    name = "qpsbench",
    version,
    about = "Load-test an OpenAI-compatible chat endpoint at fixed request rates and find where it saturates",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the built-in OpenAI-compatible streaming endpoint (for tests, demos and validating a load box).
    ServeMock(MockArgs),
    /// Start the built-in endpoint in-process and run a short sweep against it (~30 s).
    Demo(DemoArgs),
    /// Measure this machine's client overhead: the built-in endpoint on its own core(s) stamps
    /// each chunk with its send time; rising rates show the delay the client adds, its send lag
    /// and its CPU per token (writes selftest.json)
    Selftest(crate::selftest::SelftestArgs),
    /// Re-render a saved run's PNG and summary.json from its results folder (no requests sent)
    Plot(crate::replot::PlotArgs),
    /// Compare two saved runs level by level (matched by target QPS), with differences
    Compare(crate::compare::CompareArgs),
}

/// The benchmark (the default command).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// API endpoint URL, e.g. http://127.0.0.1:8000/v1/chat/completions [required]
    #[arg(long)]
    pub endpoint: Option<String>,

    /// Authentication key, sent as `Authorization: Bearer <key>`. Also read from
    /// QPSBENCH_API_KEY, then OPENAI_API_KEY, so it need not appear in shell history. Never
    /// written to results or logs. [required]
    #[arg(long, env = "QPSBENCH_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Model name sent in each request [required]
    #[arg(long)]
    pub model: Option<String>,

    /// Path to the dataset: a JSON array of {"prompt_content", "cut_chat_history"} samples [required]
    #[arg(long)]
    pub dataset: Option<PathBuf>,

    /// QPS levels to test, comma-separated; each level sends round(qps × duration) requests.
    /// `auto` finds the capacity instead: doubles from --auto-start until a level saturates,
    /// then bisects until the bracket is within --auto-tolerance
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,5,10,20",
        allow_negative_numbers = true
    )]
    pub qps: Vec<String>,

    /// With --qps auto: the first rate tried
    #[arg(
        long,
        value_name = "QPS",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub auto_start: f64,

    /// With --qps auto: the highest rate tried
    #[arg(
        long,
        value_name = "QPS",
        default_value_t = 1000.0,
        allow_negative_numbers = true
    )]
    pub auto_max_qps: f64,

    /// With --qps auto: stop bisecting when (first saturated − last good) ÷ last good is below
    /// this
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    pub auto_tolerance: f64,

    /// Seconds per level (the window in which the level's requests are sent)
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true)]
    pub duration: f64,

    /// Which percentiles to show in the console table, comma-separated (the JSON always has
    /// p50, p90, p95, p99 and max, plus any asked for here)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,95,99",
        allow_negative_numbers = true
    )]
    pub percentiles: Vec<f64>,

    /// (Deprecated - tokens/sec always shown)
    #[arg(long)]
    pub show_tokens: bool,

    /// Max tokens per request (`max_tokens` in the request body)
    #[arg(long, default_value_t = 512)]
    pub max_tokens: u32,

    /// Generation temperature
    #[arg(long, default_value_t = 0.7, allow_negative_numbers = true)]
    pub temperature: f64,

    /// Write the visualization PNG (the seed's 3×2 charts) into the run's results folder
    #[arg(long)]
    pub plot: bool,

    /// JSON results file name, written inside the run's results folder
    #[arg(long, default_value = "benchmark_qps_results.json")]
    pub output: String,

    /// PNG visualization file name, written inside the run's results folder
    #[arg(long, default_value = "benchmark_qps.png")]
    pub plot_output: String,

    /// Client cores (one pinned thread with its own io_uring runtime each); default: every core
    /// this process may run on
    #[arg(long)]
    pub cores: Option<usize>,

    /// Arrival process within a level: `poisson` (exponential gaps), `constant` (even gaps) or
    /// `gamma` (see --burstiness); any way, the level sends exactly round(qps × duration)
    /// requests in its window
    #[arg(long, value_enum, default_value_t = Arrival::Poisson)]
    pub arrival: Arrival,

    /// With `--arrival gamma`: the gamma shape of the gaps (vLLM's burstiness). Below 1 is
    /// burstier than Poisson, 1 is Poisson, above 1 is more even; the mean gap stays 1/qps
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub burstiness: f64,

    /// Seed of the arrival schedule (recorded in metadata.json; same seed, same schedule)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Per-request time limit in seconds, from when the request is sent to its last byte; a
    /// request over it counts as the error "Timeout (total)"
    #[arg(long, default_value_t = 120.0, allow_negative_numbers = true)]
    pub timeout: f64,

    /// Limit on opening a connection (TCP connect and TLS handshake), seconds; over it:
    /// "Timeout (connect)"
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10.0,
        allow_negative_numbers = true
    )]
    pub connect_timeout: f64,

    /// Limit from the send to the first output token, seconds; over it: "Timeout (first token)"
    /// (default: only --timeout applies)
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub ttft_timeout: Option<f64>,

    /// Limit on the gap between two reads of a response, seconds; over it: "Timeout (idle)"
    /// (default: only --timeout applies)
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub idle_timeout: Option<f64>,

    /// Folder under which each run creates its own timestamped results folder
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,

    /// Do not send `stream_options: {"include_usage": true}` (for servers that reject it); token
    /// counts are then estimated from content chunks and labelled `estimated`
    #[arg(long)]
    pub no_usage_request: bool,

    /// Ask for vLLM's `stream_options.continuous_usage_stats` (a running token count in every
    /// chunk, which tells how many tokens each chunk carries, for ITL). `auto` sends one probe
    /// request before the first level and keeps it only if the endpoint accepts it (HTTP 200)
    #[arg(long, value_enum, default_value_t = ContinuousUsage::Auto)]
    pub continuous_usage: ContinuousUsage,

    /// PEM file with one or more CA certificates to trust for https:// endpoints, in addition
    /// to the built-in web roots (for private CAs)
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the endpoint's TLS certificate (prints a warning once per run)
    #[arg(long)]
    pub insecure: bool,

    /// Extra header 'Name: value' added to every request; repeatable (gateways, tenant ids). An
    /// Authorization header replaces the Bearer one. Values of secret-looking headers (*key*,
    /// *token*, authorization, …) are masked in metadata.json and messages
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Extra metric columns in the console table, comma-separated: itl (inter-token latency),
    /// tpot (time per output token), ttfb (time to first byte). The JSON always has them
    #[arg(long, value_enum, value_delimiter = ',')]
    pub show: Vec<ShowMetric>,

    /// Keep-alive connections each core opens before each level's timed window, so that
    /// connection and TLS setup stay out of the first requests' TTFT (default: the level's rate
    /// per core × the expected latency, 1 to 256; 0 turns warm-up off)
    #[arg(long, value_name = "N")]
    pub warmup_connections: Option<usize>,

    /// Seconds of warm-up at each level's rate before its measured window: those requests are
    /// sent (same arrival process) but left out of every statistic, so the endpoint is in steady
    /// state when measuring starts
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub warmup: f64,

    /// Cap on requests in flight for the whole run (split evenly across cores). An arrival that
    /// finds every slot taken waits for one; each level reports how many waited and how long,
    /// and their latencies still count from the intended send time
    #[arg(long, value_name = "N")]
    pub max_concurrency: Option<usize>,

    /// Write requests.jsonl into the results folder: one line per request sent, with its
    /// intended, sent, first-byte, token and done times (µs from the level's start), status,
    /// error and token count. Kept in memory per core during a level, written after it
    #[arg(long)]
    pub save_requests: bool,

    /// Client cores never sleep in the kernel while a level runs: they poll the io_uring
    /// completion queue, removing the wake-up latency of an idle CPU (tens of µs on VMs) at the
    /// cost of one fully busy CPU per client core
    #[arg(long)]
    pub busy_poll: bool,

    /// A level whose send-lag p99 is above this many milliseconds, and above
    /// --max-send-lag-share of its TTFT p50, is flagged client_limited (0.001 to 3,600,000)
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub max_send_lag_ms: f64,

    /// A level's send lag distorts it only next to what it measures: the lag p99 must also be
    /// above this fraction of the level's TTFT p50 to flag it (0 to 1; 0: --max-send-lag-ms
    /// alone)
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.05,
        allow_negative_numbers = true
    )]
    pub max_send_lag_share: f64,

    /// A level whose achieved rate is below this fraction of its target (while the server was
    /// answering) is flagged client_limited
    #[arg(
        long,
        value_name = "RATIO",
        default_value_t = 0.99,
        allow_negative_numbers = true
    )]
    pub min_rate_ratio: f64,

    /// SLO on time to first token, seconds: the optimal QPS must meet it at --slo-percentile,
    /// and a request meeting it (and --slo-e2e) counts toward goodput
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub slo_ttft: Option<f64>,

    /// SLO on end-to-end latency, seconds (like --slo-ttft)
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    pub slo_e2e: Option<f64>,

    /// The percentile at which a level must meet the SLOs
    #[arg(
        long,
        value_name = "P",
        default_value_t = 95.0,
        allow_negative_numbers = true
    )]
    pub slo_percentile: f64,

    /// Saturation rule: a level whose success rate (%) is below this is saturated
    #[arg(
        long,
        value_name = "PCT",
        default_value_t = 95.0,
        allow_negative_numbers = true
    )]
    pub saturation_success: f64,

    /// Saturation rule: a level whose throughput QPS is below this fraction of its target is
    /// saturated
    #[arg(
        long,
        value_name = "RATIO",
        default_value_t = 0.9,
        allow_negative_numbers = true
    )]
    pub saturation_throughput: f64,

    /// Saturation rule: a level whose TTFT p95 is above this multiple of the lowest level's is
    /// saturated
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 3.0,
        allow_negative_numbers = true
    )]
    pub saturation_ttft_growth: f64,
}

/// `--continuous-usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ContinuousUsage {
    Auto,
    On,
    Off,
}

/// Optional console columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ShowMetric {
    Itl,
    Tpot,
    Ttfb,
}

/// `qpsbench serve-mock`: the built-in endpoint.
#[derive(Debug, Clone, Args)]
pub struct MockArgs {
    /// Address to listen on (use ::1 for IPv6 loopback)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to listen on; 0 picks a free port (the address is printed on start)
    #[arg(long, default_value_t = 8000)]
    pub port: u16,

    /// Time to first content token, in milliseconds
    #[arg(long, default_value_t = 50.0, allow_negative_numbers = true)]
    pub ttft_ms: f64,

    /// Time per output token after the first, in milliseconds
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub itl_ms: f64,

    /// Output tokens per response (capped by the request's max_tokens)
    #[arg(long, default_value_t = 128)]
    pub output_tokens: u64,

    /// Tokens per content chunk (a chunk of k tokens is sent every k × itl)
    #[arg(long, default_value_t = 1)]
    pub tokens_per_chunk: u64,

    /// Answer HTTP 503 to requests beyond this many in flight (0: unlimited)
    #[arg(long, default_value_t = 0)]
    pub max_concurrency: usize,

    /// Send a role-only first chunk ({"role":"assistant","content":""}) at once, as vLLM does
    #[arg(long)]
    pub role_chunk: bool,

    /// Never send a usage chunk, even when the request asks for one
    #[arg(long)]
    pub no_usage: bool,

    /// Capacity model: a shared budget of output tokens per second across all streams; past it,
    /// TTFT and inter-token latency grow with load (default: off, timing is exactly as set)
    #[arg(long, allow_negative_numbers = true)]
    pub capacity_tokens_per_sec: Option<f64>,

    /// Accept loops, each on its own thread and runtime
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Add the endpoint's send time (`"qpsbench_sent_ns"`, CLOCK_MONOTONIC ns) to every content
    /// chunk; a client on the same machine can then measure its own added delay
    #[arg(long)]
    pub stamp_chunks: bool,

    /// The endpoint's threads never sleep (io_uring only; one busy CPU per thread): chunks leave
    /// at their deadlines without a halted CPU's wake-up in between, as `selftest` runs it
    #[arg(long)]
    pub busy_poll: bool,

    /// Refuse (HTTP 400) any `stream_options` key other than `include_usage`, as some hosted
    /// APIs do (to try clients against them)
    #[arg(long)]
    pub strict_stream_options: bool,

    /// Fault mode, MODE[:PROBABILITY] (probability 1 if left out); repeatable, drawn per request
    /// in order. Modes: garbage, close-before-head, reset-mid-stream, truncated-chunk,
    /// stall-head, stall-first-token, stall-between-tokens, huge-head, endless, bad-json,
    /// error-event, json-answer, html502, retry429, and the valid but unusual http10 and
    /// chunk-extensions
    #[arg(long = "fault", value_name = "MODE[:P]")]
    pub faults: Vec<String>,

    /// Exit after this many seconds (default: run until interrupted)
    #[arg(long)]
    pub exit_after: Option<f64>,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a fresh CA and server certificate for localhost, 127.0.0.1 and ::1,
    /// written into DIR (ca.pem is what clients pass to --ca-cert)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: Option<PathBuf>,
}

/// `qpsbench demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Seconds per level
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Folder under which the demo's results folder is created
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,

    /// Client cores (default: every core this process may run on)
    #[arg(long)]
    pub cores: Option<usize>,
}
