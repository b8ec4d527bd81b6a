//! `qpsbench selftest`: measures what this machine's client adds to the numbers it reports.
//!
//! Data flow: the built-in endpoint (`mock`) starts in-process on its own core(s) and stamps
//! every content chunk with its send time on the shared monotonic clock; the engine runs on the
//! remaining core(s) at rising rates, exactly as a benchmark level (`bench::measure_level`);
//! each chunk's read time minus its stamp is the client's added delay (network stack, wake-ups,
//! parsing). Results go to `selftest.json` in a new results folder.
//!
//! The headline is the highest rate at which the added delay's p99 stays under
//! `--max-added-delay-us` (100 µs), every request succeeds and the level is not client-limited.

pub mod ceiling;
pub mod floor;
pub mod stalls;

use std::time::Duration;

use serde::Serialize;

use crate::cli::{BusyPollMode, SelftestArgs};
use crate::commands::bench::{measure_level, LevelSpec};
use crate::commands::mock::{self, MockConfig};
use crate::engine::{Engine, EngineConfig};
use crate::foundation::clock::LocalTime;
use crate::foundation::error::{Result, UserError};
use crate::http::conn::Target;
use crate::http::url::Endpoint;
use crate::report::results::RunDir;
use crate::stats::validity::Thresholds;
use crate::stats::{json_percentiles, LevelStats, SendLag};
use crate::workload::arrivals::{self, Arrival};
use crate::workload::prepared::{render_samples, Prepared, RequestTemplate};
use stalls::CpuStalls;

/// One rate's figures (`selftest.json` → `rates[]`).
#[derive(Debug, Clone, Serialize)]
pub struct RateResult {
    pub target_qps: f64,
    pub actual_qps: f64,
    pub send_lag_us: SendLag,
    /// Read time − the endpoint's send stamp, per content chunk.
    pub client_added_delay_us: Option<SendLag>,
    pub client_cpu_us_per_token: Option<f64>,
    pub client_cpu_us_per_request: Option<f64>,
    pub success_rate: f64,
    pub client_limited: bool,
    pub client_limited_reasons: Vec<String>,
}

/// One sweep: every rate tried and the headline.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    /// The client CPUs' own stalls, probed for 1 s just before the sweep ([`crate::commands::selftest::stalls`]).
    pub machine_stalls: Vec<CpuStalls>,
    pub rates: Vec<RateResult>,
    /// The highest rate meeting the headline's conditions; null if none did.
    pub headline_qps: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct Machine {
    pub cpus: usize,
    pub client_cores: Vec<usize>,
    pub endpoint_cores: Vec<usize>,
    pub io_driver: &'static str,
    /// How the client read responses (the last engine's, for a ceiling run: each setup has
    /// its own).
    pub receive_path: &'static str,
}

#[derive(Serialize)]
struct SelftestJson {
    timestamp: String,
    qpsbench_version: &'static str,
    machine: Machine,
    duration_s: f64,
    output_tokens: u64,
    max_added_delay_us: f64,
    /// Without busy polling (or with it, when only `--busy-poll on` ran).
    machine_stalls: Vec<CpuStalls>,
    rates: Vec<RateResult>,
    headline_qps: Option<f64>,
    busy_poll_used: bool,
    /// With `--busy-poll both`: the same sweep with busy polling.
    #[serde(skip_serializing_if = "Option::is_none")]
    busy_poll: Option<Sweep>,
    /// The endpoint's own lateness over the whole self-test (every content chunk's send time −
    /// its deadline): if it is large, the endpoint ran out, not the client.
    endpoint_chunk_lateness_us: crate::commands::mock::lateness::LatenessSummary,
}

fn headline(rates: &[RateResult], max_added_us: f64) -> Option<f64> {
    rates
        .iter()
        .filter(|r| {
            !r.client_limited
                && r.success_rate >= 100.0
                && r.client_added_delay_us
                    .as_ref()
                    .is_some_and(|d| d.p99 < max_added_us)
        })
        .map(|r| r.target_qps)
        .reduce(f64::max)
}

