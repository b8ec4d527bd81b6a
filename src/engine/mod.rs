//! The engine: one pinned OS thread per core, each running its own monoio runtime (io_uring, or
//! epoll where io_uring is unavailable), its own keep-alive pool and its own recorder.
//!
//! Data flow: `bench` hands a level's arrival plan to [`Engine::run_level`], which splits it
//! (arrival i → core i mod N), sends each core its slice once, and merges the cores' recorders
//! when they are all done. Nothing is shared between cores while the level runs.

pub mod pacer;
pub mod pool;
pub mod request;
mod worker;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use crate::clock::now_ns;
use crate::http::conn::Target;
use crate::metrics::Recorder;

/// How long before the first arrival the plan is handed out, so every core holds it in time.
const LEAD_NS: u64 = 50_000_000;

/// A runtime for one thread (a client core, or one of the built-in endpoint's threads). Each ring is used by its own thread only, so the kernel is told so
/// (SINGLE_ISSUER) and that completions need not interrupt the thread (COOP_TASKRUN): fewer
/// inter-processor interrupts per streamed chunk. Kernels without these flags get a plain ring.
pub fn build_runtime() -> std::io::Result<
    monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    >,
> {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun().setup_single_issuer();
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .uring_builder(urb)
        .enable_timer()
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
        })
}

/// What every core needs for the whole run.
pub struct EngineConfig {
    pub cores: usize,
    pub target: Target,
    pub requests: Vec<Bytes>,
    pub timeout: Duration,
}

/// Which I/O driver the cores run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDriver {
    IoUring,
    Epoll,
}

impl IoDriver {
    pub fn name(self) -> &'static str {
        match self {
            IoDriver::IoUring => "io_uring",
            IoDriver::Epoll => "epoll",
        }
    }
}

/// What the main thread asks of a core.
pub(crate) enum Command {
    /// Open connections until this many are idle in the pool (before a level's window).
    Warm(usize),
    /// Run this slice of a level.
    Level(CorePlan),
    /// Send these rendered requests from now on (same samples, other body options).
    Requests(Arc<[Bytes]>),
}

/// One core's share of a level.
pub(crate) struct CorePlan {
    /// Level start on the monotonic clock; arrival offsets count from here.
    pub start_ns: u64,
    /// (offset ns, sample index), in time order.
    pub arrivals: Vec<(u64, u32)>,
}

struct Worker {
    plans: Option<mpsc::Sender<Command>>,
    results: mpsc::Receiver<Recorder>,
    thread: Option<JoinHandle<()>>,
}

/// The running cores. Dropping it stops and joins them.
pub struct Engine {
    workers: Vec<Worker>,
    pub driver: IoDriver,
}

/// A level's merged measurements.
pub struct LevelRun {
    pub start_ns: u64,
    pub merged: Recorder,
    pub per_core: Vec<Recorder>,
}

impl Engine {
    /// Starts `cfg.cores` threads, pinned to the cores this process may use (round robin).
    pub fn start(cfg: EngineConfig) -> Result<Self, String> {
        let core_ids = core_affinity::get_core_ids().unwrap_or_default();
        let shared = Arc::new(worker::Shared {
            target: cfg.target,
            requests: cfg.requests.into(),
            timeout: cfg.timeout,
        });
        let mut workers = Vec::with_capacity(cfg.cores);
        let mut driver = IoDriver::IoUring;
        for i in 0..cfg.cores {
            let (plan_tx, plan_rx) = mpsc::channel();
            let (res_tx, res_rx) = mpsc::channel();
            let (ready_tx, ready_rx) = mpsc::channel();
            let core_id = (!core_ids.is_empty()).then(|| core_ids[i % core_ids.len()]);
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("qpsbench-core-{i}"))
                .spawn(move || worker::main(core_id, shared, plan_rx, res_tx, ready_tx))
                .map_err(|e| format!("cannot start core thread {i}: {e}"))?;
            match ready_rx.recv() {
                Ok(Ok(d)) => {
                    if d == IoDriver::Epoll {
                        driver = IoDriver::Epoll;
                    }
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
        Ok(Self { workers, driver })
    }

    pub fn cores(&self) -> usize {
        self.workers.len()
    }

    /// Opens connections on every core until `per_core` are idle in each pool, before a level's
    /// timed window, so that connection setup does not land in the first requests' latency.
    /// Returns the connections' times and any failures.
    pub fn warm(&self, per_core: usize) -> Result<Recorder, String> {
        for w in &self.workers {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::Warm(per_core))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        let mut merged = Recorder::new();
        for w in &self.workers {
            let r = w
                .results
                .recv()
                .map_err(|_| "a core thread stopped while opening connections".to_string())?;
            merged.merge(&r);
        }
        Ok(merged)
    }

    /// Replaces the rendered requests (one per sample, same order) on every core.
    pub fn set_requests(&self, requests: Vec<Bytes>) -> Result<(), String> {
        let requests: Arc<[Bytes]> = requests.into();
        for w in &self.workers {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::Requests(requests.clone()))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        for w in &self.workers {
            w.results
                .recv()
                .map_err(|_| "a core thread stopped".to_string())?;
        }
        Ok(())
    }

    /// Runs one level: `offsets` are the arrival times (ns from the level start); arrival i sends
    /// sample `i mod n_samples` from core `i mod cores`. Returns when every request has finished
    /// or timed out.
    pub fn run_level(&self, offsets: &[u64], n_samples: usize) -> Result<LevelRun, String> {
        let n = self.workers.len();
        let mut slices: Vec<Vec<(u64, u32)>> = (0..n)
            .map(|_| Vec::with_capacity(offsets.len() / n + 1))
            .collect();
        for (i, &off) in offsets.iter().enumerate() {
            slices[i % n].push((off, (i % n_samples) as u32));
        }
        let start_ns = now_ns() + LEAD_NS;
        for (w, arrivals) in self.workers.iter().zip(slices) {
            w.plans
                .as_ref()
                .expect("plans sender lives until drop")
                .send(Command::Level(CorePlan { start_ns, arrivals }))
                .map_err(|_| "a core thread has stopped".to_string())?;
        }
        let mut merged = Recorder::new();
        let mut per_core = Vec::with_capacity(n);
        for w in &self.workers {
            let r = w
                .results
                .recv()
                .map_err(|_| "a core thread stopped during the level".to_string())?;
            merged.merge(&r);
            per_core.push(r);
        }
        Ok(LevelRun {
            start_ns,
            merged,
            per_core,
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
