//! Stage 3, the metadata: `metadata.json`, the spec's fields (in its order) then qpsbench's,
//! written before the first level. Never the API key; secret-looking headers and query parameters
//! masked.

use serde::Serialize;

use super::plan::Plan;
use crate::engine::Engine;
use crate::foundation::clock::LocalTime;
use crate::foundation::error::Result;
use crate::foundation::secret::masked_header;
use crate::report::results::RunDir;
use crate::workload::arrivals::Arrival;

/// `metadata.json`: the spec's fields (in its order), then qpsbench's. Never the API key.
#[derive(Serialize)]
struct Metadata<'a> {
    timestamp: String,
    endpoint: &'a str,
    model: &'a str,
    dataset: String,
    /// The levels, or `"auto"`.
    qps_levels: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto: Option<AutoMeta>,
    duration: serde_json::Value,
    max_tokens: u32,
    temperature: f64,
    percentiles: serde_json::Value,
    show_tokens: bool,
    qpsbench_version: &'static str,
    dataset_samples: usize,
    requests_per_level: Vec<u64>,
    arrival: Arrival,
    /// The gamma shape, with `--arrival gamma`.
    #[serde(skip_serializing_if = "Option::is_none")]
    burstiness: Option<f64>,
    seed: u64,
    /// The dataset's format, given or detected (`--dataset-name`), and the entries skipped as
    /// unusable.
    dataset_name: crate::cli::DatasetName,
    /// The source's parameters (`random`'s flags, a trace's block size), null for files.
    dataset_params: &'a serde_json::Value,
    dataset_skipped: u64,
    /// `--start-at` / `--start-in`: the first level's planned start (Unix seconds), and
    /// `--cooldown`.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_at_unix_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cooldown_s: Option<f64>,
    /// Several `--endpoint`s: all of them (masked), and how arrivals were spread over them.
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoints: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint_strategy: Option<crate::cli::EndpointStrategy>,
    /// `--shard K/N`: this process's shard and the shard count.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<usize>,
    /// `--server-metrics` (masked), the extra series and the label selected.
    #[serde(skip_serializing_if = "Option::is_none")]
    server_metrics: Option<ServerMetricsMeta<'a>>,
    /// With `--replay`: the trace's rows sent, the speed and the span.
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<&'a super::workload::Replay>,
    /// The API spoken (`chat`, `completions`, `responses`, `messages` or `embeddings`).
    api: crate::cli::Api,
    /// `--embedding-batch`: inputs per request, with `--api embeddings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    embedding_batch: Option<u32>,
    /// `--extra-body`, merged into every request body (its keys win over the defaults).
    #[serde(skip_serializing_if = "Option::is_none")]
    extra_body: Option<&'a serde_json::Map<String, serde_json::Value>>,
    cores: usize,
    /// Whether each client core's thread was pinned to its CPU.
    cores_pinned: Vec<bool>,
    io_driver: &'static str,
    /// How the client read responses: `io_uring multishot recv` or `monoio reads`.
    receive_path: &'static str,
    timeout_s: f64,
    request_usage: bool,
    /// What the probe found: `continuous_usage_stats`, `ignore_eos`, `endpoint_check`,
    /// `baseline` (`bench::probe::Outcome`).
    #[serde(flatten)]
    probe: &'a super::probe::Outcome,
    results_file: &'a str,
    /// `--header`s, secret-looking values masked.
    headers: Vec<String>,
    tls: Option<TlsMeta>,
    warmup_connections: Option<usize>,
    warmup_s: f64,
    max_concurrency: Option<usize>,
    save_requests: bool,
    busy_poll: bool,
    /// The client-limited thresholds.
    max_send_lag_ms: f64,
    max_send_lag_share: f64,
    min_rate_ratio: f64,
    /// The analysis' thresholds and SLOs (`summary.json`).
    slo_ttft_s: Option<f64>,
    slo_e2e_s: Option<f64>,
    slo_percentile: f64,
    saturation_success_pct: f64,
    saturation_throughput_ratio: f64,
    saturation_ttft_growth: f64,
    /// `--unique-prompts`: what keeps a repeated row from the server's prefix cache, the rows
    /// and passes planned, what the probe sent.
    prompt_uniqueness: &'a crate::workload::prepared::unique::Report,
    /// `--reset-prefix-cache`: what was asked, the way found, what the first reset did.
    prefix_cache_reset: Option<&'a super::reset::Meta>,
    /// `--session-turns`: each arrival started a session of these turns and think times.
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<&'a crate::engine::session_plan::SessionPlan>,
    /// `--cancel-rate`: the share of each level's requests abandoned, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel: Option<&'a crate::engine::cancel::CancelPlan>,
}

/// What the stages before the metadata decided.
pub struct Extra<'a> {
    pub probe: super::probe::Outcome,
    pub prompt_uniqueness: &'a crate::workload::prepared::unique::Report,
    pub prefix_cache_reset: Option<&'a super::reset::Meta>,
}

