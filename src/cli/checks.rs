//! The benchmark's flags that decide what a level's figures mean: the endpoint check before
//! level 1, the client-limited gate's thresholds and the saturation rules ("Validity and
//! saturation" in `--help`). Flattened into `BenchArgs`.

use clap::Args;

/// `--no-probe`, the client-limited thresholds and the saturation rules.
#[derive(Debug, Clone, Args)]
pub struct ChecksArgs {
    /// Skip the endpoint check before level 1
    ///
    /// Skip the endpoint check before level 1. By default one request goes first: an endpoint
    /// that cannot answer it (no connection, no TLS, no HTTP, HTTP 4xx, another API's answer)
    /// stops the run with exit status 4, and a few more measure it unloaded, the baseline of
    /// the saturation rules. Use this only for a server whose first request cannot succeed
    /// (e.g. one that rejects any request it has not seen a warm-up for); the lowest level is
    /// then the baseline
    #[arg(help_heading = "Validity and saturation", long)]
    pub no_probe: bool,

    /// Seconds the endpoint check keeps asking a busy endpoint (HTTP 429 or 5xx, e.g. a server
    /// still loading its model) before it goes on with a warning
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "SECONDS",
        default_value_t = 30.0,
        allow_negative_numbers = true
    )]
    pub probe_wait: f64,

    /// A level whose send-lag p99 is above this many milliseconds, and above
    /// --max-send-lag-share of its TTFT p50, is flagged client_limited (0.001 to 3,600,000)
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
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
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "FRACTION",
        default_value_t = 0.05,
        allow_negative_numbers = true
    )]
    pub max_send_lag_share: f64,

    /// A level whose achieved rate is below this fraction of its target (while the server was
    /// answering) is flagged client_limited
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "RATIO",
        default_value_t = 0.99,
        allow_negative_numbers = true
    )]
    pub min_rate_ratio: f64,

    /// TTFT SLO, seconds, for the optimal QPS and goodput
    ///
    /// SLO on time to first token, seconds: the optimal QPS must meet it at --slo-percentile,
    /// and a request meeting it (and --slo-e2e) counts toward goodput
    #[arg(
        help_heading = "Validity and saturation",
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub slo_ttft: Option<f64>,

    /// E2E latency SLO, seconds
    ///
    /// SLO on end-to-end latency, seconds (like --slo-ttft)
    #[arg(
        help_heading = "Validity and saturation",
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub slo_e2e: Option<f64>,

    /// The percentile at which a level must meet the SLOs
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "P",
        default_value_t = 95.0,
        allow_negative_numbers = true
    )]
    pub slo_percentile: f64,

    /// Saturation rule: a level whose success rate (%) is below this is saturated
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "PCT",
        default_value_t = 95.0,
        allow_negative_numbers = true
    )]
    pub saturation_success: f64,

    /// Saturation rule: a level whose throughput QPS is below this fraction of its target is
    /// saturated
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "RATIO",
        default_value_t = 0.9,
        allow_negative_numbers = true
    )]
    pub saturation_throughput: f64,

    /// Saturation rule: a level whose TTFT p95 is above this multiple of the lowest level's is
    /// saturated
    #[arg(
        help_heading = "Validity and saturation",
        hide_short_help = true,
        long,
        value_name = "FACTOR",
        default_value_t = 3.0,
        allow_negative_numbers = true
    )]
    pub saturation_ttft_growth: f64,
}
