//! One rate of the ceiling's search: the endpoint and the client for a setup, one level measured
//! with both sides' CPU and the endpoint's lateness, and the bare floor at the same load.

use std::sync::Arc;

use super::search::chunks_per_request;
use super::{Probe, Setup, ITL_MS, MAX_TTFT_EXCESS_MS, OUTPUT_TOKENS, TTFT_MS};
use crate::commands::bench::measure_level;
use crate::commands::mock::{self, MockConfig, MockServer};
use crate::commands::selftest::floor::{self, Floor, FloorConfig};
use crate::engine::Engine;
use crate::foundation::error::{Result, UserError};
use crate::http::conn::Target;
use crate::stats::LevelStats;
use crate::workload::prepared::Prepared;

/// The endpoint for one setup, on `cpu`, non-busy unless `busy`.
pub fn start_endpoint(
    setup: Setup,
    cpu: core_affinity::CoreId,
    busy: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<MockServer> {
    mock::start(MockConfig {
        host: "127.0.0.1".into(),
        port: 0,
        ttft_ms: TTFT_MS,
        itl_ms: ITL_MS,
        output_tokens: OUTPUT_TOKENS,
        tokens_per_chunk: setup.tokens_per_chunk,
        threads: 1,
        busy_poll: busy,
        pin: vec![cpu],
        tls,
        ..MockConfig::default()
    })
    .map_err(|e| UserError::input(format!("cannot start the built-in endpoint: {e}")))
}

/// Runs one rate and judges both sides.
pub fn probe(
    engine: &Engine,
    server: &MockServer,
    setup: Setup,
    qps: f64,
    duration_s: f64,
    busy: bool,
) -> Result<Probe> {
    let mark = server.lateness_mark();
    let (cpu0, spin0) = (server.cpu_ns(), server.spin_ns());
    let started = std::time::Instant::now();
    let spec = crate::commands::selftest::level_spec(
        0,
        1,
        qps,
        duration_s,
        crate::workload::arrivals::Arrival::Constant,
    );
    let (l, _) = measure_level(engine, &spec, super::stream_s(), false)?;
    let wall_s = started.elapsed().as_secs_f64();
    let late = server.chunk_lateness_since(&mark);
    let spin_s = server.spin_ns().saturating_sub(spin0) as f64 / 1e9;
    // The endpoint's work: its threads' CPU minus the busy-poll loop's idle rounds.
    let cpu_s = server
        .cpu_ns()
        .zip(cpu0)
        .map(|(b, a)| (b.saturating_sub(a) as f64 / 1e9 - spin_s).max(0.0));
    let chunks_received = l.successful_requests * chunks_per_request(setup);
    let per = |s: f64, n: u64| (n > 0).then(|| s * 1e6 / n as f64);
    let ttft_p99_ms = l.ttft.get("p99").map(|s| s * 1000.0);
    let reasons = client_reasons(&l, ttft_p99_ms, late.p99_us);
    Ok(Probe {
        qps,
        actual_qps: l.actual_qps,
        chunks_per_sec: late.chunks as f64 / l.duration_s.max(1e-9),
        endpoint_on_schedule: late.p99_us <= super::max_lateness_us(busy),
        endpoint_lateness_us: late,
        endpoint_cpu_us_per_chunk: cpu_s.and_then(|c| per(c, late.chunks)),
        endpoint_busy_pct: cpu_s.map(|c| c / wall_s * 100.0),
        endpoint_spin_s: spin_s,
        client_ok: reasons.is_empty(),
        client_reasons: reasons,
        // The spin is wall time, the CPU is CPU time: a vCPU preempted mid-spin can make the
        // difference negative at a low rate.
        client_work_us_per_chunk: per((l.client_cpu_s - l.pacer_spin_s).max(0.0), chunks_received),
        client_cpu_s: l.client_cpu_s,
        client_spin_s: l.pacer_spin_s,
        ttft_p99_ms,
        send_lag_p99_us: l.send_lag_us.p99,
        success_rate: l.success_rate,
    })
}

/// Where the client fell short of the criteria at this level.
fn client_reasons(l: &LevelStats, ttft_p99_ms: Option<f64>, endpoint_late_us: u64) -> Vec<String> {
    let mut why = l.client.client_limited_reasons.clone();
    if l.client.client_limited && why.is_empty() {
        why.push("client-limited".into());
    }
    let allowed = TTFT_MS + MAX_TTFT_EXCESS_MS + endpoint_late_us as f64 / 1000.0;
    match ttft_p99_ms {
        Some(t) if t > allowed => why.push(format!(
            "TTFT p99 {t:.1} ms is over {allowed:.1} ms (true TTFT {TTFT_MS:.0} ms + {MAX_TTFT_EXCESS_MS:.0} ms + the endpoint's lateness p99)"
        )),
        None => why.push("no TTFT".into()),
        _ => {}
    }
    if l.success_rate < 100.0 {
        why.push(format!("success rate {:.2}%", l.success_rate));
    }
    why
}

/// The bare floor at `chunks_per_sec`, over as many connections as the streams in flight at
/// `qps`, sender on the endpoint's CPU and reader on the client's.
pub fn measure_floor(
    qps: f64,
    chunks_per_sec: f64,
    setup: Setup,
    cpus: (core_affinity::CoreId, core_affinity::CoreId),
    seconds: f64,
) -> Option<Floor> {
    let in_flight = qps * super::stream_s();
    floor::measure(&FloorConfig {
        connections: (in_flight.ceil() as usize).clamp(1, 4096),
        rate: chunks_per_sec.round().max(1.0) as u64,
        seconds,
        // A content chunk on the wire: ~200 bytes with one token, ~5 more per further token.
        message_bytes: 200 + 5 * (setup.tokens_per_chunk.max(1) as usize - 1),
        busy: false,
        sender_cpu: Some(cpus.0),
        reader_cpu: Some(cpus.1),
    })
    .map_err(|e| eprintln!("selftest: the floor could not run: {e}"))
    .ok()
}

/// The client's request for this endpoint (one short sample, counted streams).
pub fn client_for(
    server: &MockServer,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
) -> Result<(Target, Prepared)> {
    let (mut target, requests) =
        crate::commands::selftest::client_target(&server.url(), OUTPUT_TOKENS)?;
    target.tls = tls;
    Ok((target, requests))
}

/// The TLS files of the run (a fresh CA and server certificate in a temporary folder, removed
/// when this is dropped), for the TLS setup.
pub struct Tls {
    dir: std::path::PathBuf,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl Tls {
    pub fn new() -> Result<Self> {
        use crate::http::tls::{client_config, server_config, write_self_signed};
        let dir = std::env::temp_dir().join(format!("qpsbench-ceiling-{}", std::process::id()));
        let files = write_self_signed(&dir, &["127.0.0.1"], (2099, 12, 31))
            .and_then(|f| {
                Ok((
                    server_config(&f.server_cert, &f.server_key)?,
                    client_config(Some(&f.ca_cert), false)?,
                ))
            })
            .map_err(|e| UserError::runtime(format!("selftest --ceiling: TLS setup: {e}")));
        let (server, client) = files.inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        Ok(Self {
            dir,
            server,
            client,
        })
    }
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One setup's search on a fresh endpoint and client; returns it with the client's I/O driver.
pub fn run_setup(
    setup: Setup,
    cpus: (core_affinity::CoreId, core_affinity::CoreId),
    busy: bool,
    duration_s: f64,
    tls: &Tls,
) -> Result<(super::Ceiling, &'static str)> {
    let server = start_endpoint(setup, cpus.0, busy, setup.tls.then(|| tls.server.clone()))?;
    let client_tls = match setup.tls {
        true => Some((
            tls.client.clone(),
            crate::http::tls::server_name("127.0.0.1").map_err(UserError::runtime)?,
        )),
        false => None,
    };
    let (target, requests) = client_for(&server, client_tls)?;
    let engine = crate::commands::selftest::start_client(&[cpus.1], &target, &requests, busy)?;
    let driver = engine.driver.name();
    let receive_path = engine.recv_path;
    eprintln!(
        "selftest --ceiling: {} token(s) per chunk, {}",
        setup.tokens_per_chunk,
        if setup.tls { "TLS" } else { "plain TCP" }
    );
    let mut probes = Vec::new();
    let start = if setup.tokens_per_chunk > 1 {
        500.0
    } else {
        250.0
    };
    let search = super::bisect(start, |q| {
        let p = probe(&engine, &server, setup, q, duration_s, busy)?;
        eprintln!("{}", probe_line(&p));
        let o = super::Outcome {
            endpoint_ok: p.endpoint_on_schedule,
            client_ok: p.client_ok,
        };
        probes.push(p);
        Ok(o)
    })?;
    // Both sides stop (a busy-polling endpoint stops spinning) before the floor runs on
    // their CPUs.
    drop(engine);
    drop(server);
    let mut c = super::conclude(setup, &search, probes);
    c.receive_path = receive_path;
    let top = c
        .probes
        .iter()
        .filter(|p| p.endpoint_on_schedule)
        .max_by(|a, b| a.qps.total_cmp(&b.qps));
    if let (false, Some(p)) = (setup.tls, top) {
        c.floor = measure_floor(p.qps, p.chunks_per_sec, setup, cpus, duration_s.max(1.0));
    }
    Ok((c, driver))
}

/// One rate's figures, as the search goes.
fn probe_line(p: &Probe) -> String {
    let opt = |v: Option<f64>, d: usize| v.map_or("-".into(), |x| format!("{x:.d$}"));
    format!(
        "  {:>6.0} QPS: endpoint {:.0} chunks/s, {} µs/chunk, busy {}%, lateness p99 {} µs [{}]; client work {} µs/chunk (spin {:.2} s), send lag p99 {:.0} µs, TTFT p99 {} ms [{}]",
        p.qps,
        p.chunks_per_sec,
        opt(p.endpoint_cpu_us_per_chunk, 2),
        opt(p.endpoint_busy_pct, 0),
        p.endpoint_lateness_us.p99_us,
        if p.endpoint_on_schedule { "on schedule" } else { "late" },
        opt(p.client_work_us_per_chunk, 2),
        p.client_spin_s,
        p.send_lag_p99_us,
        opt(p.ttft_p99_ms, 1),
        if p.client_ok { "ok".to_string() } else { p.client_reasons.join("; ") }
    )
}
