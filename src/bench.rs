//! The benchmark command, start to finish: validate flags, load the dataset, render requests,
//! resolve the endpoint, create the results folder, then run each QPS level on the engine and
//! report. Everything that can be wrong with the input is found here, before the first request.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::BenchArgs;
use crate::clock::LocalTime;
use crate::dataset;
use crate::engine::{Engine, EngineConfig};
use crate::error::{Result, UserError};
use crate::http::url::Endpoint;
use crate::metrics::{json_percentiles, LevelStats};
use crate::report::results::{file_name_only, RunDir};
use crate::report::table;
use crate::request::{render_all, RequestTemplate};
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
    seed: u64,
    cores: usize,
    io_driver: &'static str,
    timeout_s: f64,
    request_usage: bool,
    results_file: &'a str,
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

    let endpoint =
        Endpoint::parse(&endpoint_raw).map_err(|e| UserError::input(format!("--endpoint {e}")))?;
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
    let requests = render_all(
        &RequestTemplate {
            endpoint: &endpoint,
            api_key: &api_key,
            model: &model,
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            include_usage: !args.no_usage_request,
        },
        &samples,
    )?;
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
        addrs,
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
    let metadata = Metadata {
        timestamp: started.iso(),
        endpoint: &endpoint_raw,
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
        seed: args.seed,
        cores,
        io_driver: engine.driver.name(),
        timeout_s: args.timeout,
        request_usage: !args.no_usage_request,
        results_file: &output,
    };
    run_dir.write_json("metadata.json", &metadata)?;
    eprintln!(
        "qpsbench: {} level(s) × {} s against {} on {} core(s) ({}); results in {}",
        args.qps.len(),
        args.duration,
        endpoint_raw,
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
            schedule::level_seed(args.seed, i),
        );
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
        let stats = LevelStats::from_recorder(&run.merged, qps, args.duration, run.start_ns, &pcts);
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
    print!("{}", table::render(&levels, &args.percentiles));
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
    if a.cores == Some(0) {
        return bad("--cores", &0, "at least 1");
    }
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        return bad("--timeout", &a.timeout, "a number of seconds above 0");
    }
    Ok(())
}
