//! `qpsbench selftest --ceiling`: how far one core of this machine goes, at both ends. The
//! built-in endpoint runs on the first CPU and the client on the last, one core each; both
//! stream 32-token answers (TTFT 50 ms, one token every 5 ms) at constant arrivals, and a
//! bisection over the request rate finds:
//!
//! - the **endpoint's ceiling**: content chunks per second it sends on schedule (its own chunk
//!   lateness p99 within [`MAX_LATENESS_P99_US`] busy-polling, [`MAX_LATENESS_P99_IDLE_US`]
//!   not);
//! - the **client's ceiling**: requests per second it drives without falling behind (not
//!   client-limited: send-lag p99 ≤ 1 ms and the rate rule), with TTFT p99 within
//!   [`MAX_TTFT_EXCESS_MS`] of the true TTFT plus the endpoint's own lateness p99, and every
//!   request OK — counted only at rates where the endpoint kept its schedule, so a slow
//!   endpoint is never blamed on the client.
//!
//! The search starts low and doubles while both sides pass; it looks below the first rate at
//! most twice, since below some rate an idle machine's wake-ups make both sides *slower* per
//! chunk, not faster (on a VM, waking a halted vCPU costs tens of µs). A rate that fails is
//! tried once more, and fails only if it fails again (a VM stalls by itself now and then).
//!
//! Each rate's CPU per chunk is printed for both sides: the endpoint's threads' CPU, and the
//! client's CPU minus the pacer's spin (the client's work). The bare floor ([`super::floor`]) is
//! measured in the same run at the endpoint's ceiling, for comparison. The search runs for 1 and
//! 16 tokens per chunk, and over TLS.

mod probe;
mod search;

use serde::Serialize;

use super::floor::Floor;
use crate::commands::mock::lateness::LatenessSummary;
pub use search::{bisect, conclude, Outcome, Search};

/// The streams: output tokens, TTFT and inter-token latency of the built-in endpoint.
pub const OUTPUT_TOKENS: u64 = 32;
pub const TTFT_MS: f64 = 50.0;
pub const ITL_MS: f64 = 5.0;
/// With `--busy-poll on`, the endpoint is on schedule while its chunks' lateness p99 stays
/// within this.
pub const MAX_LATENESS_P99_US: u64 = 1000;
/// Without busy polling, a halted vCPU wakes late and a VM's host may deliver timers only on a
/// ~1 ms tick of its own, at any load: the endpoint is on schedule while its lateness p99 stays
/// within this (a saturated endpoint falls behind by far more, and ever more).
pub const MAX_LATENESS_P99_IDLE_US: u64 = 5000;
/// The client's TTFT p99 may exceed the true TTFT by this much, beyond the endpoint's own
/// lateness p99 at that rate (what the endpoint added is not the client's).
pub const MAX_TTFT_EXCESS_MS: f64 = 2.0;

/// One stream from its request to its last chunk, seconds (the level's expected latency, and
/// with the rate, the streams in flight).
pub fn stream_s() -> f64 {
    (TTFT_MS + ITL_MS * OUTPUT_TOKENS as f64) / 1000.0
}

/// One way of streaming: tokens per chunk, and plain or TLS.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub tokens_per_chunk: u64,
    pub tls: bool,
}

/// The setups the ceiling runs, in order.
pub const SETUPS: [Setup; 3] = [
    Setup {
        tokens_per_chunk: 1,
        tls: false,
    },
    Setup {
        tokens_per_chunk: 16,
        tls: false,
    },
    Setup {
        tokens_per_chunk: 1,
        tls: true,
    },
];

/// What the ceilings are held to (`selftest.json` → `criteria`).
#[derive(Debug, Clone, Serialize)]
pub struct Criteria {
    pub output_tokens: u64,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    pub arrival: &'static str,
    pub endpoint_lateness_p99_max_us: u64,
    /// The client's TTFT p99 may exceed `ttft_ms` by `client_ttft_p99_max_excess_ms` plus the
    /// endpoint's lateness p99 at that rate.
    pub client_ttft_allowance_includes_endpoint_lateness: bool,
    pub client_send_lag_p99_max_us: f64,
    pub client_min_rate_ratio: f64,
    pub client_ttft_p99_max_excess_ms: f64,
    pub client_success_rate_min: f64,
    pub client_counted_only_where_endpoint_on_schedule: bool,
}

