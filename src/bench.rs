//! The benchmark command, start to finish: validate flags, load the dataset, render requests,
//! resolve the endpoint, create the results folder, then run each QPS level on the engine and
//! report. Everything that can be wrong with the input is found here, before the first request.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::arrivals::{self, Arrival};
use crate::cli::{BenchArgs, ContinuousUsage};
use crate::clock::LocalTime;
use crate::dataset;
use crate::engine::exchange::Slo;
use crate::engine::{Engine, EngineConfig, LevelRun, Timeouts};
use crate::error::{Result, UserError};
use crate::http::conn::Target;
use crate::http::tls;
use crate::http::url::Endpoint;
use crate::outcome::ErrorKind;
use crate::prepared::{parse_header, render_all, RequestTemplate};
use crate::report::analysis::{self, Criteria, LevelView};
use crate::report::results::{file_name_only, RunDir};
use crate::report::table;
use crate::secret::{mask_url, masked_header};
use crate::stats::{
    json_percentiles, CapStats, ConnectionStats, CoreCpu, LevelClock, LevelStats, SendLag,
    WarmupStats,
};
use crate::validity::{self, LevelFacts, Thresholds};

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
    cores: usize,
    /// Whether each client core's thread was pinned to its CPU.
    cores_pinned: Vec<bool>,
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
    let plot_output = file_name_only("--plot-output", &args.plot_output)?;
    // `None`: --qps auto.
    let fixed_levels = parse_qps(&args.qps)?;
    let first_rates: Vec<f64> = fixed_levels
        .clone()
        .unwrap_or_else(|| vec![args.auto_start]);
    let counts: Vec<u64> = first_rates
        .iter()
        .map(|&q| arrivals::request_count(q, args.duration))
        .collect();
    if let Some(i) = counts.iter().position(|&c| c == 0) {
        return Err(UserError::input(format!(
            "{} {} with --duration {} sends no request (round(qps × duration) = 0); raise it or --duration",
            if fixed_levels.is_some() { "--qps" } else { "--auto-start" },
            first_rates[i],
            args.duration
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
    let mut cores = args.cores.unwrap_or(available);
    if let Some(n) = args.max_concurrency {
        if n < cores {
            // Each core needs at least one slot of the cap.
            eprintln!(
                "note: --max-concurrency {n} is below the {cores} client cores; using {n} core(s)"
            );
            cores = n;
        }
    }
    if cores > available {
        eprintln!(
            "warning: --cores {cores} is more than the {available} CPU(s) this process may use; core threads will share CPUs"
        );
    }

    // Every connection is a file: raise the soft limit, then say before the run if the planned
    // concurrency may still not fit (or may run out of ephemeral ports).
    let nofile = crate::limits::raise_nofile();
    let top_qps = fixed_levels
        .as_ref()
        .map_or(args.auto_max_qps, |q| q.iter().copied().fold(0.0, f64::max));
    let (planned, what) = match args.max_concurrency {
        Some(n) => (n as u64, format!("--max-concurrency {n}")),
        None => {
            // A slow endpoint holds requests open for up to --timeout; 10 s is a generous
            // middle ground for the estimate.
            let hold = args.timeout.min(10.0);
            (
                (top_qps * hold).ceil() as u64,
                format!("QPS {top_qps} × up to {hold} s per request"),
            )
        }
    };
    for w in crate::limits::warnings(planned, &what, nofile, crate::limits::ephemeral_ports()) {
        eprintln!("warning: {w}");
    }
    let started = LocalTime::now();
    let run_dir = RunDir::create(&args.results_dir, &started)?;
    crate::interrupt::install();
    let engine = Engine::start(EngineConfig {
        cores,
        target: Target {
            addrs: addrs.into(),
            tls: tls_config,
        },
        requests,
        max_connections: crate::limits::connection_budget(nofile.0, cores),
        timeout: Duration::from_secs_f64(args.timeout),
        max_concurrency: args.max_concurrency,
        save_requests: args.save_requests,
        busy_poll: args.busy_poll,
        pin: None,
        slo: Slo {
            ttft_ns: args.slo_ttft.map(|s| (s * 1e9) as u64),
            e2e_ns: args.slo_e2e.map(|s| (s * 1e9) as u64),
        },
        timeouts: Timeouts {
            connect: Duration::from_secs_f64(args.connect_timeout),
            first_token: args.ttft_timeout.map(Duration::from_secs_f64),
            idle: args.idle_timeout.map(Duration::from_secs_f64),
        },
    })
    .map_err(|e| UserError {
        message: e,
        exit_code: 1,
    })?;
    if engine.driver == crate::engine::IoDriver::Epoll {
        eprintln!("note: io_uring is not available here; using the epoll driver (pacing spends more CPU while waiting)");
        if args.busy_poll {
            eprintln!("note: --busy-poll needs io_uring; it is off for this run");
        }
    }
    let continuous_usage = if !template.continuous_usage {
        "off".to_string()
    } else if args.continuous_usage == ContinuousUsage::On {
        "requested".to_string()
    } else {
        // One request decides: some servers (hosted APIs) refuse unknown stream options with
        // HTTP 400, and a run of 400s would measure nothing.
        let probe = engine
            .run_level(&[0], 0, (0, 0), samples.len())
            .map_err(|e| UserError {
                message: e,
                exit_code: 1,
            })?;
        let engine_err = |e: String| UserError {
            message: e,
            exit_code: 1,
        };
        let refused = probe
            .merged
            .errors
            .keys()
            .find(|k| matches!(k, ErrorKind::Http(400..=499)));
        let outcome = if probe.merged.succeeded == 1 {
            engine.reset(None).map_err(engine_err)?;
            "requested (probe accepted)".to_string()
        } else if let Some(code) = refused {
            eprintln!(
                "note: the endpoint refused a request with stream_options.continuous_usage_stats ({code}); sending without it, so ITL counts one token per chunk unless the server says otherwise"
            );
            template.continuous_usage = false;
            engine
                .reset(Some(render_all(&template, &samples)?))
                .map_err(engine_err)?;
            format!("not requested (refused by the endpoint: {code})")
        } else {
            // Not an answer about the option (refused connection, TLS, 5xx): keep asking.
            engine.reset(None).map_err(engine_err)?;
            let why = probe
                .merged
                .errors
                .keys()
                .next()
                .map_or_else(|| "no answer".to_string(), |k| k.to_string());
            format!("requested (probe inconclusive: {why})")
        };
        outcome
    };
    let metadata = Metadata {
        timestamp: started.iso(),
        endpoint: &shown_endpoint,
        model: &model,
        dataset: dataset_name,
        qps_levels: match &fixed_levels {
            Some(q) => serde_json::json!(q),
            None => serde_json::json!("auto"),
        },
        auto: fixed_levels.is_none().then_some(AutoMeta {
            start_qps: args.auto_start,
            max_qps: args.auto_max_qps,
            tolerance: args.auto_tolerance,
        }),
        duration: num(args.duration),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        percentiles: args.percentiles.iter().map(|&p| num(p)).collect(),
        show_tokens: true,
        qpsbench_version: env!("CARGO_PKG_VERSION"),
        dataset_samples: samples.len(),
        requests_per_level: if fixed_levels.is_some() {
            counts.clone()
        } else {
            Vec::new()
        },
        arrival: args.arrival,
        burstiness: (args.arrival == Arrival::Gamma).then_some(args.burstiness),
        seed: args.seed,
        cores,
        cores_pinned: engine.cores_pinned.clone(),
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
        warmup_s: args.warmup,
        max_concurrency: args.max_concurrency,
        save_requests: args.save_requests,
        busy_poll: args.busy_poll,
        max_send_lag_ms: args.max_send_lag_ms,
        max_send_lag_share: args.max_send_lag_share,
        min_rate_ratio: args.min_rate_ratio,
        slo_ttft_s: args.slo_ttft,
        slo_e2e_s: args.slo_e2e,
        slo_percentile: args.slo_percentile,
        saturation_success_pct: args.saturation_success,
        saturation_throughput_ratio: args.saturation_throughput,
        saturation_ttft_growth: args.saturation_ttft_growth,
    };
    run_dir.write_json("metadata.json", &metadata)?;
    eprintln!(
        "qpsbench: {} × {} s against {} on {} core(s) ({}); results in {}",
        fixed_levels
            .as_ref()
            .map_or("--qps auto, levels".to_string(), |q| format!(
                "{} level(s)",
                q.len()
            )),
        args.duration,
        shown_endpoint,
        cores,
        engine.driver.name(),
        run_dir.path.display()
    );

    let mut asked = args.percentiles.clone();
    asked.push(args.slo_percentile);
    let pcts = json_percentiles(&asked);
    let criteria = Criteria {
        min_success_pct: args.saturation_success,
        min_throughput_ratio: args.saturation_throughput,
        max_ttft_growth: args.saturation_ttft_growth,
        slo_ttft_s: args.slo_ttft,
        slo_e2e_s: args.slo_e2e,
        slo_percentile: args.slo_percentile,
        headroom: 0.75,
    };
    let thresholds = Thresholds {
        max_send_lag_p99_us: args.max_send_lag_ms * 1000.0,
        max_send_lag_share: args.max_send_lag_share,
        min_rate_ratio: args.min_rate_ratio,
    };
    let mut requests_file = if args.save_requests {
        Some(run_dir.create_new("requests.jsonl")?)
    } else {
        None
    };
    let mut levels: Vec<LevelStats> = Vec::new();
    let mut auto_bracket = None;
    {
        // One level: measured, its records appended, the results and summary rewritten.
        let mut run_one = |qps: f64, levels: &mut Vec<LevelStats>| -> Result<LevelStats> {
            let i = levels.len();
            let spec = LevelSpec {
                index: i,
                levels: fixed_levels.as_ref().map_or(0, Vec::len),
                qps,
                duration_s: args.duration,
                warmup_s: args.warmup,
                arrival: args.arrival,
                burstiness: args.burstiness,
                seed: arrivals::level_seed(args.seed, i),
                warmup_connections: args.warmup_connections,
                max_concurrency: args.max_concurrency,
                percentiles: &pcts,
                thresholds,
                samples: samples.len(),
            };
            let expected_latency = levels
                .last()
                .and_then(|l: &LevelStats| l.e2e_latency.get("p90"))
                .unwrap_or(1.0);
            let (stats, mut run) = measure_level(&engine, &spec, expected_latency, true)?;
            if let Some(f) = requests_file.as_mut() {
                let mut records = std::mem::take(&mut run.warm.records);
                records.append(&mut run.merged.records);
                crate::records::write_level(f, i + 1, qps, run.start_ns, &mut records)
                    .and_then(|()| std::io::Write::flush(f))
                    .map_err(|e| {
                        UserError::input(format!(
                            "cannot write {}: {e}",
                            run_dir.path.join("requests.jsonl").display()
                        ))
                    })?;
            }
            levels.push(stats.clone());
            // Saved after every level: an interrupted run keeps what it measured.
            run_dir.write_json(&output, &levels)?;
            run_dir.write_json(
                "summary.json",
                &analysis::analyze(&analysis::views(levels), &criteria),
            )?;
            Ok(stats)
        };
        match &fixed_levels {
            Some(qs) => {
                for &q in qs {
                    run_one(q, &mut levels)?;
                    if crate::interrupt::requested() {
                        break;
                    }
                }
            }
            None => {
                auto_bracket = auto_search(&mut levels, &mut run_one, &args, &criteria)?;
            }
        }
    }
    let summary = (!levels.is_empty()).then(|| {
        let mut s = analysis::analyze(&analysis::views(&levels), &criteria);
        s.auto_bracket = auto_bracket;
        s
    });
    if let Some(s) = &summary {
        run_dir.write_json("summary.json", s)?;
    }
    drop(engine);

    println!();
    // In QPS order (an auto search probes out of order; the JSON keeps the probe order).
    let mut by_qps = levels.clone();
    by_qps.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
    print!("{}", table::render(&by_qps, &args.percentiles, &args.show));
    if let Some(s) = &summary {
        print!("{}", analysis::render(s));
    }
    println!("\nResults saved to: {}", run_dir.path.display());
    println!("  - {}", run_dir.path.join("metadata.json").display());
    println!("  - {}", run_dir.path.join(&output).display());
    println!("  - {}", run_dir.path.join("summary.json").display());
    if args.plot {
        if let Some(s) = &summary {
            let png = run_dir.path.join(&plot_output);
            let title = crate::report::plot::plot_title(&model, &shown_endpoint, &started.iso());
            match crate::report::plot::render(&png, &analysis::views(&levels), s, &title) {
                Ok(()) => println!("  - {}", png.display()),
                // The results are saved; a failed picture must not lose them or fail the run.
                Err(e) => eprintln!("warning: could not write {}: {e}", png.display()),
            }
        }
    }
    if args.save_requests {
        println!("  - {}", run_dir.path.join("requests.jsonl").display());
    }
    if crate::interrupt::requested() {
        let partial = levels.last().map_or(0, |l| l.unfinished_requests);
        eprintln!(
            "qpsbench: interrupted; {} level(s) saved, the last one marked \"interrupted\"{}",
            levels.len(),
            if partial > 0 {
                format!(" ({partial} request(s) still in flight were not recorded)")
            } else {
                String::new()
            }
        );
        return Ok(130);
    }
    if levels.iter().all(|l| l.client_limited) {
        eprintln!(
            "error: every level was client-limited: the client fell behind its own schedule or ran out of its own descriptors or ports, so these numbers measure qpsbench on this machine, not the endpoint."
        );
        for l in &levels {
            eprintln!(
                "  QPS {}: {}",
                l.qps_target,
                l.client_limited_reasons.join("; ")
            );
        }
        eprintln!("  Give it more client cores (--cores), lower the rates, raise the open-file limit (ulimit -n), or run it on a less loaded machine; `qpsbench selftest` shows what this machine can drive.");
        return Ok(3);
    }
    Ok(0)
}

/// One level to measure.
pub struct LevelSpec<'a> {
    /// 0-based, and of how many (for progress lines).
    pub index: usize,
    pub levels: usize,
    pub qps: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub arrival: Arrival,
    pub burstiness: f64,
    pub seed: u64,
    pub warmup_connections: Option<usize>,
    pub max_concurrency: Option<usize>,
    pub percentiles: &'a [f64],
    pub thresholds: Thresholds,
    pub samples: usize,
}

/// Runs one level on the engine — connection warm-up, then the warm-up seconds and the measured
/// window as one schedule — and turns what the cores recorded into the level's statistics,
/// validity verdict included. `expected_latency_s` sizes the connection warm-up. Returns the raw
/// run too (for per-request records).
pub fn measure_level(
    engine: &Engine,
    spec: &LevelSpec<'_>,
    expected_latency_s: f64,
    progress: bool,
) -> Result<(LevelStats, LevelRun)> {
    let qps = spec.qps;
    let measured = arrivals::plan(
        qps,
        spec.duration_s,
        spec.arrival,
        spec.burstiness,
        spec.seed,
    );
    let mut offsets = if spec.warmup_s > 0.0 {
        arrivals::plan(
            qps,
            spec.warmup_s,
            spec.arrival,
            spec.burstiness,
            spec.seed ^ 0x5741_524d,
        )
    } else {
        Vec::new()
    };
    let warmup_n = offsets.len();
    let window_ns = (spec.warmup_s * 1e9).round() as u64;
    offsets.extend(measured.iter().map(|o| o + window_ns));
    // Connections are opened before the timed window, so setup stays out of TTFT.
    let cores = engine.cores();
    let mut warm_n = spec
        .warmup_connections
        .unwrap_or_else(|| warm_per_core(qps, cores, expected_latency_s));
    if let Some(cap) = spec.max_concurrency {
        warm_n = warm_n.min(cap.div_ceil(cores));
    }
    let engine_err = |e: String| UserError {
        message: e,
        exit_code: 1,
    };
    let warm = engine.warm(warm_n).map_err(engine_err)?;
    if progress {
        eprintln!(
            "[{}] QPS {qps:.1}: sending {} requests over {} s{} ...",
            if spec.levels > 0 {
                format!("{}/{}", spec.index + 1, spec.levels)
            } else {
                format!("auto {}", spec.index + 1)
            },
            measured.len(),
            spec.duration_s,
            if warmup_n > 0 {
                format!(
                    " after {warmup_n} warm-up requests over {} s",
                    spec.warmup_s
                )
            } else {
                String::new()
            }
        );
    }
    let duration_ns = (spec.duration_s * 1e9).round() as u64;
    let run = engine
        .run_level(&offsets, warmup_n, (window_ns, duration_ns), spec.samples)
        .map_err(engine_err)?;
    let r = &run.merged;
    let clock = LevelClock {
        start_ns: run.window_start_ns,
        duration_s: spec.duration_s,
        end_ns: run.end_ns,
        interrupted: crate::interrupt::requested(),
    };
    let mut stats = LevelStats::from_recorder(r, qps, clock, spec.percentiles);
    stats.connections = Some(ConnectionStats::new(&warm, r));
    let answered = r.succeeded
        + r.errors
            .iter()
            .filter(|(k, _)| matches!(k, ErrorKind::Http(_)))
            .map(|(_, v)| v.count)
            .sum::<u64>();
    let verdict = validity::assess(
        &LevelFacts {
            target_qps: qps,
            actual_qps: stats.actual_qps,
            send_lag_p99_us: stats.send_lag_us.p99,
            late_sends: r.send_lag_ns.count_between(
                (spec.thresholds.max_send_lag_p99_us * 1000.0) as u64 + 1,
                r.send_lag_ns.max(),
            ),
            sent: r.sent,
            answered,
            capped: r.capped,
            ttft_p50_us: stats.ttft.get("p50").map(|s| s * 1e6),
            client_errors: r
                .errors
                .iter()
                .filter(|(k, _)| k.is_client_side())
                .map(|(k, v)| (k.to_string(), v.count))
                .collect(),
        },
        &spec.thresholds,
    );
    stats.client_limited = verdict.client_limited;
    stats.client_limited_reasons = verdict.reasons;
    stats.send_gap_fit = validity::gap_fit(
        run.window_start_ns,
        &r.send_times_ns,
        spec.duration_s / measured.len().max(1) as f64,
        spec.arrival,
        spec.burstiness,
    );
    let wall_ns = run.end_ns.saturating_sub(run.start_ns).max(1) as f64;
    stats.client_cpu_per_core = run
        .per_core
        .iter()
        .enumerate()
        .map(|(core, c)| CoreCpu {
            core,
            cpu_s: (c.cpu_ns as f64 / 1e6).round() / 1e3,
            busy_pct: (c.cpu_ns as f64 * 1000.0 / wall_ns).round() / 10.0,
        })
        .collect();
    stats.concurrency_cap = spec.max_concurrency.map(|limit| CapStats {
        limit,
        waited: r.capped,
        wait_us: (r.capped > 0).then(|| SendLag::from_ns(&r.cap_wait_ns)),
    });
    stats.warmup = (warmup_n > 0).then_some(WarmupStats {
        seconds: spec.warmup_s,
        requests: run.warm.sent,
        successful: run.warm.succeeded,
    });
    if let Some(fit) = stats.send_gap_fit.as_ref().filter(|_| r.capped == 0) {
        // (Gaps shaped by --max-concurrency are the cap's, not the pacer's.)
        // With thousands of gaps KS flags distortions of a few µs; warn only when the shape is
        // off by more than 5 points of the CDF as well.
        if let Some(p) = fit
            .p_value
            .filter(|&p| p < 0.01 && fit.statistic.is_some_and(|d| d > 0.05))
        {
            stats.warnings.push(format!(
                "the realised send gaps do not follow the configured {:?} process (KS p = {p:.4})",
                spec.arrival
            ));
        }
    }
    if progress {
        for w in &stats.warnings {
            eprintln!("      warning: {w}");
        }
        eprintln!(
            "      {} sent, {} ok ({:.1}%), actual {:.2} QPS, send lag p99 {:.0} µs{}",
            stats.total_requests,
            stats.successful_requests,
            stats.success_rate,
            stats.actual_qps,
            stats.send_lag_us.p99,
            if r.capped > 0 {
                format!(", {} waited for a --max-concurrency slot", r.capped)
            } else {
                String::new()
            }
        );
        if stats.client_limited {
            eprintln!(
                "      CLIENT-LIMITED: {}",
                stats.client_limited_reasons.join("; ")
            );
        }
    }
    Ok((stats, run))
}

/// `--qps`: the levels, or `None` for `auto`.
fn parse_qps(raw: &[String]) -> Result<Option<Vec<f64>>> {
    if raw.len() == 1 && raw[0].trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if raw.is_empty() {
        return Err(UserError::input(
            "--qps (empty): expected one or more rates, e.g. 1,5,10,20, or auto",
        ));
    }
    raw.iter()
        .map(|s| match s.trim().parse::<f64>() {
            Ok(q) if q.is_finite() && q > 0.0 && q <= crate::flags::MAX_QPS => Ok(q),
            _ => Err(UserError::input(format!(
                "--qps {s}: expected rates above 0, at most {} (e.g. 1,5,10,20), or auto",
                crate::flags::MAX_QPS
            ))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `--qps auto`: doubles from `--auto-start` until a level saturates (the analysis' rules,
/// against the first level's TTFT), then bisects between the last good and the first saturated
/// rate until they are within `--auto-tolerance`. Every probed level is a normal level. A
/// client-limited level stops the search: it would measure the client, not the endpoint.
/// Returns the bracket `[last good, first saturated]`, if both were found.
fn auto_search(
    levels: &mut Vec<LevelStats>,
    run_one: &mut impl FnMut(f64, &mut Vec<LevelStats>) -> Result<LevelStats>,
    args: &BenchArgs,
    c: &Criteria,
) -> Result<Option<[f64; 2]>> {
    let mut base = analysis::Baseline::default();
    // Probes one rate: Some(saturated?) or None when the search must stop (client-limited).
    let mut probe = |q: f64, levels: &mut Vec<LevelStats>| -> Result<Option<bool>> {
        let stats = run_one(q, levels)?;
        if crate::interrupt::requested() {
            return Ok(None);
        }
        if stats.client_limited {
            eprintln!(
                "auto: QPS {q} is client-limited ({}); stopping the search: beyond this rate qpsbench would measure itself, not the endpoint. Give it more cores (--cores) or run it on a bigger machine.",
                stats.client_limited_reasons.join("; ")
            );
            return Ok(None);
        }
        let v = LevelView::from(&stats);
        // The first level that has them sets the baseline (the search starts lowest).
        let first = analysis::Baseline::of([&v]);
        base.ttft_p95 = base.ttft_p95.or(first.ttft_p95);
        base.e2e_p50 = base.e2e_p50.or(first.e2e_p50);
        let why = analysis::saturation_reasons(&v, &base, c);
        if why.is_empty() {
            eprintln!("auto: QPS {q} holds");
        } else {
            eprintln!("auto: QPS {q} saturates: {}", why.join("; "));
        }
        Ok(Some(!why.is_empty()))
    };
    let round = |q: f64| (q * 100.0).round() / 100.0;
    let mut good = None::<f64>;
    let bad: f64;
    let mut q = args.auto_start;
    loop {
        match probe(q, levels)? {
            None => return Ok(None),
            Some(true) => {
                bad = q;
                break;
            }
            Some(false) => good = Some(q),
        }
        if q >= args.auto_max_qps {
            eprintln!(
                "auto: no saturation up to --auto-max-qps {}; the capacity is higher",
                args.auto_max_qps
            );
            return Ok(None);
        }
        q = round((q * 2.0).min(args.auto_max_qps));
    }
    let mut hi = bad;
    let Some(mut lo) = good else {
        eprintln!(
            "auto: already saturated at the first rate (QPS {}); lower --auto-start",
            args.auto_start
        );
        return Ok(None);
    };
    while (hi - lo) / lo > args.auto_tolerance {
        let mid = round((lo + hi) / 2.0);
        if mid <= lo || mid >= hi {
            break;
        }
        match probe(mid, levels)? {
            None => break,
            Some(true) => hi = mid,
            Some(false) => lo = mid,
        }
    }
    eprintln!("auto: capacity between QPS {lo} (holds) and QPS {hi} (saturates)");
    Ok(Some([lo, hi]))
}

/// Every numeric flag within its documented range (`flags`), and the combinations that must
/// hold between them.
fn validate_numbers(a: &BenchArgs) -> Result<()> {
    use crate::flags::{check, count, plan_size, rate, seconds, seconds_opt, Low, MAX_SECONDS};
    let levels = parse_qps(&a.qps)?;
    rate("--auto-start", a.auto_start)?;
    rate("--auto-max-qps", a.auto_max_qps)?;
    if a.auto_max_qps < a.auto_start {
        return Err(UserError::input(format!(
            "--auto-max-qps {}: expected a rate at least --auto-start",
            a.auto_max_qps
        )));
    }
    check(
        "--auto-tolerance",
        a.auto_tolerance,
        Low::Above(0.0),
        0.99,
        "a fraction (e.g. 0.1)",
    )?;
    seconds("--duration", a.duration)?;
    check(
        "--warmup",
        a.warmup,
        Low::From(0.0),
        MAX_SECONDS,
        "a number of seconds",
    )?;
    let top = levels
        .as_ref()
        .map_or(a.auto_max_qps, |q| q.iter().copied().fold(0.0, f64::max));
    let flag = if levels.is_some() {
        "--qps"
    } else {
        "--auto-max-qps"
    };
    plan_size(flag, top, a.duration + a.warmup)?;
    if a.percentiles.is_empty() {
        return Err(UserError::input(
            "--percentiles (empty): expected one or more percentiles, e.g. 50,95,99",
        ));
    }
    for &p in &a.percentiles {
        check("--percentiles", p, Low::Above(0.0), 100.0, "percentiles")?;
    }
    count(
        "--max-tokens",
        a.max_tokens.into(),
        1,
        u32::MAX.into(),
        "a token count",
    )?;
    check(
        "--temperature",
        a.temperature,
        Low::From(0.0),
        100.0,
        "a temperature",
    )?;
    check(
        "--burstiness",
        a.burstiness,
        Low::Above(0.0),
        1000.0,
        "a gamma shape (1 is Poisson)",
    )?;
    if a.burstiness != 1.0 && a.arrival != Arrival::Gamma {
        return Err(UserError::input(format!(
            "--burstiness {}: expected --arrival gamma (burstiness shapes gamma-distributed gaps only)",
            a.burstiness
        )));
    }
    if let Some(c) = a.cores {
        count("--cores", c as u64, 1, 4096, "a number of cores")?;
    }
    if let Some(n) = a.max_concurrency {
        count(
            "--max-concurrency",
            n as u64,
            1,
            10_000_000,
            "a number of requests",
        )?;
    }
    if let Some(n) = a.warmup_connections {
        count(
            "--warmup-connections",
            n as u64,
            0,
            65_536,
            "connections per core",
        )?;
    }
    check(
        "--max-send-lag-ms",
        a.max_send_lag_ms,
        Low::Above(0.0),
        3_600_000.0,
        "milliseconds",
    )?;
    check(
        "--max-send-lag-share",
        a.max_send_lag_share,
        Low::From(0.0),
        1.0,
        "a fraction",
    )?;
    check(
        "--min-rate-ratio",
        a.min_rate_ratio,
        Low::Above(0.0),
        1.0,
        "a fraction (e.g. 0.99)",
    )?;
    seconds_opt("--slo-ttft", a.slo_ttft)?;
    seconds_opt("--slo-e2e", a.slo_e2e)?;
    check(
        "--slo-percentile",
        a.slo_percentile,
        Low::Above(0.0),
        100.0,
        "a percentile",
    )?;
    check(
        "--saturation-success",
        a.saturation_success,
        Low::From(0.0),
        100.0,
        "a percentage",
    )?;
    check(
        "--saturation-throughput",
        a.saturation_throughput,
        Low::Above(0.0),
        1.0,
        "a fraction",
    )?;
    check(
        "--saturation-ttft-growth",
        a.saturation_ttft_growth,
        Low::Above(1.0),
        1e6,
        "a factor",
    )?;
    seconds("--connect-timeout", a.connect_timeout)?;
    seconds_opt("--ttft-timeout", a.ttft_timeout)?;
    seconds_opt("--idle-timeout", a.idle_timeout)?;
    seconds("--timeout", a.timeout)?;
    Ok(())
}