#[derive(Serialize)]
struct ServerMetricsMeta<'a> {
    url: &'a str,
    extra_series: &'a [String],
    label: Option<&'a str>,
}

#[derive(Serialize)]
struct AutoMeta {
    start_qps: f64,
    max_qps: f64,
    tolerance: f64,
}

#[derive(Serialize)]
struct TlsMeta {
    ca_cert: Option<String>,
    insecure: bool,
}

/// A number as an integer when it is one (the spec writes `"duration": 60`).
pub fn json_number(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from(v)
    }
}

/// Writes `metadata.json` into the run's folder.
pub fn write(
    run_dir: &RunDir,
    plan: &Plan,
    engine: &Engine,
    started: &LocalTime,
    extra: Extra<'_>,
) -> Result<()> {
    let a = &plan.args;
    let probe = extra.probe;
    let metadata = Metadata {
        timestamp: started.iso(),
        endpoint: &plan.shown_endpoint,
        model: &plan.model,
        dataset: plan.workload.shown.clone(),
        qps_levels: match &plan.fixed_levels {
            Some(q) => serde_json::json!(q),
            None => serde_json::json!("auto"),
        },
        auto: plan.fixed_levels.is_none().then_some(AutoMeta {
            start_qps: a.auto_start,
            max_qps: a.auto_max_qps,
            tolerance: a.auto_tolerance,
        }),
        duration: json_number(plan.workload.duration),
        max_tokens: a.max_tokens,
        temperature: a.temperature,
        percentiles: a.percentiles.iter().map(|&p| json_number(p)).collect(),
        show_tokens: true,
        qpsbench_version: env!("CARGO_PKG_VERSION"),
        dataset_samples: plan.rows(),
        requests_per_level: plan.requests_per_level.clone(),
        arrival: a.arrival,
        burstiness: (a.arrival == Arrival::Gamma).then_some(a.burstiness),
        seed: a.seed,
        dataset_name: plan.workload.dataset.name,
        dataset_params: &plan.workload.dataset.params,
        dataset_skipped: plan.workload.dataset.skipped,
        replay: plan.workload.replay.as_ref(),
        sessions: plan.sessions.as_ref(),
        cancel: plan.cancels.as_ref(),
        start_at_unix_s: plan
            .workload
            .timetable
            .map(|t| (t.start_unix_s * 1e3).round() / 1e3),
        cooldown_s: plan.workload.timetable.map(|_| a.boxes.cooldown),
        endpoints: (plan.shown_endpoints.len() > 1).then_some(&plan.shown_endpoints[..]),
        endpoint_strategy: (plan.shown_endpoints.len() > 1).then_some(a.endpoint_strategy),
        shard: plan.shard.map(|(k, _)| k),
        shards: plan.shard.map(|(_, n)| n),
        server_metrics: plan.server_metrics.as_ref().map(|m| ServerMetricsMeta {
            url: &m.shown,
            extra_series: &a.server_metric,
            label: a.server_metrics_label.as_deref(),
        }),
        api: plan.api,
        embedding_batch: plan.embedding_batch(),
        extra_body: plan.extra_body.as_ref(),
        cores: plan.cores,
        cores_pinned: engine.cores_pinned.clone(),
        io_driver: engine.driver.name(),
        receive_path: engine.recv_path,
        timeout_s: a.timeout,
        request_usage: !a.no_usage_request,
        probe: &probe,
        results_file: &plan.output,
        headers: plan
            .headers
            .iter()
            .map(|(n, v)| masked_header(n, v))
            .collect(),
        tls: plan
            .replicas
            .iter()
            .any(|r| r.endpoint.tls)
            .then(|| TlsMeta {
                ca_cert: a.ca_cert.as_ref().map(|p| p.display().to_string()),
                insecure: a.insecure,
            }),
        warmup_connections: a.warmup_connections,
        warmup_s: a.warmup,
        max_concurrency: a.max_concurrency,
        save_requests: a.save_requests,
        busy_poll: a.busy_poll,
        max_send_lag_ms: a.checks.max_send_lag_ms,
        max_send_lag_share: a.checks.max_send_lag_share,
        min_rate_ratio: a.checks.min_rate_ratio,
        slo_ttft_s: a.checks.slo_ttft,
        slo_e2e_s: a.checks.slo_e2e,
        slo_percentile: a.checks.slo_percentile,
        saturation_success_pct: a.checks.saturation_success,
        saturation_throughput_ratio: a.checks.saturation_throughput,
        saturation_ttft_growth: a.checks.saturation_ttft_growth,
        prompt_uniqueness: extra.prompt_uniqueness,
        prefix_cache_reset: extra.prefix_cache_reset,
    };
    run_dir.write_json("metadata.json", &metadata)?;
    Ok(())
}