/// `qpsbench selftest`: the endpoint on its own CPUs, one sweep per busy-poll mode, then
/// `selftest.json` and the console summary.
pub fn run(args: SelftestArgs) -> Result<i32> {
    validate(&args)?;
    if args.ceiling {
        return ceiling::run(&args);
    }
    let cpus = Cpus::split(args.client_cores);
    let server = mock::start(MockConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ttft_ms: 0.0,
        itl_ms: 1.0,
        output_tokens: args.output_tokens,
        tokens_per_chunk: 1,
        threads: cpus.endpoint.len().max(1),
        stamp_chunks: true,
        busy_poll: true,
        pin: cpus.endpoint.clone(),
        ..MockConfig::default()
    })
    .map_err(|e| UserError::input(format!("cannot start the built-in endpoint: {e}")))?;
    let (target, requests) = client_target(&server.url(), args.output_tokens)?;
    let started = LocalTime::now();
    let run_dir = RunDir::create(&args.results_dir, &started)?;
    eprintln!(
        "selftest: endpoint on CPU(s) {:?}, client on CPU(s) {:?}; {} s per rate; results in {}",
        ids(&cpus.endpoint),
        ids(&cpus.client),
        args.duration,
        run_dir.path.display()
    );
    let modes: &[bool] = match args.busy_poll {
        BusyPollMode::Off => &[false],
        BusyPollMode::On => &[true],
        BusyPollMode::Both => &[false, true],
    };
    let mut sweeps = Vec::new();
    let (mut driver, mut receive_path) = ("io_uring", "");
    for &busy in modes {
        let engine = start_client(&cpus.client, &target, &requests, busy)?;
        driver = engine.driver.name();
        receive_path = engine.recv_path;
        sweeps.push(sweep_with_stalls(&engine, &args, &cpus.client, busy)?);
    }
    let mut sweeps = sweeps.into_iter();
    let first = sweeps.next().expect("at least one mode");
    let json = SelftestJson {
        timestamp: started.iso(),
        qpsbench_version: env!("CARGO_PKG_VERSION"),
        machine: Machine {
            cpus: cpus.total,
            client_cores: ids(&cpus.client),
            endpoint_cores: ids(&cpus.endpoint),
            io_driver: driver,
            receive_path,
        },
        duration_s: args.duration,
        output_tokens: args.output_tokens,
        max_added_delay_us: args.max_added_delay_us,
        headline_qps: first.headline_qps,
        machine_stalls: first.machine_stalls,
        rates: first.rates,
        busy_poll_used: args.busy_poll == BusyPollMode::On,
        busy_poll: sweeps.next(),
        endpoint_chunk_lateness_us: server.chunk_lateness(),
    };
    let path = run_dir.write_json("selftest.json", &json)?;
    print_json(&json, args.max_added_delay_us);
    let late = json.endpoint_chunk_lateness_us;
    crate::outln!(
        "The endpoint's own lateness (send − deadline, {} chunks): p50 {} µs, p99 {} µs, max {} µs",
        late.chunks,
        late.p50_us,
        late.p99_us,
        late.max_us
    );
    crate::outln!("Results saved to: {}", path.display());
    Ok(0)
}

fn validate(args: &SelftestArgs) -> Result<()> {
    use crate::foundation::flag_ranges::{check, count, plan_size, rate, seconds, Low};
    if args.rates.is_empty() {
        return Err(UserError::input("--rates: expected one or more rates"));
    }
    seconds("--duration", args.duration)?;
    for &r in &args.rates {
        rate("--rates", r)?;
        plan_size("--rates", r, args.duration)?;
    }
    count(
        "--output-tokens",
        args.output_tokens,
        1,
        100_000,
        "a token count",
    )?;
    if let Some(n) = args.client_cores {
        count("--client-cores", n as u64, 1, 4096, "a number of cores")?;
    }
    let delay = args.max_added_delay_us;
    check(
        "--max-added-delay-us",
        delay,
        Low::Above(0.0),
        1e9,
        "microseconds",
    )?;
    Ok(())
}

/// The CPUs: the client's (the last ones) and the endpoint's (the rest).
struct Cpus {
    total: usize,
    client: Vec<core_affinity::CoreId>,
    endpoint: Vec<core_affinity::CoreId>,
}

impl Cpus {
    fn split(client_cores: Option<usize>) -> Self {
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let n = cpus.len().max(1);
        let client_n = client_cores.unwrap_or((n / 2).max(1));
        let (client, endpoint) = if n >= 2 && client_n < n {
            (cpus[n - client_n..].to_vec(), cpus[..n - client_n].to_vec())
        } else {
            eprintln!("note: one CPU for both the client and the endpoint: they share it");
            (cpus.clone(), cpus.clone())
        };
        Self {
            total: n,
            client,
            endpoint,
        }
    }
}

pub(crate) fn ids(v: &[core_affinity::CoreId]) -> Vec<usize> {
    v.iter().map(|c| c.id).collect()
}

/// Where the client connects, and the one request it sends (short, counted streams).
pub(crate) fn client_target(url: &str, output_tokens: u64) -> Result<(Target, Prepared)> {
    let endpoint = Endpoint::parse(url).map_err(UserError::input)?;
    let samples = crate::workload::dataset::parse(
        br#"[{"prompt_content":"You are a helpful assistant.","cut_chat_history":[{"role":"user","content":"Count to eight."}]}]"#,
        "selftest",
    )?;
    let template = RequestTemplate::new(
        crate::cli::Api::Chat,
        &endpoint,
        "selftest",
        "selftest",
        output_tokens as u32,
    );
    let requests = render_samples(&template, &samples)?;
    let addrs = endpoint.resolve().map_err(UserError::input)?;
    let target = Target {
        addrs: addrs.into(),
        tls: None,
    };
    Ok((target, requests))
}

