//! Layer 9 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `recording`; `stats` and the layers after it use it.
//!
//! The engine: one pinned OS thread per core, each running its own monoio runtime (io_uring, or
//! epoll where io_uring is unavailable), its own keep-alive pool and its own recorder.
//!
//! Data flow: `bench` hands a level's arrival plan to [`Engine::run_level`], which splits it
//! (arrival i → core i mod N), sends each core its slice once, and merges the cores' recorders
//! when they are all done. Nothing is shared between cores while the level runs.

pub mod cancel;
pub mod core_state;
pub mod dispatch;
pub mod orders;
pub mod pacer;
pub mod pool;
pub mod request;
pub mod session;
pub mod session_plan;
pub mod stream;
mod worker;

pub use core_state::Slo;
pub use orders::{IoDriver, LevelExtras, PlannedArrival, RecvPath, Timeouts};
pub use stream::Reading;

use orders::{Command, CorePlan};

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::foundation::clock::now_ns;
use crate::http::conn::Target;
use crate::recording::recorder::Recorder;
use crate::workload::prepared::Prepared;

/// How long before the first arrival the plan is handed out, so every core holds it in time.
pub const LEAD_NS: u64 = 50_000_000;

/// What every core needs for the whole run.
pub struct EngineConfig {
    pub cores: usize,
    /// Where requests go: one target per `--endpoint`.
    pub targets: Vec<Target>,
    /// The requests arrivals send until a level brings its own (each rendered for the endpoint
    /// its arrival goes to).
    pub requests: Prepared,
    /// Connections all cores together may have open at once (from the open-file limit, less a
    /// reserve for everything else the process opens: see `foundation::os_limits::connection_budget`).
    pub max_connections: usize,
    pub timeout: Duration,
    /// `--max-concurrency`, split across cores (None: no cap).
    pub max_concurrency: Option<usize>,
    /// Keep per-request records (`--save-requests`).
    pub save_requests: bool,
    /// `--busy-poll`: cores never sleep in the kernel while a level runs.
    pub busy_poll: bool,
    /// Pin core threads to these CPUs (round robin) instead of every CPU this process may use.
    pub pin: Option<Vec<core_affinity::CoreId>>,
    /// Per-request SLOs, for goodput.
    pub slo: Slo,
    /// Connect, first-token and idle timeouts (the total one is `timeout`).
    pub timeouts: Timeouts,
    /// How the cores read responses (the ring falls back to monoio reads where it cannot run).
    pub recv_path: RecvPath,
    /// `--session-turns`: each arrival starts a multi-turn session (`session`).
    pub sessions: Option<session_plan::SessionPlan>,
    /// `--cancel-rate`: how a session's later turns are abandoned (a level's own requests carry
    /// their times in `LevelExtras`).
    pub cancels: Option<cancel::CancelPlan>,
    /// How answers are read: the API's stream events, or embeddings' one JSON answer.
    pub reading: stream::Reading,
}

struct Worker {
    plans: Option<mpsc::Sender<Command>>,
    results: mpsc::Receiver<(Recorder, Recorder)>,
    thread: Option<JoinHandle<()>>,
}

/// The running cores. Dropping it stops and joins them.
pub struct Engine {
    workers: Vec<Worker>,
    /// Each core's live counters, for a progress line (`live`).
    pub live: Vec<Arc<crate::recording::live::LiveCounters>>,
    pub driver: IoDriver,
    /// How responses are read: `io_uring multishot recv` when every core has a receive
    /// ring and some endpoint is plain HTTP (TLS connections always read through monoio),
    /// else `monoio reads`.
    pub recv_path: &'static str,
    /// Whether each core's thread could be pinned to its CPU.
    pub cores_pinned: Vec<bool>,
}

