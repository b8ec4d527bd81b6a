//! The flags of the other commands: `serve-mock`, `demo`, `selftest`, `plot` and `compare`.

use std::path::PathBuf;

use clap::Args;

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

    /// At most this many requests generate at once; the others wait in a FIFO queue (their
    /// TTFT includes the wait), as vLLM's scheduler keeps them. `GET /metrics` reports running
    /// and waiting requests (0: no queue)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_num_seqs: usize,

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

    /// Answer the first N requests with HTTP 503 ("loading"), as a server still warming up does,
    /// then serve normally (to try a client's wait for a busy endpoint)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fail_first: u64,

    /// Answer HTTP 401 to any request without this key (as `Authorization: Bearer KEY` or
    /// `x-api-key: KEY`), as a hosted API does; `/health` and `/metrics` stay open
    #[arg(long, value_name = "KEY")]
    pub require_key: Option<String>,

    /// The model name `GET /v1/models` lists (requests may name any model; answers echo it)
    #[arg(long, default_value = "qpsbench-mock")]
    pub served_model_name: String,

    /// Prefill time: milliseconds added to TTFT per 1000 prompt tokens (counted as words), so
    /// longer prompts wait longer for their first token, as on a real server
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub prefill_ms_per_1k_tokens: f64,

    /// Keep a prefix cache, as vLLM does: 16-token blocks of a prompt whose whole prefix was
    /// seen before are cached; answers report them (`usage.prompt_tokens_details.cached_tokens`),
    /// only uncached tokens cost prefill time, `/metrics` counts queries and hits, and
    /// `POST /reset_prefix_cache` empties it
    #[arg(long)]
    pub prefix_cache: bool,

    /// Answer chat, Responses and Messages requests as a reasoning model does: stream this many
    /// reasoning tokens (chat's `reasoning_content`, Responses' reasoning text, a Messages
    /// `thinking` block) before the answer, each at the inter-token latency; usage counts them
    /// in the output tokens, and chat's and Responses' usage says how many were reasoning
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub reasoning_tokens: u64,

    /// Append one JSON line per streamed answer to FILE: the request body as received
    /// (`body`) and the answer's text as sent (`answer`), so that a test can check what a client
    /// re-sent (a session's history). Off by default: it costs a write per request
    #[arg(long, value_name = "FILE")]
    pub log_requests: Option<PathBuf>,

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

/// `--busy-poll` for the self-test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BusyPollMode {
    Off,
    On,
    /// Both, one after the other (the JSON's top level is without, `busy_poll` with).
    Both,
}

/// `qpsbench selftest`.
#[derive(Debug, Clone, clap::Args)]
pub struct SelftestArgs {
    /// Request rates to try, in order, comma-separated; the sweep stops early once the client
    /// cannot reach 90% of a rate
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "100,200,500,1000,2000,5000,10000,20000"
    )]
    pub rates: Vec<f64>,

    /// Seconds per rate
    #[arg(long, default_value_t = 2.0)]
    pub duration: f64,

    /// Output tokens per response (short streams, one token per chunk, 1 ms apart)
    #[arg(long, default_value_t = 8)]
    pub output_tokens: u64,

    /// Client cores (default: half of the CPUs this process may use, at least 1); the built-in
    /// endpoint runs on the others (on one CPU, both share it)
    #[arg(long)]
    pub client_cores: Option<usize>,

    /// Measure without busy polling, with it, or both
    #[arg(long, value_enum, default_value_t = BusyPollMode::Both)]
    pub busy_poll: BusyPollMode,

    /// Headline threshold: the added delay's p99 must stay under this many µs
    #[arg(long, default_value_t = 100.0)]
    pub max_added_delay_us: f64,

    /// Folder under which the self-test's results folder is created
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,

    /// Instead of the sweep: find by bisection how far one core goes at each end — the built-in
    /// endpoint's chunks/s on schedule and the client's QPS of 32-token streams — for 1 and 16
    /// tokens per chunk and over TLS, with CPU per chunk on both sides and the bare floor
    /// measured in the same run (`--duration` seconds per rate tried; `--busy-poll on` busy-polls
    /// both sides, otherwise neither does)
    #[arg(long)]
    pub ceiling: bool,
}

/// `qpsbench plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// A results folder written by qpsbench (holding metadata.json and the results JSON)
    pub dir: PathBuf,

    /// PNG file name, inside DIR
    #[arg(long, default_value = "benchmark_qps.png")]
    pub plot_output: String,

    /// Override the run's TTFT SLO (seconds)
    #[arg(long, value_name = "SECONDS")]
    pub slo_ttft: Option<f64>,

    /// Override the run's E2E SLO (seconds)
    #[arg(long, value_name = "SECONDS")]
    pub slo_e2e: Option<f64>,
}

/// `qpsbench compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The first results folder (A)
    pub a: PathBuf,
    /// The second results folder (B); differences are B − A
    pub b: PathBuf,
}

/// `qpsbench merge`.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// The shards' results folders (one per shard of one `--shard K/N` run, in any order)
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,

    /// Folder under which the merged run gets its own timestamped results folder
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,

    /// Also draw the merged run's PNG (and its timeline picture)
    #[arg(long)]
    pub plot: bool,

    /// PNG file name, inside the merged folder
    #[arg(long, default_value = "benchmark_qps.png")]
    pub plot_output: String,
}

/// `qpsbench k8s-manifest`.
#[derive(Debug, Clone, clap::Args)]
pub struct K8sManifestArgs {
    /// Shards: the Indexed Job's completions and parallelism (one pod per shard)
    #[arg(long, value_name = "N")]
    pub shards: usize,

    /// Seconds from now to the first level, filled in as --start-at: time enough to apply the
    /// manifests, schedule every pod and pull the image
    #[arg(long, value_name = "SECONDS")]
    pub start_in: f64,

    /// The container image, built from the repository's Dockerfile and pushed to a registry the
    /// cluster can pull from
    #[arg(long)]
    pub image: String,

    /// Prefix of the objects' names: NAME-results (volume claim), NAME-shards, NAME-merge (Jobs)
    #[arg(long, default_value = "qpsbench")]
    pub name: String,

    /// Client cores per shard: the pod's CPU request and its --cores
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub cores: usize,

    /// Size of the ReadWriteMany results volume claim
    #[arg(long, default_value = "1Gi")]
    pub storage: String,

    /// The Secret holding the API key under the key `api-key`
    /// (kubectl create secret generic qpsbench-api-key --from-literal=api-key=...)
    #[arg(long, default_value = "qpsbench-api-key", value_name = "NAME")]
    pub api_key_secret: String,

    /// The benchmark's flags, after `--` (without --api-key, --shard, --start-at or
    /// --results-dir: the manifests set those)
    #[arg(last = true, value_name = "BENCHMARK FLAGS")]
    pub bench: Vec<String>,
}