pub fn criteria(busy: bool) -> Criteria {
    let t = super::thresholds();
    Criteria {
        output_tokens: OUTPUT_TOKENS,
        ttft_ms: TTFT_MS,
        itl_ms: ITL_MS,
        arrival: "constant",
        endpoint_lateness_p99_max_us: max_lateness_us(busy),
        client_ttft_allowance_includes_endpoint_lateness: true,
        client_send_lag_p99_max_us: t.max_send_lag_p99_us,
        client_min_rate_ratio: t.min_rate_ratio,
        client_ttft_p99_max_excess_ms: MAX_TTFT_EXCESS_MS,
        client_success_rate_min: 100.0,
        client_counted_only_where_endpoint_on_schedule: true,
    }
}

/// The endpoint's on-schedule bound for the mode.
pub fn max_lateness_us(busy: bool) -> u64 {
    if busy {
        MAX_LATENESS_P99_US
    } else {
        MAX_LATENESS_P99_IDLE_US
    }
}

/// One rate tried.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub qps: f64,
    pub actual_qps: f64,
    /// Content chunks the endpoint sent per second of the level.
    pub chunks_per_sec: f64,
    pub endpoint_on_schedule: bool,
    pub endpoint_lateness_us: LatenessSummary,
    /// The endpoint's threads' CPU minus their busy-poll spin, per content chunk sent.
    pub endpoint_cpu_us_per_chunk: Option<f64>,
    /// That CPU (work only) over the level's wall time.
    pub endpoint_busy_pct: Option<f64>,
    /// With `--busy-poll on`: the endpoint's spin, left out of its CPU figures.
    pub endpoint_spin_s: f64,
    pub client_ok: bool,
    /// Why the client failed the criteria, in words (empty when it met them).
    pub client_reasons: Vec<String>,
    /// The client's CPU minus the pacer's spin, per content chunk received.
    pub client_work_us_per_chunk: Option<f64>,
    pub client_cpu_s: f64,
    pub client_spin_s: f64,
    pub ttft_p99_ms: Option<f64>,
    pub send_lag_p99_us: f64,
    pub success_rate: f64,
}

/// One setup's search (`selftest.json` → `setups[]`).
#[derive(Debug, Clone, Serialize)]
pub struct Ceiling {
    pub tokens_per_chunk: u64,
    pub tls: bool,
    pub chunks_per_request: u64,
    /// The highest chunk rate tried at which the endpoint kept its schedule.
    pub endpoint_chunks_per_sec_per_core: Option<f64>,
    /// False when the endpoint kept its schedule at every rate tried: the figure above is then
    /// only a lower bound (the client ran out first).
    pub endpoint_ceiling_found: bool,
    /// The highest request rate at which both sides met their criteria.
    pub ceiling_qps_per_core: Option<f64>,
    /// False when the search ended on the endpoint running out: the client's ceiling is then
    /// only a lower bound.
    pub client_ceiling_found: bool,
    /// How the client read responses (`io_uring multishot recv`, or `monoio reads` over TLS).
    pub receive_path: &'static str,
    pub verdict: String,
    pub probes: Vec<Probe>,
    /// The bare floor at the endpoint's ceiling (plain TCP; none for TLS).
    pub floor: Option<Floor>,
}

/// `selftest.json` of a ceiling run.
#[derive(Serialize)]
struct CeilingJson {
    timestamp: String,
    qpsbench_version: &'static str,
    machine: super::Machine,
    duration_s: f64,
    busy_poll: bool,
    /// Both CPUs' own stalls, probed for 1 s before the searches: a machine that stalls by
    /// itself for over 1 ms makes the 1 ms bounds out of reach, whatever the client.
    machine_stalls: Vec<crate::commands::selftest::stalls::CpuStalls>,
    criteria: Criteria,
    /// The client's ceiling with 1 token per chunk over plain TCP: QPS of 32-token streams on
    /// one core (see `setups[0]` for whether it is a lower bound).
    ceiling_qps_per_core: Option<f64>,
    /// The endpoint's ceiling with 1 token per chunk over plain TCP: content chunks/s on one core.
    endpoint_chunks_per_sec_per_core: Option<f64>,
    setups: Vec<Ceiling>,
}

