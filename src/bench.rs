//! The benchmark command, start to finish: validate flags, load the dataset, render requests,
//! resolve the endpoint, create the results folder, then run each QPS level on the engine and
//! report. Everything that can be wrong with the input is found here, before the first request.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{BenchArgs, ContinuousUsage};
use crate::clock::LocalTime;
use crate::dataset;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Result, UserError};
use crate::http::conn::Target;
use crate::http::tls;
use crate::http::url::{mask_url, Endpoint};
use crate::metrics::{json_percentiles, ConnectionStats, LevelStats};
use crate::report::results::{file_name_only, RunDir};
use crate::report::table;
use crate::request::{masked_header, parse_header, render_all, RequestTemplate};
use crate::schedule::{self, Arrival};

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

/// `metadata.json`: the seed's fields (in its order), then qpsbench's. Never the API key.
#[derive(Serialize)]
struct Metadata<'a> {
    timestamp: String,
    endpoint: &'a str,
    model: &'a str,
    dataset: String,
    qps_levels: &'a [f64],
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
    cores: usize,
    io_driver: &'static str,
    timeout_s: f64,
    request_usage: bool,
    /// Whether `stream_options.continuous_usage_stats` was sent, and why.
    continuous_usage_stats: String,
    results_file: &'a str,
    /// `--header`s, secret-looking values masked.
    headers: Vec<String>,
    tls: Option<TlsMeta>,
    warmup_connections: Option<usize>,
}

#[derive(Serialize)]
struct TlsMeta {
    ca_cert: Option<String>,
    insecure: bool,
}

/// Keep-alive connections per core to open before a level: the level's rate per core times the
/// expected latency (the previous level's E2E p90, else 1 s), with 25% headroom, 1 to 256.
fn warm_per_core(qps: f64, cores: usize, expected_latency_s: f64) -> usize {
    ((qps / cores as f64) * expected_latency_s * 1.25)
        .ceil()
        .clamp(1.0, 256.0) as usize
}

/// A number as an integer when it is one (the seed writes `"duration": 60`).
fn num(v: f64) -> serde_json::Value {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        serde_json::Value::from(v as i64)
    } else {
        serde_json::Value::from(v)
    }
}

fn missing(flag: &str, what: &str) -> UserError {
    UserError::input(format!("Missing {flag} argument ({what})"))
}

