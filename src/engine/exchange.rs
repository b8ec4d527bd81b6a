//! One request, from its intended send time to its recorded outcome.
//!
//! Data flow: when an arrival falls due, [`dispatch_due`] — called by the core's pacer *and* by
//! every request task after each read — sends it at once: it takes an idle pooled connection and
//! writes the request with a non-blocking `send`, so the request leaves when it is due even while
//! the core is busy with other streams (a spawned task would only start after every task queued
//! before it). It then spawns [`run`], which finishes the write if needed (or connects first when
//! no connection was idle), runs the exchange (`http::conn`) with a [`StreamHandler`] that feeds
//! body bytes through `sse` and `openai`, and records the outcome in the core's [`Recorder`].
//! Every latency is measured from the intended time, so a client that falls behind shows it
//! instead of hiding it (no coordinated omission).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use super::pool::{Pool, PooledConn};
use super::session::{Session, SessionPlan, MAX_ANSWER_BYTES};
use super::stream::{Failed, Hooks, StreamHandler, Trace};
use crate::api::openai::ChunkParser;
use crate::foundation::clock::{now_ns, thread_cpu_ns};
use crate::http::handler::Request;
use crate::recording::outcome::{ErrorKind, Success};
use crate::recording::recorder::Recorder;
use crate::recording::request_log::RequestRecord;
use crate::workload::prepared::{CoreRequests, RequestBuf};

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
    pub extras: RefCell<super::LevelExtras>,
    /// `--cancel-rate`: how sessions' later turns are abandoned.
    pub cancels: Option<super::cancel::CancelPlan>,
    /// How this run's answers are read.
    pub reading: super::stream::Reading,
    /// The core runs on io_uring: waits end on a timerfd, to the µs (else on monoio's wheel).
    pub precise_timers: bool,
}

/// Per-request SLOs (`--slo-ttft`, `--slo-e2e`), ns; a success meeting both counts as goodput.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slo {
    pub ttft_ns: Option<u64>,
    pub e2e_ns: Option<u64>,
}

impl Slo {
    fn met(&self, s: &Success) -> bool {
        self.ttft_ns
            .is_none_or(|max| s.ttft_ns.is_some_and(|t| t <= max))
            && self.e2e_ns.is_none_or(|max| s.e2e_ns <= max)
    }
}

impl Core {
    /// How this level's sessions go, if its arrivals start sessions.
    fn session_plan(&self) -> Option<Rc<SessionPlan>> {
        self.extras.borrow().session_ids.as_ref()?;
        self.sessions.clone()
    }

    /// The session request `sample` starts (its prompt number), if the level has sessions.
    fn session_id(&self, sample: usize) -> Option<u64> {
        self.extras
            .borrow()
            .session_ids
            .as_ref()?
            .get(sample)
            .copied()
    }

    /// When request `sample` (due at `intended_ns`) is abandoned, if it is.
    fn cancel_at(&self, sample: usize, intended_ns: u64) -> Option<u64> {
        let after = *self.extras.borrow().cancel_after_ns.as_ref()?.get(sample)?;
        (after != super::cancel::NEVER).then(|| intended_ns.saturating_add(after))
    }

    /// The concurrency cap holds the next arrival back.
    pub fn capped(&self) -> bool {
        self.inflight.get() >= self.max_inflight
    }
}

/// A core's arrivals for one level and how far it has got.
#[derive(Default)]
pub struct CoreQueue {
    pub start_ns: u64,
    /// (offset ns from start, sample index, endpoint index), in time order.
    pub arrivals: Vec<super::PlannedArrival>,
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
        self.arrivals.get(self.next).map(|a| self.start_ns + a.0)
    }
}