/// The client's cores, pinned to `cpus`.
pub(crate) fn start_client(
    cpus: &[core_affinity::CoreId],
    target: &Target,
    requests: &Prepared,
    busy: bool,
) -> Result<Engine> {
    Engine::start(EngineConfig {
        cores: cpus.len(),
        targets: vec![target.clone()],
        requests: requests.clone(),
        max_connections: crate::foundation::os_limits::connection_budget(
            crate::foundation::os_limits::raise_nofile().0,
            cpus.len(),
        ),
        timeout: Duration::from_secs(10),
        max_concurrency: None,
        save_requests: false,
        busy_poll: busy,
        recv_path: crate::engine::RecvPath::from_env().map_err(UserError::input)?,
        pin: Some(cpus.to_vec()),
        slo: Default::default(),
        timeouts: Default::default(),
        sessions: None,
        cancels: None,
        reading: crate::engine::Reading::of(crate::cli::Api::Chat, 1),
    })
    .map_err(UserError::runtime)
}

/// The machine's own stalls on the client CPUs, then the sweep.
fn sweep_with_stalls(
    engine: &Engine,
    args: &SelftestArgs,
    client: &[core_affinity::CoreId],
    busy: bool,
) -> Result<Sweep> {
    let mode = if busy { "with" } else { "without" };
    eprintln!("selftest: {mode} busy polling");
    let stalls = machine_stalls("selftest", client, args.max_added_delay_us);
    let mut sweep = sweep(engine, args)?;
    sweep.machine_stalls = stalls;
    Ok(sweep)
}

/// The machine's own stalls on `cpus` (a bare spin for 1 s each), each printed, by `who`,
/// against the bound `bound_us`.
fn machine_stalls(who: &str, cpus: &[core_affinity::CoreId], bound_us: f64) -> Vec<CpuStalls> {
    let stalls = stalls::probe(cpus, Duration::from_secs(1), bound_us);
    for s in &stalls {
        eprintln!(
            "{who}: the machine alone (a bare spin for 1 s), {}",
            stalls::describe(s, bound_us)
        );
    }
    stalls
}

/// Both sweeps' tables.
fn print_json(json: &SelftestJson, max_added_delay_us: f64) {
    crate::outln!();
    let first = if json.busy_poll_used {
        "with --busy-poll"
    } else {
        "without --busy-poll"
    };
    print_sweep(
        first,
        &json.rates,
        json.headline_qps,
        &json.machine_stalls,
        max_added_delay_us,
    );
    if let Some(b) = &json.busy_poll {
        print_sweep(
            "with --busy-poll",
            &b.rates,
            b.headline_qps,
            &b.machine_stalls,
            max_added_delay_us,
        );
    }
}

/// Runs every rate on `engine`, stopping once the client cannot reach 90% of a rate.
fn sweep(engine: &Engine, args: &SelftestArgs) -> Result<Sweep> {
    let mut rates = Vec::new();
    let mut expected = 0.05;
    for (i, &qps) in args.rates.iter().enumerate() {
        let spec = level_spec(i, args.rates.len(), qps, args.duration, Arrival::Poisson);
        let (l, _) = measure_level(engine, &spec, expected, true)?;
        expected = l.e2e_latency.get("p90").unwrap_or(expected);
        let r = rate_result(&l);
        eprintln!(
            "      added delay p50 {} µs, p99 {} µs; client CPU {} µs/token",
            r.client_added_delay_us
                .as_ref()
                .map_or("-".into(), |d| format!("{:.0}", d.p50)),
            r.client_added_delay_us
                .as_ref()
                .map_or("-".into(), |d| format!("{:.0}", d.p99)),
            r.client_cpu_us_per_token
                .map_or("-".into(), |c| format!("{c:.1}"))
        );
        let hopeless = r.actual_qps < 0.9 * qps;
        rates.push(r);
        if hopeless {
            eprintln!("      the client reached under 90% of this rate: stopping the sweep here");
            break;
        }
    }
    Ok(Sweep {
        machine_stalls: Vec::new(),
        headline_qps: headline(&rates, args.max_added_delay_us),
        rates,
    })
}

/// The self-test judges the client by absolute bounds only: send-lag p99 within 1 ms and the
/// rate rule (no share rule).
fn thresholds() -> Thresholds {
    Thresholds {
        max_send_lag_p99_us: 1000.0,
        max_send_lag_share: 0.0,
        min_rate_ratio: 0.99,
    }
}

