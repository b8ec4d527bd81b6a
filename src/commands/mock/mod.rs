//! The built-in endpoint (`qpsbench serve-mock`): an OpenAI-compatible streaming chat server on
//! the same runtime as the client, used by the demo, the tests, the benches, and by users who
//! want to validate a load box before pointing it at a real server.
//!
//! Data flow: [`start`] binds a loopback (or any) address and runs `threads` accept loops, each on
//! its own monoio runtime; `handler` serves each connection (keep-alive, TCP_NODELAY), and
//! `capacity` decides how fast a stream may go given the current load.
//!
//! Without `--capacity-tokens-per-sec` timing is exactly what the flags say: the first content
//! chunk `ttft_ms` after the request arrived, then one chunk of `tokens_per_chunk` tokens every
//! `tokens_per_chunk × itl_ms`, scheduled on absolute deadlines so delays do not accumulate.
//! Each chunk leaves at its deadline or after, never before: up to one tick of the thread's one
//! timer late (`rt::timer`, 50 µs), plus however late the machine delivers that timer. The
//! endpoint records by how much (`lateness`).

mod ask;
mod capacity;
mod events;
pub mod fault;
mod handler;
pub mod lateness;
mod metrics;
pub mod prefix_cache;
mod request;
mod wire;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use capacity::Capacity;

use crate::foundation::error::UserError;

/// How the built-in endpoint behaves.
#[derive(Debug, Clone)]
pub struct MockConfig {
    pub host: String,
    pub port: u16,
    /// Time to first content token, ms.
    pub ttft_ms: f64,
    /// Time per output token after the first, ms.
    pub itl_ms: f64,
    /// Output tokens per response (capped by the request's `max_tokens`).
    pub output_tokens: u64,
    /// Tokens per content chunk.
    pub tokens_per_chunk: u64,
    /// In-flight requests beyond this get HTTP 503 (0: unlimited).
    pub max_concurrency: usize,
    /// At most this many requests generate at once; the others wait in a FIFO queue (0: all).
    pub max_num_seqs: usize,
    /// Send a role-only first chunk (`{"role":"assistant","content":""}`) right away, as vLLM does.
    pub role_chunk: bool,
    /// Never send a usage chunk, even when asked for one.
    pub no_usage: bool,
    /// Shared output-token budget per second across all streams (opt-in capacity model).
    pub capacity_tokens_per_sec: Option<f64>,
    /// Accept loops (each its own thread and runtime).
    pub threads: usize,
    /// Stamp every content chunk with the endpoint's send time (`qpsbench_sent_ns`, monotonic
    /// clock), so a client on the same machine can measure its own added delay (selftest).
    pub stamp_chunks: bool,
    /// The endpoint's threads never sleep in the kernel (io_uring only): a vCPU that halts
    /// between chunks wakes late and slow, which would show as jitter in the chunks' send
    /// times. The self-test spins its endpoint so that what it measures is the client's.
    pub busy_poll: bool,
    /// Answer HTTP 400 to `stream_options` keys other than `include_usage` (like hosted APIs).
    pub strict_stream_options: bool,
    /// Fault modes (`--fault`), drawn per request in order.
    pub faults: Vec<fault::FaultSpec>,
    /// Pin the accept loops' threads to these cores (round robin); empty: not pinned.
    pub pin: Vec<core_affinity::CoreId>,
    /// Serve HTTPS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The model `GET /v1/models` lists.
    pub served_model_name: String,
    /// Added to TTFT per 1000 prompt tokens, ms (prefill: longer prompts wait longer).
    pub prefill_ms_per_1k_tokens: f64,
    /// Keep a prefix cache (`prefix_cache`): answers report cached tokens, and only uncached
    /// tokens cost prefill time.
    pub prefix_cache: bool,
    /// `--log-requests`: each streamed answer's request body and text, one JSON line each.
    pub log_requests: Option<std::path::PathBuf>,
    /// `--reasoning-tokens`: chat, Responses and Messages answers stream this many reasoning
    /// tokens first.
    pub reasoning_tokens: u64,
    /// `--fail-first`: the first this many requests get HTTP 503.
    pub fail_first: u64,
    /// `--require-key`: requests without this key get HTTP 401.
    pub require_key: Option<String>,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            ttft_ms: 50.0,
            itl_ms: 10.0,
            output_tokens: 128,
            tokens_per_chunk: 1,
            max_concurrency: 0,
            max_num_seqs: 0,
            role_chunk: false,
            no_usage: false,
            capacity_tokens_per_sec: None,
            threads: 1,
            tls: None,
            stamp_chunks: false,
            busy_poll: false,
            strict_stream_options: false,
            faults: Vec::new(),
            pin: Vec::new(),
            served_model_name: "qpsbench-mock".into(),
            prefill_ms_per_1k_tokens: 0.0,
            prefix_cache: false,
            log_requests: None,
            reasoning_tokens: 0,
            fail_first: 0,
            require_key: None,
        }
    }
}