/// Sends every arrival of this core whose intended time has come by `now` (a time just read
/// from the clock; it is re-read after each send).
pub fn dispatch_due(core: &Rc<Core>, mut now: u64) {
    if crate::foundation::interrupt::requested() {
        // Ctrl-C: nothing more is sent.
        return;
    }
    loop {
        let (intended, (sample, endpoint), rec, waited, warmup) = {
            let mut s = core.queue.borrow_mut();
            let s = &mut *s;
            match s.arrivals.get(s.next) {
                Some(&(off, ..)) if s.start_ns + off <= now && core.capped() => {
                    // Held back by --max-concurrency: remember which arrivals waited (the scan
                    // only moves forward, so this costs O(1) per arrival over the level).
                    s.due_seen = s.due_seen.max(s.next);
                    while s
                        .arrivals
                        .get(s.due_seen)
                        .is_some_and(|a| s.start_ns + a.0 <= now)
                    {
                        s.due_seen += 1;
                    }
                    return;
                }
                Some(&(off, sample, endpoint)) if s.start_ns + off <= now => {
                    crate::rt::note_work();
                    let i = s.next;
                    s.next += 1;
                    let warmup = i < s.measured_from;
                    if i == s.measured_from && s.measured_from > 0 {
                        s.cpu_at_window_ns = Some(thread_cpu_ns());
                    }
                    let rec = if warmup { &s.warmup_rec } else { &s.rec };
                    (
                        s.start_ns + off,
                        (sample as usize, endpoint as usize),
                        rec.clone(),
                        i < s.due_seen,
                        warmup,
                    )
                }
                _ => return,
            }
        };
        core.inflight.set(core.inflight.get() + 1);
        let request = RequestBuf::new(&core.requests.borrow(), sample);
        let first = send_now(core, &rec, endpoint, &request, now);
        let mut ticket = Ticket {
            intended_ns: intended,
            sent_ns: None,
            sample,
            endpoint,
            warmup,
            waited,
            turn: u32::from(core.session_plan().is_some()),
            cancel_at_ns: core.cancel_at(sample, intended),
        };
        if first.is_some() {
            ticket.record_send(&rec, now);
        }
        // Detached: the level's end waits on `Core::inflight` instead of the handle, so a
        // finished request's task (~3.5 KiB) is freed at once and its memory reused by the next
        // one. Keeping every handle to the level's end held them all: the heap grew by a fresh,
        // page-faulting 16 KiB every few requests (22 MB per level at 3,000 requests/s).
        drop(monoio::spawn(run(core.clone(), rec, ticket, first)));
        now = now_ns();
    }
}

/// Writes `request` at once on an idle pooled connection of `endpoint`, if there is one:
/// returns that connection. Idle connections the server had closed are counted and dropped.
fn send_now(
    core: &Core,
    rec: &RefCell<Recorder>,
    endpoint: usize,
    request: &impl Request,
    now: u64,
) -> Option<PooledConn> {
    let (idle, mut closed_by_server) = core.pools[endpoint].take(now);
    let mut first = None;
    if let Some(mut conn) = idle {
        match conn.try_write_now(request) {
            Ok(()) => first = Some(conn),
            // The send itself was refused (reset in the instant after the check): nothing
            // was written, so the request starts on a fresh connection.
            Err(_) => closed_by_server += 1,
        }
    }
    if closed_by_server > 0 {
        rec.borrow_mut().idle_closed += closed_by_server;
    }
    first
}

/// One arrival (or a session's later turn), as sent.
#[derive(Clone, Copy)]
struct Ticket {
    intended_ns: u64,
    /// None until the request's task starts (no idle connection at dispatch).
    sent_ns: Option<u64>,
    sample: usize,
    /// Which `--endpoint` it goes to.
    endpoint: usize,
    warmup: bool,
    /// `--max-concurrency` held it back.
    waited: bool,
    /// The session turn it is (from 1), or 0 without sessions.
    turn: u32,
    /// `--cancel-rate`: when it is abandoned (its connection closed), if it is.
    cancel_at_ns: Option<u64>,
}

