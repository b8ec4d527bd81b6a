//! One request, from the moment its task has it to its recorded outcome: a single arrival, or
//! one turn of a session. It is written on the idle pooled connection it was handed at dispatch
//! (or on a new connection), read through the core's `StreamHandler`, bounded by the total
//! timeout and by its abandonment time (`--cancel-rate`), and its outcome is handed to the core's
//! recorder ([`Recorder::record_outcome`]). Never retried: once written, a request's fate is its
//! outcome, whatever the server did with it.
//!
//! Data flow: `dispatch` (an arrival) or `session` (a later turn) → [`send_now`] (the write on an
//! idle connection) → [`complete`] → [`attempt`] (`http::conn::Conn::exchange` with a
//! `StreamHandler`) → the recorder.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use super::core_state::Core;
use super::pool::PooledConn;
use super::stream::{Failed, Hooks, StreamHandler, Trace};
use crate::foundation::clock::now_ns;
use crate::http::handler::Request;
use crate::recording::outcome::{Ended, ErrorKind, Success};
use crate::recording::recorder::Recorder;
use crate::recording::request_log::RequestRecord;

/// One arrival (or a session's later turn), as sent.
#[derive(Clone, Copy)]
pub struct Ticket {
    pub intended_ns: u64,
    /// None until the request's task starts (no idle connection at dispatch).
    pub sent_ns: Option<u64>,
    pub sample: usize,
    /// Which `--endpoint` it goes to.
    pub endpoint: usize,
    pub warmup: bool,
    /// `--max-concurrency` held it back.
    pub waited: bool,
    /// The session turn it is (from 1), or 0 without sessions.
    pub turn: u32,
    /// `--cancel-rate`: when it is abandoned (its connection closed), if it is.
    pub cancel_at_ns: Option<u64>,
}

impl Ticket {
    /// Sent = the moment the request is handed to the socket, or, with no idle connection, the
    /// moment its task starts connecting (which is when the core gets to it: a busy core shows
    /// here as lag); the lag is how late that is against the plan.
    pub fn record_send(&mut self, rec: &RefCell<Recorder>, now: u64) {
        self.sent_ns = Some(now);
        let lag = now.saturating_sub(self.intended_ns);
        rec.borrow_mut()
            .record_send(now, lag, self.waited, self.turn);
    }
}

/// Writes `request` at once on an idle pooled connection of `endpoint`, if there is one:
/// returns that connection. Idle connections the server had closed are counted and dropped.
pub fn send_now(
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
        rec.borrow_mut().record_idle_closed(closed_by_server);
    }
    first
}

/// How one request ended.
pub enum RequestEnd {
    /// It succeeded; its response ended then (monotonic ns).
    Done(u64),
    Failed,
    /// Abandoned at its `cancel_at_ns` (`--cancel-rate`): its connection was closed.
    Cancelled,
}

/// Completes one request (a single arrival, or one turn of a session) and records its outcome;
/// with `answer`, the answer's text is kept there. An abandoned request's exchange is dropped at
/// its time, which closes its connection: it is never put back in the pool.
///
/// A single arrival's request (turn 0) is its task, spawned as it is (`dispatch`), and frees its
/// concurrency slot at its end. It owns what it needs rather than borrow it from a wrapping task:
/// every future a task nests keeps its own copy of its arguments, and the task's size is what
/// each arrival allocates and copies when it is spawned (the send lag pays for it).
///
/// A plain function returning an `async move` block, not an `async fn`: an `async fn` keeps each
/// argument twice in its future (as passed, and as its body's own binding), which here cost a
/// connection's 184 bytes and the ticket's 64 on every task.
// An `async fn` would double the task's largest arguments (above).
#[allow(clippy::manual_async_fn)]
pub fn complete<'a, R: Request + 'a>(
    core: Rc<Core>,
    rec: Rc<RefCell<Recorder>>,
    mut t: Ticket,
    request: R,
    mut first: Option<PooledConn>,
    answer: Option<&'a mut Vec<u8>>,
) -> impl Future<Output = RequestEnd> + 'a {
    async move {
        if t.sent_ns.is_none() {
            t.record_send(&rec, now_ns());
        }
        let mut trace = core.save_requests.then(Trace::default);
        let attempt = attempt(&core, &rec, &t, request, &mut first, &mut trace, answer);
        let total = core.timeout.as_nanos() as u64;
        let cancel_in = t.cancel_at_ns.map(|at| at.saturating_sub(now_ns()));
        let limit = cancel_in.map_or(total, |c| c.min(total));
        let outcome = match monoio::time::timeout(Duration::from_nanos(limit), attempt).await {
            Ok(o) => Some(o),
            Err(_) if cancel_in.is_some_and(|c| c < total) => None,
            Err(_) => Some(Err(Failed::new(ErrorKind::TimeoutTotal))),
        };
        let end = record(&core, &mut rec.borrow_mut(), &t, trace, outcome);
        if t.turn == 0 {
            core.free_slot();
        }
        end
    }
}

/// Hands one request's outcome (`None`: abandoned) and its record to the recorder.
fn record(
    core: &Core,
    rec: &mut Recorder,
    t: &Ticket,
    trace: Option<Trace>,
    outcome: Option<Result<Success, Failed>>,
) -> RequestEnd {
    if let Some(trace) = trace {
        let session = core.session_id(t.sample).filter(|_| t.turn > 0);
        rec.record_request(trace.into_record(t, core.index, outcome.as_ref(), session));
    }
    let (ended, end) = match &outcome {
        None => (Ended::Cancelled { at_ns: now_ns() }, RequestEnd::Cancelled),
        Some(Ok(success)) => (
            Ended::Ok {
                success: *success,
                slo_met: core.slo.met(success),
            },
            RequestEnd::Done(success.done_ns),
        ),
        Some(Err(f)) => (
            Ended::Failed {
                at_ns: now_ns(),
                kind: f.kind.clone(),
                body: f.body.as_deref(),
            },
            RequestEnd::Failed,
        ),
    };
    rec.record_outcome(t.endpoint, t.turn, ended);
    end
}

impl Trace {
    /// The request's line of `requests.jsonl` (`--save-requests`); `outcome` None: abandoned.
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
            Some(Err(f)) => (Some(f.kind.to_string()), None, None, None, None),
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
/// dispatch; taken by reference, so that the future holds one copy of it) or on a new
/// connection.
async fn attempt(
    core: &Rc<Core>,
    rec: &RefCell<Recorder>,
    t: &Ticket,
    request: impl Request,
    first: &mut Option<PooledConn>,
    trace: &mut Option<Trace>,
    answer: Option<&mut Vec<u8>>,
) -> Result<Success, Failed> {
    let ttft_deadline = core
        .ttft_timeout_ns
        .map(|d| t.sent_ns.unwrap_or(t.intended_ns) + d);
    let pool = &core.pools[t.endpoint];
    let mut conn = match first.take() {
        Some(c) => c,
        None => {
            let (c, times) = monoio::time::timeout(core.connect_timeout, pool.connect())
                .await
                .map_err(|_| Failed::new(ErrorKind::TimeoutConnect))?
                .map_err(|e| Failed::new(ErrorKind::from_connect(e)))?;
            rec.borrow_mut()
                .record_connect(times.connect_ns, times.handshake_ns, pool.tls());
            c
        }
    };
    let on_read = |t_ns| (core.dispatch)(core, t_ns);
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