/// State shared by all of the endpoint's threads (a few atomics, touched once per request).
pub(crate) struct State {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub cfg: MockConfig,
    pub active: AtomicUsize,
    pub next_id: AtomicU64,
    /// Draws of `--fault` (one per request).
    pub fault_draws: AtomicU64,
    /// Requests admitted so far, for `--fail-first`.
    pub admitted: AtomicU64,
    pub capacity: Capacity,
    /// `--max-num-seqs`'s queue, and the counters `/metrics` exports.
    pub scheduler: metrics::Scheduler,
    /// Every content chunk's send time − its deadline.
    pub lateness: lateness::Lateness,
    /// `--prefix-cache`.
    pub prefix_cache: Option<prefix_cache::PrefixCache>,
    /// With `busy_poll`: the time the threads' spin loops had nothing to do, ns.
    pub spin_ns: AtomicU64,
    /// `--log-requests`, open for appending.
    pub request_log: Option<std::sync::Mutex<std::fs::File>>,
    /// The [`MockServer`] was dropped: busy-polling threads stop spinning (their threads live on,
    /// idle, so a later endpoint on the same CPU has it to itself).
    pub stop_spinning: std::sync::atomic::AtomicBool,
}

/// A running endpoint. Its threads run until the process ends; dropping this stops their
/// busy-poll spin, if any.
pub struct MockServer {
    pub addr: SocketAddr,
    pub tls: bool,
    state: Arc<State>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.state.stop_spinning.store(true, Ordering::Relaxed);
    }
}

impl MockServer {
    /// The content chunks' lateness so far (send time − deadline).
    pub fn chunk_lateness(&self) -> lateness::LatenessSummary {
        self.state.lateness.summary()
    }

    /// The lateness histogram so far, to measure a window from (see
    /// [`lateness::Lateness::summary_since`]).
    pub fn lateness_mark(&self) -> lateness::Mark {
        self.state.lateness.mark()
    }

    /// The content chunks' lateness since `mark`.
    pub fn chunk_lateness_since(&self, mark: &lateness::Mark) -> lateness::LatenessSummary {
        self.state.lateness.summary_since(mark)
    }

    /// CPU time of the endpoint's threads so far, ns (each thread's own CPU clock, so a client
    /// in the same process is not counted); `None` where a clock cannot be read.
    pub fn cpu_ns(&self) -> Option<u64> {
        use std::os::unix::thread::JoinHandleExt;
        self.threads.iter().try_fold(0u64, |sum, h| {
            let mut clock: libc::clockid_t = 0;
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: the thread is alive (its handle is held and its loop never returns while
            // the process runs), so its pthread_t is valid; both out-pointers are valid locals.
            let ok = unsafe {
                libc::pthread_getcpuclockid(h.as_pthread_t(), &mut clock) == 0
                    && libc::clock_gettime(clock, &mut ts) == 0
            };
            ok.then(|| sum + ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
        })
    }

    /// With `busy_poll`: the time the endpoint's threads spun with nothing to do so far, ns
    /// (their CPU minus this is their work).
    pub fn spin_ns(&self) -> u64 {
        self.state.spin_ns.load(Ordering::Relaxed)
    }

    /// The chat completions URL clients should use.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/v1/chat/completions", self.addr)
    }
}

/// `--log-requests`: the file, opened for appending.
fn open_log(path: Option<&std::path::Path>) -> io::Result<Option<std::sync::Mutex<std::fs::File>>> {
    path.map(|p| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)?;
        Ok(std::sync::Mutex::new(f))
    })
    .transpose()
}