/// `qpsbench selftest --ceiling`: every setup's search, `selftest.json`, the console summary.
pub fn run(args: &crate::cli::SelftestArgs) -> crate::foundation::error::Result<i32> {
    use crate::foundation::error::UserError;
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let (Some(&endpoint_cpu), Some(&client_cpu)) = (ids.first(), ids.last()) else {
        return Err(UserError::input(
            "selftest --ceiling: no CPU this process may use",
        ));
    };
    if ids.len() < 2 {
        return Err(UserError::input(
            "selftest --ceiling needs two CPUs (the endpoint on one, the client on another); this process may use one",
        ));
    }
    let busy = args.busy_poll == crate::cli::BusyPollMode::On;
    let started = crate::foundation::clock::LocalTime::now();
    let run_dir = crate::report::results::RunDir::create(&args.results_dir, &started)?;
    eprintln!(
        "selftest --ceiling: endpoint on CPU {}, client on CPU {}, {}; {} s per rate; results in {}",
        endpoint_cpu.id,
        client_cpu.id,
        if busy { "both busy-polling" } else { "neither busy-polling" },
        args.duration,
        run_dir.path.display()
    );
    let stalls = super::machine_stalls("selftest --ceiling", &[endpoint_cpu, client_cpu], 1000.0);
    let tls = probe::Tls::new()?;
    let mut setups = Vec::new();
    let mut driver = "io_uring";
    for setup in SETUPS {
        let (c, d) =
            probe::run_setup(setup, (endpoint_cpu, client_cpu), busy, args.duration, &tls)?;
        driver = d;
        print_setup(&c);
        setups.push(c);
    }
    let json = CeilingJson {
        timestamp: started.iso(),
        qpsbench_version: env!("CARGO_PKG_VERSION"),
        machine: super::Machine {
            cpus: ids.len(),
            client_cores: vec![client_cpu.id],
            endpoint_cores: vec![endpoint_cpu.id],
            io_driver: driver,
            receive_path: setups[0].receive_path,
        },
        duration_s: args.duration,
        busy_poll: busy,
        machine_stalls: stalls,
        criteria: criteria(busy),
        ceiling_qps_per_core: setups[0].ceiling_qps_per_core,
        endpoint_chunks_per_sec_per_core: setups[0].endpoint_chunks_per_sec_per_core,
        setups,
    };
    let path = run_dir.write_json("selftest.json", &json)?;
    crate::outln!("Results saved to: {}", path.display());
    Ok(0)
}

/// One setup's ceilings, and the floor beside them.
fn print_setup(c: &Ceiling) {
    let at_least = |found: bool| if found { "" } else { "at least " };
    crate::outln!(
        "\nCEILING, {} token(s) per chunk, {} (client: {}):",
        c.tokens_per_chunk,
        if c.tls { "TLS" } else { "plain TCP" },
        c.receive_path
    );
    match c.endpoint_chunks_per_sec_per_core {
        Some(x) => crate::outln!(
            "  endpoint: {}{x:.0} chunks/s per core on schedule",
            at_least(c.endpoint_ceiling_found)
        ),
        None => crate::outln!("  endpoint: off schedule at every rate tried"),
    }
    match c.ceiling_qps_per_core {
        Some(q) => crate::outln!(
            "  client:   {}{q:.0} QPS per core ({} chunks/s)",
            at_least(c.client_ceiling_found),
            q * c.chunks_per_request as f64
        ),
        None => crate::outln!("  client:   no rate met the criteria"),
    }
    crate::outln!("  {}", c.verdict);
    if let Some(f) = &c.floor {
        crate::outln!(
            "  floor at {} messages/s over {} connections: bare sender {:.2} µs/message, bare reader {:.2} µs/read ({:.2} µs/message)",
            f.rate, f.connections, f.sender_us_per_message, f.reader_cpu_us_per_read, f.reader_cpu_us_per_message
        );
    }
}
