//! What a client core's request tasks share while a level runs (`Core`: its pools, its parser,
//! its queue of arrivals, its concurrency slots, its timeouts and SLOs), owned by the core's
//! thread and never by two threads. `worker` builds it; `dispatch`, `request` and `session` read
//! it.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use super::cancel::{self, CancelPlan};
use super::orders::{LevelExtras, PlannedArrival};
use super::pool::Pool;
use super::session_plan::SessionPlan;
use super::stream::Reading;
use crate::api::openai::ChunkParser;
use crate::foundation::clock::now_ns;
use crate::recording::outcome::Success;
use crate::recording::recorder::Recorder;
use crate::workload::prepared::CoreRequests;

/// What a core's request tasks share: owned by the core, never by two threads.
pub struct Core {
    /// One keep-alive pool per endpoint.
    pub pools: Vec<Pool>,
    /// This core's live counters (the progress line reads them from another thread).
    pub live: std::sync::Arc<crate::recording::live::LiveCounters>,
    pub chunks: RefCell<ChunkParser>,
    /// The level's requests, each rendered for the endpoint its arrival goes to: this core's own
    /// handle on the shared buffer (replaced by each level that brings its own, and by
    /// `Command::Reset`).
    pub requests: RefCell<CoreRequests>,
    pub timeout: Duration,
    /// The current level's slice of the arrival plan: this core's queue of arrivals.
    pub queue: RefCell<CoreQueue>,
    /// This core's share of `--max-concurrency` (`usize::MAX`: no cap).
    pub max_inflight: usize,
    /// Requests sent and not finished.
    pub inflight: Cell<usize>,
    /// The pacer, parked while the cap holds every arrival back.
    pub slot_waker: RefCell<Option<Waker>>,
    /// The level's end, parked until every request sent has finished (`inflight` is 0).
    pub idle_waker: RefCell<Option<Waker>>,
    /// Keep a per-request record (`--save-requests`).
    pub save_requests: bool,
    /// This core's index (in records).
    pub index: u16,
    /// Per-request SLOs for goodput (ns).
    pub slo: Slo,
    /// Bounds on connecting (TCP + TLS), on the first token (from the send) and on the gap
    /// between reads.
    pub connect_timeout: Duration,
    pub ttft_timeout_ns: Option<u64>,
    pub idle_timeout_ns: Option<u64>,
    /// `--session-turns`: each arrival starts a session (`session`).
    pub sessions: Option<Rc<SessionPlan>>,
    /// What the level's requests carry beyond their bytes: session ids, abandonment times.
    pub extras: RefCell<LevelExtras>,
    /// `--cancel-rate`: how sessions' later turns are abandoned.
    pub cancels: Option<CancelPlan>,
    /// How this run's answers are read.
    pub reading: Reading,
    /// The core runs on io_uring: waits end on a timerfd, to the µs (else on monoio's wheel).
    pub precise_timers: bool,
    /// What a request's reads call to send the arrivals that fell due meanwhile
    /// (`dispatch::dispatch_due`): a function pointer, so that the request, which sits below
    /// dispatch, need not import it.
    pub dispatch: fn(&Rc<Core>, u64),
}

/// Per-request SLOs (`--slo-ttft`, `--slo-e2e`), ns; a success meeting both counts as goodput.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slo {
    pub ttft_ns: Option<u64>,
    pub e2e_ns: Option<u64>,
}

impl Slo {
    pub fn met(&self, s: &Success) -> bool {
        self.ttft_ns
            .is_none_or(|max| s.ttft_ns.is_some_and(|t| t <= max))
            && self.e2e_ns.is_none_or(|max| s.e2e_ns <= max)
    }
}

impl Core {
    /// How this level's sessions go, if its arrivals start sessions.
    pub fn session_plan(&self) -> Option<Rc<SessionPlan>> {
        self.extras.borrow().session_ids.as_ref()?;
        self.sessions.clone()
    }

    /// The session request `sample` starts (its prompt number), if the level has sessions.
    pub fn session_id(&self, sample: usize) -> Option<u64> {
        self.extras
            .borrow()
            .session_ids
            .as_ref()?
            .get(sample)
            .copied()
    }

    /// When request `sample` (due at `intended_ns`) is abandoned, if it is.
    pub fn cancel_at(&self, sample: usize, intended_ns: u64) -> Option<u64> {
        // A run without --cancel-rate looks nothing up.
        self.cancels.as_ref()?;
        let after = *self.extras.borrow().cancel_after_ns.as_ref()?.get(sample)?;
        (after != cancel::NEVER).then(|| intended_ns.saturating_add(after))
    }

    /// The concurrency cap holds the next arrival back.
    pub fn capped(&self) -> bool {
        self.inflight.get() >= self.max_inflight
    }

    /// An arrival's task has ended (its request, or its session's last turn): its concurrency
    /// slot is free. The level's end is woken when it was the last; with a cap, an arrival it
    /// held back goes now, from here, without waiting for the pacer, and the pacer is woken to
    /// arm its timer for what comes next.
    pub fn free_slot(self: &Rc<Self>) {
        self.inflight.set(self.inflight.get() - 1);
        if self.inflight.get() == 0 {
            if let Some(w) = self.idle_waker.borrow_mut().take() {
                w.wake();
            }
        }
        if self.max_inflight != usize::MAX {
            (self.dispatch)(self, now_ns());
            if let Some(w) = self.slot_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

/// A core's arrivals for one level and how far it has got.
#[derive(Default)]
pub struct CoreQueue {
    pub start_ns: u64,
    /// In time order.
    pub arrivals: Vec<PlannedArrival>,
    pub next: usize,
    /// Arrivals before this index are warm-up (`--warmup`): sent, recorded apart.
    pub measured_from: usize,
    /// Arrivals before this index fell due while the concurrency cap held them back.
    pub due_seen: usize,
    pub rec: Rc<RefCell<Recorder>>,
    pub warmup_rec: Rc<RefCell<Recorder>>,
    /// The core thread's CPU time when the first measured arrival was sent, so that the
    /// warm-up's CPU is not charged to the measured requests.
    pub cpu_at_window_ns: Option<u64>,
}

impl CoreQueue {
    /// Intended time of the next arrival not yet sent.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.arrivals
            .get(self.next)
            .map(|a| self.start_ns + a.offset_ns)
    }
}