/// Binds and starts serving; port 0 picks a free port (see [`MockServer::addr`]).
pub fn start(cfg: MockConfig) -> io::Result<MockServer> {
    let host = cfg.host.trim_start_matches('[').trim_end_matches(']');
    let listener = TcpListener::bind((host, cfg.port))?;
    // std listens with a backlog of 128: a burst of new connections beyond that has its SYNs
    // dropped and retried a second later, which would show as the endpoint's latency. Listening
    // again on a listening socket only resizes the queue (the kernel caps it at somaxconn).
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `listen` on a valid, owned, bound socket fd has no memory-safety effects.
        unsafe { libc::listen(listener.as_raw_fd(), 4096) };
    }
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let threads = cfg.threads.max(1);
    let state = Arc::new(State {
        request_log: open_log(cfg.log_requests.as_deref())?,
        tls: cfg.tls.clone(),
        capacity: Capacity::new(cfg.capacity_tokens_per_sec, cfg.itl_ms),
        scheduler: metrics::Scheduler::new(cfg.max_num_seqs),
        prefix_cache: cfg.prefix_cache.then(Default::default),
        cfg,
        active: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        fault_draws: AtomicU64::new(0),
        admitted: AtomicU64::new(0),
        lateness: Default::default(),
        spin_ns: AtomicU64::new(0),
        stop_spinning: Default::default(),
    });
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let l = listener.try_clone()?;
        let state = state.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let pin = (!state.cfg.pin.is_empty()).then(|| state.cfg.pin[i % state.cfg.pin.len()]);
        let h = std::thread::Builder::new()
            .name(format!("qpsbench-mock-{i}"))
            .spawn(move || {
                if let Some(id) = pin {
                    core_affinity::set_for_current(id);
                }
                let rt = crate::rt::build_runtime();
                let mut rt = match rt {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let uring = matches!(rt, monoio::FusionRuntime::Uring(_));
                if uring {
                    crate::rt::timer::enable_on_this_thread();
                }
                let busy = uring && state.cfg.busy_poll;
                rt.block_on(async move {
                    let listener = match monoio::net::TcpListener::from_std(l) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    if busy {
                        let forever = std::rc::Rc::new(std::cell::Cell::new(true));
                        // The loop's rounds with nothing to do, added up over the threads.
                        let (spin, mut published) = (state.clone(), 0);
                        let stop = forever.clone();
                        monoio::spawn(crate::rt::timer::busy_poll_loop(forever, move || {
                            if spin.stop_spinning.load(Ordering::Relaxed) {
                                stop.set(false);
                            }
                            let now = crate::rt::spin_ns();
                            if now != published {
                                spin.spin_ns.fetch_add(now - published, Ordering::Relaxed);
                                published = now;
                            }
                        }));
                    } else if uring {
                        // One kernel timer for all the thread's streams: the chunks due at one
                        // expiry go out together.
                        monoio::spawn(crate::rt::timer::one_timer_loop());
                    }
                    handler::accept_loop(listener, state).await
                })
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("mock thread ended while starting"))??;
        handles.push(h);
    }
    Ok(MockServer {
        addr,
        tls: state.tls.is_some(),
        state,
        threads: handles,
    })
}

/// `qpsbench serve-mock`: validates the flags, starts the endpoint, prints its URL, then serves
/// until interrupted (or for `--exit-after` seconds).
pub fn serve(args: &crate::cli::MockArgs) -> crate::foundation::error::Result<i32> {
    let mut cfg = config_from_args(args)?;
    cfg.tls = tls_from_args(args)?;
    let server = start(cfg).map_err(|e| {
        UserError::input(format!("cannot listen on {}:{}: {e}", args.host, args.port))
    })?;
    crate::outln!("qpsbench serve-mock listening on {}", server.url());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // Until --exit-after or Ctrl-C / SIGTERM; then the endpoint says how well it kept its
    // chunks' deadlines.
    crate::foundation::interrupt::install_quiet();
    let until = args
        .exit_after
        .map(|s| std::time::Instant::now() + std::time::Duration::from_secs_f64(s));
    while !crate::foundation::interrupt::requested()
        && until.is_none_or(|t| std::time::Instant::now() < t)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!("{}", server.chunk_lateness().line());
    Ok(0)
}