/// A level's merged measurements.
pub struct LevelRun {
    /// The schedule's start (warm-up included), monotonic ns.
    pub start_ns: u64,
    /// The measured window's start: `start_ns` + the warm-up.
    pub window_start_ns: u64,
    /// The measured sending window's end: `window_start_ns` + the level's duration.
    pub window_end_ns: u64,
    /// The measured window, all cores (with every core's send times and records moved in).
    pub merged: Recorder,
    /// Each core's measured window (send times and records moved out).
    pub per_core: Vec<Recorder>,
    /// The warm-up requests (`--warmup`), all cores.
    pub warmup: Recorder,
    /// When the last core finished (every request ended), monotonic ns.
    pub end_ns: u64,
    /// Arrivals planned in the measured window (this process's share of the schedule).
    pub planned: usize,
}

impl Engine {
    /// Starts `cfg.cores` threads, pinned to the cores this process may use (round robin).
    pub fn start(cfg: EngineConfig) -> Result<Self, String> {
        let core_ids = cfg
            .pin
            .clone()
            .unwrap_or_else(|| core_affinity::get_core_ids().unwrap_or_default());
        let max_inflight = (0..cfg.cores)
            .map(|i| match cfg.max_concurrency {
                // Split as evenly as possible: arrival i goes to core i mod N.
                Some(n) => n / cfg.cores + usize::from(i < n % cfg.cores),
                None => usize::MAX,
            })
            .collect();
        let live: Vec<_> = (0..cfg.cores).map(|_| Arc::default()).collect();
        let any_plain = cfg.targets.iter().any(|t| t.tls.is_none());
        let shared = Arc::new(worker::Shared {
            live: live.clone(),
            targets: cfg.targets,
            requests: Arc::new(cfg.requests),
            max_open_per_core: (cfg.max_connections / cfg.cores.max(1)).max(1),
            timeout: cfg.timeout,
            max_inflight,
            save_requests: cfg.save_requests,
            busy_poll: cfg.busy_poll,
            recv_path: cfg.recv_path,
            slo: cfg.slo,
            timeouts: cfg.timeouts,
            sessions: cfg.sessions,
            cancels: cfg.cancels,
            reading: cfg.reading,
        });
        let mut workers = Vec::with_capacity(cfg.cores);
        let mut driver = IoDriver::IoUring;
        let mut cores_pinned = Vec::with_capacity(cfg.cores);
        let mut all_rings = true;
        for i in 0..cfg.cores {
            let (plan_tx, plan_rx) = mpsc::channel();
            let (res_tx, res_rx) = mpsc::channel();
            let (ready_tx, ready_rx) = mpsc::channel();
            let core_id = (!core_ids.is_empty()).then(|| core_ids[i % core_ids.len()]);
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("qpsbench-core-{i}"))
                .spawn(move || worker::main(i, core_id, shared, plan_rx, res_tx, ready_tx))
                .map_err(|e| format!("cannot start core thread {i}: {e}"))?;
            match ready_rx.recv() {
                Ok(Ok(ready)) => {
                    if ready.driver == IoDriver::Epoll {
                        driver = IoDriver::Epoll;
                    }
                    all_rings &= ready.recv_ring;
                    cores_pinned.push(ready.pinned);
                }
                Ok(Err(e)) => return Err(format!("core {i}: cannot build the I/O runtime: {e}")),
                Err(_) => return Err(format!("core {i}: the thread ended while starting")),
            }
            workers.push(Worker {
                plans: Some(plan_tx),
                results: res_rx,
                thread: Some(thread),
            });
        }
        if cores_pinned.iter().any(|p| !p) {
            eprintln!(
                "warning: {} of {} client core thread(s) could not be pinned to a CPU; they run where the scheduler puts them (cores_pinned in metadata.json)",
                cores_pinned.iter().filter(|p| !**p).count(),
                cores_pinned.len()
            );
        }
        Ok(Self {
            workers,
            live,
            driver,
            recv_path: if all_rings && any_plain {
                "io_uring multishot recv"
            } else {
                "monoio reads"
            },
            cores_pinned,
        })
    }

    pub fn cores(&self) -> usize {
        self.workers.len()
    }

    /// Opens connections on every core until `per_core` are idle in each pool, before a level's
    /// timed window, so that connection setup does not land in the first requests' latency.
    /// Returns the connections' times and any failures.
    pub fn open_connections(&self, per_core: usize) -> Result<Recorder, String> {
        for w in &self.workers {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::OpenConnections(per_core))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        let mut merged = Recorder::new();
        for w in &self.workers {
            let (r, _) = w
                .results
                .recv()
                .map_err(|_| "a core thread stopped while opening connections".to_string())?;
            merged.merge(&r);
        }
        Ok(merged)
    }

    /// Closes every core's idle connections and, if given, replaces the rendered requests:
    /// after a probe request, so the run starts from a clean state.
    pub fn reset(&self, requests: Option<Prepared>) -> Result<(), String> {
        let requests: Option<Arc<Prepared>> = requests.map(Arc::new);
        for w in &self.workers {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::Reset(requests.clone()))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        for w in &self.workers {
            w.results
                .recv()
                .map_err(|_| "a core thread stopped".to_string())?;
        }
        Ok(())
    }

    /// Runs one level: `arrivals` are (time in ns from the level start, sample, endpoint), in
    /// time order, the first `warmup` of them a warm-up that is sent but recorded apart, and the
    /// measured window starting at `window_ns` and lasting `duration_ns`; arrival j is sent from
    /// core `j mod cores`. An arrival's sample indexes `requests` when the level brings them
    /// (and the requests the cores hold otherwise). The level starts at `start_at_ns`
    /// (monotonic) when given, else in a moment ([`LEAD_NS`]). With `extras`' session ids
    /// and a run with sessions, each arrival starts a session; its abandonment times cancel
    /// requests.
    /// Returns when every request (every session) has finished or timed out.
    pub fn run_level(
        &self,
        arrivals: &[PlannedArrival],
        warmup: usize,
        (window_ns, duration_ns): (u64, u64),
        start_at_ns: Option<u64>,
        requests: Option<Prepared>,
        extras: LevelExtras,
    ) -> Result<LevelRun, String> {
        let requests = requests.map(Arc::new);
        let n = self.workers.len();
        let mut slices: Vec<Vec<PlannedArrival>> = (0..n)
            .map(|_| Vec::with_capacity(arrivals.len() / n + 1))
            .collect();
        let mut measured_from = vec![0; n];
        for (i, &arrival) in arrivals.iter().enumerate() {
            slices[i % n].push(arrival);
            if i < warmup {
                measured_from[i % n] += 1;
            }
        }
        let start_ns = start_at_ns.unwrap_or_else(|| now_ns() + LEAD_NS);
        let window_end_ns = start_ns + window_ns + duration_ns;
        for ((w, arrivals), measured_from) in self.workers.iter().zip(slices).zip(measured_from) {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::Level(CorePlan {
                    start_ns,
                    arrivals,
                    measured_from,
                    window_start_ns: start_ns + window_ns,
                    window_end_ns,
                    requests: requests.clone(),
                    extras: extras.clone(),
                }))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        let mut merged = Recorder::new();
        let mut warmup_rec = Recorder::new();
        let mut per_core = Vec::with_capacity(n);
        for w in &self.workers {
            let (mut r, mut wr) = w
                .results
                .recv()
                .map_err(|_| "a core thread stopped during the level".to_string())?;
            merged.merge(&r);
            merged.send_times_ns.append(&mut r.send_times_ns);
            merged.records.append(&mut r.records);
            warmup_rec.merge(&wr);
            warmup_rec.records.append(&mut wr.records);
            per_core.push(r);
        }
        merged.send_times_ns.sort_unstable();
        Ok(LevelRun {
            end_ns: now_ns(),
            start_ns,
            window_start_ns: start_ns + window_ns,
            window_end_ns,
            merged,
            per_core,
            warmup: warmup_rec,
            planned: arrivals.len().saturating_sub(warmup),
        })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for w in &mut self.workers {
            w.plans.take();
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}