/// Runs the benchmark; returns the process exit status.
pub fn run(args: BenchArgs, dataset_override: Option<DatasetSource>) -> Result<i32> {
    // Required flags, checked in the seed's order with the seed's message.
    let endpoint_raw = args
        .endpoint
        .clone()
        .ok_or_else(|| missing("--endpoint", "the chat completions URL"))?;
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("OPENAI_API_KEY").ok())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            missing(
                "--api-key",
                "or set QPSBENCH_API_KEY or OPENAI_API_KEY in the environment",
            )
        })?;
    let model = args
        .model
        .clone()
        .ok_or_else(|| missing("--model", "the model name to request"))?;
    let source = match dataset_override {
        Some(s) => s,
        None => DatasetSource::File(
            args.dataset
                .clone()
                .ok_or_else(|| missing("--dataset", "path to your conversations JSON file"))?,
        ),
    };

    validate_numbers(&args)?;
    if args.show_tokens {
        eprintln!("note: --show-tokens is deprecated: tokens/sec is always shown");
    }
    if args.plot {
        eprintln!("note: --plot: plotting is not available yet in this version of qpsbench; no PNG will be written");
    }

    let shown_endpoint = mask_url(&endpoint_raw);
    let endpoint = Endpoint::parse(&endpoint_raw).map_err(|e| {
        UserError::input(format!(
            "--endpoint {}",
            e.replace(&endpoint_raw, &shown_endpoint)
        ))
    })?;
    let headers: Vec<(String, String)> = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<_>>()?;
    let tls_config = if endpoint.tls {
        let config =
            tls::client_config(args.ca_cert.as_deref(), args.insecure).map_err(UserError::input)?;
        let name = tls::server_name(&endpoint.host)
            .map_err(|e| UserError::input(format!("--endpoint: {e}")))?;
        if args.insecure {
            eprintln!("warning: --insecure: the endpoint's TLS certificate is not verified; anyone on the path can read the key and the traffic");
        }
        Some((config, name))
    } else {
        if args.ca_cert.is_some() || args.insecure {
            eprintln!("note: --ca-cert and --insecure apply to https:// endpoints only; this one is http://");
        }
        None
    };
    let (samples, dataset_name) = match &source {
        DatasetSource::File(p) => (dataset::load(p)?, p.display().to_string()),
        DatasetSource::Embedded { name, json } => {
            (dataset::parse(json.as_bytes(), name)?, name.clone())
        }
    };
    let output = file_name_only("--output", &args.output)?;
    let _plot_output = file_name_only("--plot-output", &args.plot_output)?;
    let counts: Vec<u64> = args
        .qps
        .iter()
        .map(|&q| schedule::request_count(q, args.duration))
        .collect();
    if let Some(i) = counts.iter().position(|&c| c == 0) {
        return Err(UserError::input(format!(
            "--qps {} with --duration {} sends no request (round(qps × duration) = 0); raise --qps or --duration",
            args.qps[i], args.duration
        )));
    }
    let addrs = endpoint
        .resolve()
        .map_err(|e| UserError::input(format!("--endpoint: {e}")))?;
    let mut template = RequestTemplate {
        endpoint: &endpoint,
        api_key: &api_key,
        model: &model,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        include_usage: !args.no_usage_request,
        continuous_usage: !args.no_usage_request && args.continuous_usage != ContinuousUsage::Off,
        headers: &headers,
    };
    let requests = render_all(&template, &samples)?;
    let available = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
    let cores = args.cores.unwrap_or(available);
    if cores > available {
        eprintln!(
            "warning: --cores {cores} is more than the {available} CPU(s) this process may use; core threads will share CPUs"
        );
    }

    let started = LocalTime::now();
    let run_dir = RunDir::create(&args.results_dir, &started)?;
    let engine = Engine::start(EngineConfig {
        cores,
        target: Target {
            addrs: addrs.into(),
            tls: tls_config,
        },
        requests,
        timeout: Duration::from_secs_f64(args.timeout),
    })
    .map_err(|e| UserError {
        message: e,
        exit_code: 1,
    })?;
    if engine.driver == crate::engine::IoDriver::Epoll {
        eprintln!("note: io_uring is not available here; using the epoll driver (pacing spends more CPU while waiting)");
    }
    let continuous_usage = if !template.continuous_usage {
        "off".to_string()
    } else if args.continuous_usage == ContinuousUsage::On {
        "requested".to_string()
    } else {
        // One request decides: some servers (hosted APIs) refuse unknown stream options with
        // HTTP 400, and a run of 400s would measure nothing.
        let probe = engine
            .run_level(&[0], samples.len())
            .map_err(|e| UserError {
                message: e,
                exit_code: 1,
            })?;
        if probe.merged.succeeded == 1 {
            "requested (probe accepted)".to_string()
        } else {
            let why = probe
                .merged
                .errors
                .keys()
                .next()
                .map_or_else(|| "no answer".to_string(), |k| k.to_string());
            eprintln!(
                "note: the probe request with stream_options.continuous_usage_stats failed ({why}); sending without it, so ITL counts one token per chunk unless the server says otherwise"
            );
            template.continuous_usage = false;
            engine
                .set_requests(render_all(&template, &samples)?)
                .map_err(|e| UserError {
                    message: e,
                    exit_code: 1,
                })?;
            format!("not requested (probe failed: {why})")
        }
    };
    let metadata = Metadata {
        timestamp: started.iso(),
        endpoint: &shown_endpoint,
        model: &model,
        dataset: dataset_name,
        qps_levels: &args.qps,
        duration: num(args.duration),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        percentiles: args.percentiles.iter().map(|&p| num(p)).collect(),
        show_tokens: true,
        qpsbench_version: env!("CARGO_PKG_VERSION"),
        dataset_samples: samples.len(),
        requests_per_level: counts.clone(),
        arrival: args.arrival,
        burstiness: (args.arrival == Arrival::Gamma).then_some(args.burstiness),
        seed: args.seed,
        cores,
        io_driver: engine.driver.name(),
        timeout_s: args.timeout,
        request_usage: !args.no_usage_request,
        continuous_usage_stats: continuous_usage,
        results_file: &output,
        headers: headers.iter().map(|(n, v)| masked_header(n, v)).collect(),
        tls: endpoint.tls.then(|| TlsMeta {
            ca_cert: args.ca_cert.as_ref().map(|p| p.display().to_string()),
            insecure: args.insecure,
        }),
        warmup_connections: args.warmup_connections,
    };
    run_dir.write_json("metadata.json", &metadata)?;
    eprintln!(
        "qpsbench: {} level(s) × {} s against {} on {} core(s) ({}); results in {}",
        args.qps.len(),
        args.duration,
        shown_endpoint,
        cores,
        engine.driver.name(),
        run_dir.path.display()
    );

    let pcts = json_percentiles(&args.percentiles);
    let mut levels: Vec<LevelStats> = Vec::with_capacity(args.qps.len());
    for (i, &qps) in args.qps.iter().enumerate() {
        let offsets = schedule::plan(
            qps,
            args.duration,
            args.arrival,
            args.burstiness,
            schedule::level_seed(args.seed, i),
        );
        // Connections are opened before the timed window, so setup stays out of TTFT.
        let expected_latency = levels
            .last()
            .and_then(|l: &LevelStats| l.e2e_latency.get("p90"))
            .unwrap_or(1.0);
        let warm_n = args
            .warmup_connections
            .unwrap_or_else(|| warm_per_core(qps, cores, expected_latency));
        let warm = engine.warm(warm_n).map_err(|e| UserError {
            message: e,
            exit_code: 1,
        })?;
        eprintln!(
            "[{}/{}] QPS {qps:.1}: sending {} requests over {} s ...",
            i + 1,
            args.qps.len(),
            offsets.len(),
            args.duration
        );
        let run = engine
            .run_level(&offsets, samples.len())
            .map_err(|e| UserError {
                message: e,
                exit_code: 1,
            })?;
        let mut stats =
            LevelStats::from_recorder(&run.merged, qps, args.duration, run.start_ns, &pcts);
        stats.connections = Some(ConnectionStats::new(&warm, &run.merged));
        for w in &stats.warnings {
            eprintln!("      warning: {w}");
        }
        eprintln!(
            "      {} sent, {} ok ({:.1}%), actual {:.2} QPS, send lag p99 {:.0} µs",
            stats.total_requests,
            stats.successful_requests,
            stats.success_rate,
            stats.actual_qps,
            stats.send_lag_us.p99
        );
        levels.push(stats);
        // Saved after every level: an interrupted run keeps what it measured.
        run_dir.write_json(&output, &levels)?;
    }
    drop(engine);

    println!();
    print!("{}", table::render(&levels, &args.percentiles, &args.show));
    println!("\nResults saved to: {}", run_dir.path.display());
    println!("  - {}", run_dir.path.join("metadata.json").display());
    println!("  - {}", run_dir.path.join(&output).display());
    Ok(0)
}