/// The endpoint's configuration from `serve-mock`'s flags, each checked against its range.
fn config_from_args(args: &crate::cli::MockArgs) -> crate::foundation::error::Result<MockConfig> {
    use crate::foundation::flag_ranges::{check, count, Low};
    // An hour per token is already absurd; anything past it would overflow the timers.
    let ms = |flag: &str, v: f64| check(flag, v, Low::From(0.0), 3_600_000.0, "milliseconds");
    // (flag, value, lowest, highest, what it counts)
    let counts: [(&str, u64, u64, u64, &str); 5] = [
        (
            "--output-tokens",
            args.output_tokens,
            0,
            10_000_000,
            "a token count",
        ),
        (
            "--tokens-per-chunk",
            args.tokens_per_chunk,
            1,
            1_000_000,
            "a token count",
        ),
        (
            "--max-concurrency",
            args.max_concurrency as u64,
            0,
            10_000_000,
            "requests",
        ),
        (
            "--max-num-seqs",
            args.max_num_seqs as u64,
            0,
            10_000_000,
            "requests",
        ),
        (
            "--threads",
            args.threads as u64,
            1,
            1024,
            "a number of threads",
        ),
    ];
    for (flag, v, lo, hi, what) in counts {
        count(flag, v, lo, hi, what)?;
    }
    crate::foundation::flag_ranges::seconds_opt("--exit-after", args.exit_after)?;
    let capacity = |t| {
        check(
            "--capacity-tokens-per-sec",
            t,
            Low::From(0.001),
            1e12,
            "tokens/s",
        )
    };
    Ok(MockConfig {
        host: args.host.clone(),
        port: args.port,
        ttft_ms: ms("--ttft-ms", args.ttft_ms)?,
        itl_ms: ms("--itl-ms", args.itl_ms)?,
        output_tokens: args.output_tokens,
        tokens_per_chunk: args.tokens_per_chunk,
        max_concurrency: args.max_concurrency,
        max_num_seqs: args.max_num_seqs,
        role_chunk: args.role_chunk,
        no_usage: args.no_usage,
        capacity_tokens_per_sec: args.capacity_tokens_per_sec.map(capacity).transpose()?,
        threads: args.threads,
        tls: None,
        stamp_chunks: args.stamp_chunks,
        busy_poll: args.busy_poll,
        strict_stream_options: args.strict_stream_options,
        faults: args
            .faults
            .iter()
            .map(|f| fault::parse(f).map_err(UserError::input))
            .collect::<crate::foundation::error::Result<_>>()?,
        pin: Vec::new(),
        served_model_name: args.served_model_name.clone(),
        prefill_ms_per_1k_tokens: check(
            "--prefill-ms-per-1k-tokens",
            args.prefill_ms_per_1k_tokens,
            Low::From(0.0),
            3_600_000.0,
            "milliseconds",
        )?,
        prefix_cache: args.prefix_cache,
        log_requests: args.log_requests.clone(),
        reasoning_tokens: count(
            "--reasoning-tokens",
            args.reasoning_tokens,
            0,
            10_000_000,
            "a token count",
        )?,
        fail_first: args.fail_first,
        require_key: args.require_key.clone(),
    })
}

/// HTTPS settings: a fresh self-signed CA and certificate, or the given files, or none.
fn tls_from_args(
    args: &crate::cli::MockArgs,
) -> crate::foundation::error::Result<Option<Arc<rustls::ServerConfig>>> {
    use crate::http::tls::{server_config, write_self_signed};
    if let Some(dir) = &args.tls_self_signed {
        let names = ["localhost", "127.0.0.1", "::1"];
        let files = write_self_signed(dir, &names, (2099, 12, 31)).map_err(UserError::input)?;
        let config =
            server_config(&files.server_cert, &files.server_key).map_err(UserError::input)?;
        eprintln!(
            "serve-mock: wrote a CA and a server certificate for localhost, 127.0.0.1 and ::1 into {}; clients: --ca-cert {}",
            dir.display(),
            files.ca_cert.display()
        );
        return Ok(Some(config));
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(server_config(cert, key).map_err(UserError::input)?));
    }
    Ok(None)
}
