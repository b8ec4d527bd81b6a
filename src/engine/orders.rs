//! What the engine and its cores say to each other, and what every core is set up with: the
//! orders a core receives (`Command`, with a level's `CorePlan` of `PlannedArrival`s and its
//! `LevelExtras`), what a core reports once its runtime is built (`CoreReady`), and the settings
//! every core shares (`Timeouts`, `RecvPath`, `IoDriver`).
//!
//! Its own file, so that the engine's driver (`mod.rs`) and its cores (`worker`, `dispatch`,
//! `core_state`) import these from below instead of from each other.

use std::sync::Arc;
use std::time::Duration;

use crate::workload::prepared::Prepared;

/// One arrival of a level, as the engine plans it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedArrival {
    /// When it is due: ns from the level's start.
    pub offset_ns: u64,
    /// The request it sends: an index into the level's requests.
    pub sample: u32,
    /// The `--endpoint` it goes to.
    pub endpoint: u16,
}

/// Timeouts besides the total one, each with its own error category.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect and TLS handshake: `Timeout (connect)`.
    pub connect: Duration,
    /// From the send to the first output token: `Timeout (first token)`.
    pub first_token: Option<Duration>,
    /// Between two reads of a response: `Timeout (idle)`.
    pub idle: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_token: None,
            idle: None,
        }
    }
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

/// How client cores read responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvPath {
    /// Multishot receives on a second io_uring per core, handled in place (`rt::recv_ring`).
    Ring,
    /// One monoio read per arrival, in the request's task.
    Monoio,
}

impl RecvPath {
    /// The path asked for: `QPSBENCH_RECV_PATH=monoio` forces monoio reads (to compare the
    /// two, or where a kernel's multishot receive misbehaves); unset or `ring`, the ring where
    /// the kernel has it.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("QPSBENCH_RECV_PATH").as_deref() {
            Err(_) | Ok("ring") => Ok(Self::Ring),
            Ok("monoio") => Ok(Self::Monoio),
            Ok(other) => Err(format!(
                "QPSBENCH_RECV_PATH is `{other}`; expected `ring` or `monoio`"
            )),
        }
    }
}

/// What a core reports once its runtime is built.
pub struct CoreReady {
    pub driver: IoDriver,
    /// The thread is pinned to its CPU.
    pub pinned: bool,
    /// The core has a receive ring.
    pub recv_ring: bool,
}

/// What the main thread asks of a core.
pub enum Command {
    /// Open connections until this many are idle in the pool (before a level's window).
    OpenConnections(usize),
    /// Run this slice of a level.
    Level(CorePlan),
    /// Close every idle connection and, if given, send these rendered requests from now on.
    Reset(Option<Arc<Prepared>>),
}

/// What a level's requests carry beyond their bytes, indexed like them.
#[derive(Debug, Clone, Default)]
pub struct LevelExtras {
    /// When the level's arrivals start sessions (a run with `--session-turns`): each request's
    /// prompt number, which is its session's id. None: single requests (and the probe).
    pub session_ids: Option<Arc<[u64]>>,
    /// `--cancel-rate`: each request's time from its intended send to its abandonment, ns
    /// (`cancel::NEVER`: sent to its end).
    pub cancel_after_ns: Option<Arc<[u64]>>,
}

/// One core's share of a level.
pub struct CorePlan {
    /// Level start on the monotonic clock; arrival offsets count from here.
    pub start_ns: u64,
    /// (offset ns, sample index, endpoint index), in time order.
    pub arrivals: Vec<PlannedArrival>,
    /// Arrivals before this index are warm-up.
    pub measured_from: usize,
    /// The measured sending window (monotonic ns): its start (after any warm-up), its end.
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// The level's own requests (an arrival's sample indexes them), if it brings any.
    pub requests: Option<Arc<Prepared>>,
    /// What the level's requests carry beyond their bytes.
    pub extras: LevelExtras,
}