/// Level `index` of `levels`: `qps` for `duration_s`, one sample, no warm-up, default
/// percentiles, no progress line.
fn level_spec(
    index: usize,
    levels: usize,
    qps: f64,
    duration_s: f64,
    arrival: Arrival,
) -> LevelSpec<'static> {
    static PCTS: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    LevelSpec {
        index,
        levels,
        qps,
        duration_s,
        warmup_s: 0.0,
        arrival,
        burstiness: 1.0,
        seed: arrivals::level_seed(42, index),
        warmup_connections: None,
        max_concurrency: None,
        percentiles: PCTS.get_or_init(|| json_percentiles(&[])),
        thresholds: thresholds(),
        prompts: None,
        replay: None,
        progress: crate::report::progress::Mode::Off,
        shard: None,
        start: None,
        replicas: (crate::cli::EndpointStrategy::RoundRobin, &[]),
        session_turns: None,
        embedding_batch: None,
        cancels: None,
    }
}

fn rate_result(l: &LevelStats) -> RateResult {
    RateResult {
        target_qps: l.qps_target,
        actual_qps: l.actual_qps,
        send_lag_us: l.send_lag_us.clone(),
        client_added_delay_us: l.client_added_delay_us.clone(),
        client_cpu_us_per_token: l.client_cpu_us_per_token,
        client_cpu_us_per_request: l.client_cpu_us_per_request,
        success_rate: l.success_rate,
        client_limited: l.client.client_limited,
        client_limited_reasons: l.client.client_limited_reasons.clone(),
    }
}

fn print_sweep(
    title: &str,
    rates: &[RateResult],
    headline: Option<f64>,
    stalls: &[CpuStalls],
    max_us: f64,
) {
    crate::outln!("SELFTEST {title}");
    crate::outln!(
        "{:<10} {:<10} {:<8} {:<22} {:<26} {:<10} Client-limited",
        "Target",
        "Actual",
        "OK%",
        "Send lag p50/p99 (µs)",
        "Added delay p50/p99/max",
        "CPU µs/tok",
    );
    for r in rates {
        let d = r
            .client_added_delay_us
            .as_ref()
            .map_or("-".to_string(), |d| {
                format!("{:.0}/{:.0}/{:.0}", d.p50, d.p99, d.max)
            });
        crate::outln!(
            "{:<10} {:<10} {:<8} {:<22} {:<26} {:<10} {}",
            format!("{:.0}", r.target_qps),
            format!("{:.1}", r.actual_qps),
            format!("{:.1}", r.success_rate),
            format!("{:.1}/{:.1}", r.send_lag_us.p50, r.send_lag_us.p99),
            d,
            r.client_cpu_us_per_token
                .map_or("-".to_string(), |c| format!("{c:.2}")),
            if r.client_limited { "yes" } else { "no" }
        );
    }
    match headline {
        Some(q) => crate::outln!(
            "Headline: {q:.0} requests/s (highest rate with added-delay p99 under {max_us:.0} µs, all requests OK, not client-limited)\n"
        ),
        None => crate::outln!(
            "Headline: none of these rates kept the added-delay p99 under {max_us:.0} µs with every request OK and the client on schedule\n"
        ),
    }
    for s in stalls.iter().filter(|s| s.late_share > 0.01) {
        crate::outln!(
            "Note: this machine stalled by itself beyond the headline's bound ({}): at over 1% of instants no client can read within {max_us:.0} µs on that CPU, so a p99 under it was out of reach during this sweep; run it again when the machine is quieter.\n",
            stalls::describe(s, max_us)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(q: f64, p99: f64, limited: bool) -> RateResult {
        RateResult {
            target_qps: q,
            actual_qps: q,
            send_lag_us: SendLag {
                p50: 0.0,
                p99: 0.0,
                max: 0.0,
            },
            client_added_delay_us: Some(SendLag {
                p50: p99 / 2.0,
                p99,
                max: p99,
            }),
            client_cpu_us_per_token: Some(1.0),
            client_cpu_us_per_request: Some(8.0),
            success_rate: 100.0,
            client_limited: limited,
            client_limited_reasons: Vec::new(),
        }
    }

    #[test]
    fn headline_is_the_highest_rate_meeting_every_condition() {
        let rates = [
            rate(100.0, 40.0, false),
            rate(1000.0, 90.0, false),
            rate(2000.0, 150.0, false),
            rate(5000.0, 80.0, true),
        ];
        assert_eq!(headline(&rates, 100.0), Some(1000.0));
        assert_eq!(headline(&rates[2..], 100.0), None);
    }
}