fn validate_numbers(a: &BenchArgs) -> Result<()> {
    let bad = |flag: &str, v: &dyn std::fmt::Display, want: &str| {
        Err(UserError::input(format!("{flag} {v}: expected {want}")))
    };
    if a.qps.is_empty() {
        return bad("--qps", &"(empty)", "one or more rates, e.g. 1,5,10,20");
    }
    if let Some(q) = a.qps.iter().find(|q| !(q.is_finite() && **q > 0.0)) {
        return bad("--qps", q, "rates above 0");
    }
    if !(a.duration.is_finite() && a.duration > 0.0) {
        return bad("--duration", &a.duration, "a number of seconds above 0");
    }
    if let Some(p) = a
        .percentiles
        .iter()
        .find(|p| !(p.is_finite() && **p > 0.0 && **p <= 100.0))
    {
        return bad(
            "--percentiles",
            p,
            "percentiles between 0 (exclusive) and 100",
        );
    }
    if a.percentiles.is_empty() {
        return bad(
            "--percentiles",
            &"(empty)",
            "one or more percentiles, e.g. 50,95,99",
        );
    }
    if a.max_tokens == 0 {
        return bad("--max-tokens", &0, "at least 1");
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return bad("--temperature", &a.temperature, "a number of 0 or more");
    }
    if !(a.burstiness.is_finite() && a.burstiness > 0.0) {
        return bad(
            "--burstiness",
            &a.burstiness,
            "a gamma shape above 0 (1 is Poisson)",
        );
    }
    if a.burstiness != 1.0 && a.arrival != Arrival::Gamma {
        return bad(
            "--burstiness",
            &a.burstiness,
            "--arrival gamma (burstiness shapes gamma-distributed gaps only)",
        );
    }
    if a.cores == Some(0) {
        return bad("--cores", &0, "at least 1");
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return bad("--timeout", &a.timeout, "a number of seconds above 0");
    }
    Ok(())
}