impl Ticket {
    /// Sent = the moment the request is handed to the socket, or, with no idle connection, the
    /// moment its task starts connecting (which is when the core gets to it: a busy core shows
    /// here as lag); the lag is how late that is against the plan. A session's later turn is
    /// not an arrival of the plan, so its send time stays out of the arrival gaps.
    fn record_send(&mut self, rec: &RefCell<Recorder>, now: u64) {
        self.sent_ns = Some(now);
        let mut rec = rec.borrow_mut();
        let lag = now.saturating_sub(self.intended_ns);
        if self.turn > 1 {
            rec.record_later_turn_send(now, lag);
        } else {
            rec.record_send(now, lag, self.waited);
        }
        if let Some(turns) = rec.turns.as_mut().filter(|_| self.turn > 0) {
            turns.sent(self.turn);
        }
    }
}

/// Completes the ticket's request — on `first`, the pooled connection it was already handed to,
/// if there was one — and records the outcome; with sessions, then the session's later turns.
/// Then frees its concurrency slot.
async fn run(core: Rc<Core>, rec: Rc<RefCell<Recorder>>, mut t: Ticket, first: Option<PooledConn>) {
    let request = RequestBuf::new(&core.requests.borrow(), t.sample);
    match core.session_plan() {
        None => {
            turn(&core, &rec, &mut t, request, first, None).await;
        }
        Some(plan) => {
            let mut answer = Vec::new();
            let done = turn(&core, &rec, &mut t, request, first, Some(&mut answer)).await;
            let id = core.session_id(t.sample).unwrap_or_default();
            let ended = match done {
                TurnEnd::Done(done_ns) => {
                    session(&core, &rec, (t, id), &plan, answer, done_ns).await
                }
                TurnEnd::Failed => SessionEnd::Failed,
                TurnEnd::Cancelled => SessionEnd::Cancelled,
            };
            if let Some(turns) = rec.borrow_mut().turns.as_mut() {
                let s = &mut turns.sessions;
                match ended {
                    SessionEnd::Completed => s.completed += 1,
                    SessionEnd::Failed => s.ended_by_failure += 1,
                    SessionEnd::Cancelled => s.ended_by_cancel += 1,
                    SessionEnd::AnswerCap => s.ended_by_answer_cap += 1,
                    SessionEnd::Stopped => {}
                }
            }
        }
    }
    core.inflight.set(core.inflight.get() - 1);
    if core.inflight.get() == 0 {
        if let Some(w) = core.idle_waker.borrow_mut().take() {
            w.wake();
        }
    }
    if core.max_inflight != usize::MAX {
        // A slot is free: an arrival the cap held back goes now, from here, without waiting for
        // the pacer; the pacer is woken to arm its timer for what comes next.
        dispatch_due(&core, now_ns());
        if let Some(w) = core.slot_waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// How a session ended.
enum SessionEnd {
    Completed,
    Failed,
    /// A turn was abandoned (`--cancel-rate`).
    Cancelled,
    AnswerCap,
    /// Ctrl-C: its remaining turns were never sent.
    Stopped,
}

/// A session's turns after the first (which succeeded at `done_ns`, answering `answer`): each
/// a think time after the previous one's last byte, on an idle pooled connection of the same
/// endpoint if there is one.
async fn session(
    core: &Rc<Core>,
    rec: &Rc<RefCell<Recorder>>,
    (first, id): (Ticket, u64),
    plan: &SessionPlan,
    mut answer: Vec<u8>,
    mut done_ns: u64,
) -> SessionEnd {
    let turns = plan.turns_of(id);
    if turns <= 1 {
        return SessionEnd::Completed;
    }
    let bytes = core.requests.borrow().get(first.sample);
    let Some(mut history) = Session::start(&bytes, plan.history_key) else {
        // Refused before the run (sessions need an API with a messages array).
        return SessionEnd::Failed;
    };
    drop(bytes);
    for k in 2..=turns {
        if answer.len() > MAX_ANSWER_BYTES {
            return SessionEnd::AnswerCap;
        }
        let intended_ns = done_ns + plan.think_ns(id, k);
        wait_until(core, rec, intended_ns).await;
        if crate::foundation::interrupt::requested() {
            return SessionEnd::Stopped;
        }
        let request = history.next_request(&answer, &plan.user_text(id, k));
        answer.clear();
        let cancel = core.cancels.as_ref().and_then(|c| c.later_turn(id, k));
        let mut t = Ticket {
            intended_ns,
            sent_ns: None,
            waited: false,
            turn: k,
            cancel_at_ns: cancel.map(|after| intended_ns.saturating_add(after)),
            ..first
        };
        let conn = send_now(core, rec, t.endpoint, &request, now_ns());
        if conn.is_some() {
            t.record_send(rec, now_ns());
        }
        match turn(core, rec, &mut t, request, conn, Some(&mut answer)).await {
            TurnEnd::Done(end) => done_ns = end,
            TurnEnd::Failed => return SessionEnd::Failed,
            TurnEnd::Cancelled => return SessionEnd::Cancelled,
        }
    }
    SessionEnd::Completed
}

/// Sleeps until `at_ns` (monotonic) as precisely as an arrival is paced: on monoio's coarse
/// timer until a few ms before (no descriptor held while a session thinks), then with a pacer of
/// its own (`pacer`: a timerfd wake a learned margin early, then fair yields); its spin counts
/// with the level's pacer spin.
async fn wait_until(core: &Core, rec: &RefCell<Recorder>, at_ns: u64) {
    const FINE_NS: u64 = 3_000_000;
    let coarse = at_ns.saturating_sub(FINE_NS);
    if now_ns() < coarse {
        crate::rt::timer::sleep_until_ns(coarse).await;
    }
    let mut pacer = if crate::rt::timer::spin_driven() {
        super::pacer::Pacer::polled()
    } else {
        super::pacer::Pacer::new(core.precise_timers)
    };
    pacer.wait_until(at_ns, || true).await;
    rec.borrow_mut().pacer_spin_ns += pacer.spin_ns;
}

/// How one request ended.
enum TurnEnd {
    /// It succeeded; its response ended then (monotonic ns).
    Done(u64),
    Failed,
    /// Abandoned at its `cancel_at_ns` (`--cancel-rate`): its connection was closed.
    Cancelled,
}

/// One request (a single arrival, or one turn of a session) to its recorded outcome; with
/// `answer`, the answer's text is kept there. An abandoned request's exchange is dropped at its
/// time, which closes its connection: it is never put back in the pool.
async fn turn(
    core: &Rc<Core>,
    rec: &Rc<RefCell<Recorder>>,
    t: &mut Ticket,
    request: impl Request,
    first: Option<PooledConn>,
    answer: Option<&mut Vec<u8>>,
) -> TurnEnd {
    if t.sent_ns.is_none() {
        t.record_send(rec, now_ns());
    }
    let mut trace = core.save_requests.then(Trace::default);
    let attempt = attempt(core, rec, t, request, first, &mut trace, answer);
    let total = core.timeout.as_nanos() as u64;
    let cancel_in = t.cancel_at_ns.map(|at| at.saturating_sub(now_ns()));
    let limit = cancel_in.map_or(total, |c| c.min(total));
    let outcome = match monoio::time::timeout(Duration::from_nanos(limit), attempt).await {
        Ok(o) => Some(o),
        Err(_) if cancel_in.is_some_and(|c| c < total) => None,
        Err(_) => Some(Err((ErrorKind::TimeoutTotal, None))),
    };
    let mut rec = rec.borrow_mut();
    if let Some(trace) = trace {
        let session = core.session_id(t.sample).filter(|_| t.turn > 0);
        rec.records
            .push(trace.into_record(t, core.index, outcome.as_ref(), session));
    }
    let Some(outcome) = outcome else {
        rec.record_cancel(now_ns());
        if let Some(e) = rec.endpoints.get_mut(t.endpoint) {
            e.sent += 1;
        }
        return TurnEnd::Cancelled;
    };
    if let Some(e) = rec.endpoints.get_mut(t.endpoint) {
        e.sent += 1;
        match &outcome {
            Ok(s) => e.success(s.ttft_ns),
            Err((kind, _)) => e.failure(kind),
        }
    }
    match outcome {
        Ok(success) => {
            if core.slo.met(&success) {
                rec.slo_met += 1;
            }
            if let Some(turns) = rec.turns.as_mut().filter(|_| t.turn > 0) {
                turns.success(t.turn, &success);
            }
            rec.record_success(success);
            TurnEnd::Done(success.done_ns)
        }
        Err((kind, body)) => {
            rec.record_failure(now_ns(), kind, body.as_deref());
            TurnEnd::Failed
        }
    }
}

impl Trace {
    fn into_record(
        self,
        t: &Ticket,
        core: u16,
        outcome: Option<&Result<Success, Failed>>,
        session: Option<u64>,
    ) -> RequestRecord {
        let reasoning = match outcome {
            Some(Ok(s)) => s.reasoning,
            _ => Default::default(),
        };
        let (error, output_tokens, source, prompt_tokens, cached_tokens) = match outcome {
            None => (None, None, None, None, None),
            Some(Ok(s)) => (
                None,
                Some(s.output_tokens),
                Some(s.source),
                s.prompt_tokens,
                s.cached_tokens,
            ),
            Some(Err((kind, _))) => (Some(kind.to_string()), None, None, None, None),
        };
        RequestRecord {
            sample: t.sample as u64,
            core,
            warmup: t.warmup,
            intended_ns: t.intended_ns,
            sent_ns: t.sent_ns.unwrap_or(t.intended_ns),
            first_byte_ns: self.first_byte_ns,
            done_ns: now_ns(),
            status: self.status,
            error,
            output_tokens,
            prompt_tokens,
            cached_tokens,
            token_source: source,
            token_reads_ns: self.token_reads_ns,
            session,
            turn: session.map(|_| t.turn),
            cancelled: outcome.is_none(),
            first_answer_ns: reasoning.ttfot_ns.map(|d| t.intended_ns + d),
            reasoning_tokens: reasoning.tokens,
        }
    }
}

/// One exchange on `first` (the pooled connection the request was already written to at
/// dispatch) or on a new connection. Never retried: once written, a request's fate is its
/// outcome, whatever the server did with it.
async fn attempt(
    core: &Rc<Core>,
    rec: &RefCell<Recorder>,
    t: &Ticket,
    request: impl Request,
    first: Option<PooledConn>,
    trace: &mut Option<Trace>,
    answer: Option<&mut Vec<u8>>,
) -> Result<Success, Failed> {
    let ttft_deadline = core
        .ttft_timeout_ns
        .map(|d| t.sent_ns.unwrap_or(t.intended_ns) + d);
    let pool = &core.pools[t.endpoint];
    let mut conn = match first {
        Some(c) => c,
        None => {
            let (c, times) = monoio::time::timeout(core.connect_timeout, pool.connect())
                .await
                .map_err(|_| (ErrorKind::TimeoutConnect, None))?
                .map_err(|e| (ErrorKind::from_connect(e), None))?;
            rec.borrow_mut()
                .record_connect(times.connect_ns, times.handshake_ns, pool.tls());
            c
        }
    };
    let on_read = |t_ns| dispatch_due(core, t_ns);
    let hooks = Hooks {
        chunks: &core.chunks,
        reading: core.reading,
        on_read: &on_read,
        idle_timeout_ns: core.idle_timeout_ns,
    };
    let mut handler = StreamHandler::new(hooks, rec, trace.as_mut(), ttft_deadline);
    if let Some(answer) = answer {
        handler = handler.keeping_answer(answer);
    }
    match conn.exchange(request, &mut handler).await {
        Ok(done) => {
            if done.reusable {
                pool.put(conn, done.end_ns);
            }
            handler.finish(done, t.intended_ns)
        }
        Err(f) => Err(handler.failure(f)),
    }
}
