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
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use bytes::Bytes;

use super::pool::Pool;
use crate::clock::now_ns;
use crate::http::body::BodyError;
use crate::http::conn::{Completed, Conn, ExchangeError, Failure, ReadTimeout, ResponseHandler};
use crate::http::head::HeadError;
use crate::metrics::{ErrorKind, Recorder, Success, TokenSource, ERROR_SAMPLE_BYTES};
use crate::openai::ChunkParser;
use crate::records::RequestRecord;
use crate::sse::{Flow, SseError, SseParser};

/// Error bodies longer than this are not read to the end (the connection is closed instead).
const MAX_ERROR_BODY: usize = 1 << 20;
/// A streamed response longer than this fails as `Response too large` (memory stays bounded
/// even against an endpoint that never stops sending; a 64k-token answer is ~15 MiB of SSE).
pub const MAX_STREAM_BODY: usize = 256 << 20;

/// What a core's request tasks share: owned by the core, never by two threads.
pub struct Core {
    pub pool: Pool,
    pub chunks: RefCell<ChunkParser>,
    /// The rendered request of each sample (replaced between levels by `Command::Requests`).
    pub requests: RefCell<Arc<[Bytes]>>,
    pub timeout: Duration,
    /// The endpoint is `https://`.
    pub tls: bool,
    /// The current level's slice of the arrival schedule.
    pub schedule: RefCell<Schedule>,
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
    /// The concurrency cap holds the next arrival back.
    pub fn capped(&self) -> bool {
        self.inflight.get() >= self.max_inflight
    }
}

/// A core's arrivals for one level and how far it has got.
#[derive(Default)]
pub struct Schedule {
    pub start_ns: u64,
    /// (offset ns from start, sample index), in time order.
    pub arrivals: Vec<(u64, u32)>,
    pub next: usize,
    /// Arrivals before this index are warm-up (`--warmup`): sent, recorded apart.
    pub measured_from: usize,
    /// Arrivals before this index fell due while the concurrency cap held them back.
    pub due_seen: usize,
    pub rec: Rc<RefCell<Recorder>>,
    pub warm_rec: Rc<RefCell<Recorder>>,
}

impl Schedule {
    /// Intended time of the next arrival not yet sent.
    pub fn next_due_ns(&self) -> Option<u64> {
        self.arrivals.get(self.next).map(|a| self.start_ns + a.0)
    }
}

/// Sends every arrival of this core whose intended time has come by `now` (a time just read
/// from the clock; it is re-read after each send).
pub fn dispatch_due(core: &Rc<Core>, mut now: u64) {
    if crate::interrupt::requested() {
        // Ctrl-C: nothing more is sent.
        return;
    }
    loop {
        let (intended, sample, rec, waited, warmup) = {
            let mut s = core.schedule.borrow_mut();
            let s = &mut *s;
            match s.arrivals.get(s.next) {
                Some(&(off, _)) if s.start_ns + off <= now && core.capped() => {
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
                Some(&(off, sample)) if s.start_ns + off <= now => {
                    let i = s.next;
                    s.next += 1;
                    let warmup = i < s.measured_from;
                    let rec = if warmup { &s.warm_rec } else { &s.rec };
                    (
                        s.start_ns + off,
                        sample as usize,
                        rec.clone(),
                        i < s.due_seen,
                        warmup,
                    )
                }
                _ => return,
            }
        };
        core.inflight.set(core.inflight.get() + 1);
        let mut first = None;
        if let Some(mut conn) = core.pool.take() {
            let written = conn.try_write_now(&core.requests.borrow()[sample]);
            match written {
                Ok(()) => first = Some(conn),
                // The server closed this idle connection: the task starts on a fresh one.
                Err(_) => rec.borrow_mut().stale_retries += 1,
            }
        }
        // Sent = the moment the request is handed to the socket, or, with no idle connection,
        // the moment its task starts connecting (which is when the core gets to it: a busy
        // core shows here as lag); the lag is how late that is against the plan.
        let sent_ns = first.is_some().then_some(now);
        if let Some(t) = sent_ns {
            rec.borrow_mut()
                .record_send(t, t.saturating_sub(intended), waited);
        }
        let ticket = Ticket {
            intended_ns: intended,
            sent_ns,
            sample,
            warmup,
            waited,
        };
        // Detached: the level's end waits on `Core::inflight` instead of the handle, so a
        // finished request's task (~3.5 KiB) is freed at once and its memory reused by the next
        // one. Keeping every handle to the level's end held them all: the heap grew by a fresh,
        // page-faulting 16 KiB every few requests (22 MB per level at 3,000 requests/s).
        drop(monoio::spawn(run(core.clone(), rec, ticket, first)));
        now = now_ns();
    }
}

/// A failed request: its category and, for HTTP errors, the start of the body.
type Failed = (ErrorKind, Option<Vec<u8>>);

/// One arrival, as sent.
#[derive(Clone, Copy)]
struct Ticket {
    intended_ns: u64,
    /// None until the request's task starts (no idle connection at dispatch).
    sent_ns: Option<u64>,
    sample: usize,
    warmup: bool,
    /// `--max-concurrency` held it back.
    waited: bool,
}

/// Completes the ticket's request — on `first`, the pooled connection it was already handed to,
/// if there was one — and records the outcome. Then frees its concurrency slot.
async fn run(core: Rc<Core>, rec: Rc<RefCell<Recorder>>, mut t: Ticket, first: Option<Conn>) {
    if t.sent_ns.is_none() {
        let now = now_ns();
        t.sent_ns = Some(now);
        rec.borrow_mut()
            .record_send(now, now.saturating_sub(t.intended_ns), t.waited);
    }
    let mut trace = core.save_requests.then(Trace::default);
    let outcome =
        monoio::time::timeout(core.timeout, attempt(&core, &rec, &t, first, &mut trace)).await;
    {
        let mut rec = rec.borrow_mut();
        let outcome = match outcome {
            Ok(o) => o,
            Err(_) => Err((ErrorKind::TimeoutTotal, None)),
        };
        if let Some(trace) = trace {
            rec.records
                .push(trace.into_record(&t, core.index, &outcome));
        }
        match outcome {
            Ok(success) => {
                if core.slo.met(&success) {
                    rec.slo_met += 1;
                }
                rec.record_success(success)
            }
            Err((kind, body)) => rec.record_error(kind, body.as_deref()),
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

/// What `--save-requests` keeps of one request besides its outcome.
#[derive(Default)]
pub struct Trace {
    status: u16,
    first_byte_ns: Option<u64>,
    /// Times of the reads that carried output tokens.
    token_reads_ns: Vec<u64>,
}

impl Trace {
    fn into_record(
        self,
        t: &Ticket,
        core: u16,
        outcome: &Result<Success, Failed>,
    ) -> RequestRecord {
        let (error, output_tokens, source) = match outcome {
            Ok(s) => (None, Some(s.output_tokens), Some(s.source)),
            Err((kind, _)) => (Some(kind.to_string()), None, None),
        };
        RequestRecord {
            sample: t.sample as u32,
            core,
            warmup: t.warmup,
            intended_ns: t.intended_ns,
            sent_ns: t.sent_ns.unwrap_or(t.intended_ns),
            first_byte_ns: self.first_byte_ns,
            done_ns: now_ns(),
            status: self.status,
            error,
            output_tokens,
            token_source: source,
            token_reads_ns: self.token_reads_ns,
        }
    }
}

async fn attempt(
    core: &Rc<Core>,
    rec: &RefCell<Recorder>,
    t: &Ticket,
    mut first: Option<Conn>,
    trace: &mut Option<Trace>,
) -> Result<Success, Failed> {
    let (intended_ns, sample) = (t.intended_ns, t.sample);
    let ttft_deadline = core
        .ttft_timeout_ns
        .map(|d| t.sent_ns.unwrap_or(intended_ns) + d);
    let request = core.requests.borrow()[sample].clone();
    let mut retried = false;
    loop {
        // The first try uses the connection the request was written to at dispatch, if any; a
        // retry always uses a fresh connection (another idle one may have died the same way).
        let pooled = first.take();
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                let (c, times) = monoio::time::timeout(core.connect_timeout, core.pool.connect())
                    .await
                    .map_err(|_| (ErrorKind::TimeoutConnect, None))?
                    .map_err(|e| (ErrorKind::from_connect(e), None))?;
                rec.borrow_mut()
                    .record_connect(times.connect_ns, times.handshake_ns, core.tls);
                c
            }
        };
        if let Some(t) = trace.as_mut() {
            // A retry starts over.
            *t = Trace::default();
        }
        let mut handler = StreamHandler::new(core, rec, trace.as_mut(), ttft_deadline);
        match conn.exchange(request.clone(), &mut handler).await {
            Ok(done) => {
                if done.reusable {
                    core.pool.put(conn);
                }
                return handler.finish(done, intended_ns);
            }
            Err(f) if reused && !retried && is_stale_connection(&f) => {
                // The server closed this idle connection before our request reached it: not an
                // error of the endpoint under test.
                retried = true;
                rec.borrow_mut().stale_retries += 1;
            }
            Err(f) => return Err(handler.failure(f)),
        }
    }
}

/// Nothing came back and the connection was reset or closed: the signature of a keep-alive
/// connection the server had already closed.
fn is_stale_connection(f: &Failure) -> bool {
    use std::io::ErrorKind as K;
    !f.response_started
        && match &f.error {
            ExchangeError::Closed => true,
            ExchangeError::Io(e) => matches!(
                e.kind(),
                K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted | K::UnexpectedEof
            ),
            _ => false,
        }
}

/// Follows one streamed chat response.
pub struct StreamHandler<'a> {
    core: &'a Rc<Core>,
    rec: &'a RefCell<Recorder>,
    trace: Option<&'a mut Trace>,
    /// `--ttft-timeout`: the first token must be read by then (monotonic ns).
    ttft_deadline: Option<u64>,
    /// The latest read, for `--idle-timeout`.
    last_read_ns: u64,
    /// Body bytes of a 200 answer so far (bounded by [`MAX_STREAM_BODY`]).
    body_bytes: usize,
    /// The latest token-bearing read: tokens it carried so far, and its gap after the previous
    /// one (none for the first). Recorded as ITL when the next token-bearing read (or the end)
    /// comes, once the read's token count is known.
    group_tokens: u64,
    group_gap_ns: Option<u64>,
    /// The running `usage.completion_tokens` seen on content chunks (servers sending continuous
    /// usage stats), to know how many tokens a chunk carries.
    usage_seen: u64,
    status: u16,
    sse: SseParser,
    error_body: Vec<u8>,
    error_body_len: usize,
    first_token_ns: Option<u64>,
    last_token_ns: u64,
    /// Distinct reads that carried output tokens.
    token_reads: u64,
    token_chunks: u64,
    completion_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    finished: bool,
    done: bool,
    /// SSE events seen (a 200 answer without any is not a stream at all).
    events: u64,
    error: Option<ErrorKind>,
}

impl<'a> StreamHandler<'a> {
    pub fn new(
        core: &'a Rc<Core>,
        rec: &'a RefCell<Recorder>,
        trace: Option<&'a mut Trace>,
        ttft_deadline: Option<u64>,
    ) -> Self {
        Self {
            core,
            rec,
            trace,
            ttft_deadline,
            last_read_ns: 0,
            body_bytes: 0,
            group_tokens: 0,
            group_gap_ns: None,
            usage_seen: 0,
            status: 0,
            sse: SseParser::new(),
            error_body: Vec::new(),
            error_body_len: 0,
            first_token_ns: None,
            last_token_ns: 0,
            token_reads: 0,
            token_chunks: 0,
            completion_tokens: None,
            prompt_tokens: None,
            finished: false,
            done: false,
            events: 0,
            error: None,
        }
    }

    /// Records the last token-bearing read's inter-token gaps.
    fn flush_itl(&mut self) {
        if let Some(gap) = self.group_gap_ns.take() {
            self.rec.borrow_mut().record_itl(gap, self.group_tokens);
        }
    }

    /// The outcome of a completed exchange.
    pub fn finish(mut self, done: Completed, intended_ns: u64) -> Result<Success, Failed> {
        self.flush_itl();
        if self.status != 200 {
            return Err((ErrorKind::Http(self.status), Some(self.error_body)));
        }
        if let Some(e) = self.error {
            return Err((e, None));
        }
        if !(self.done || self.finished) {
            let kind = if self.events == 0 {
                // E.g. a server that ignored `stream: true` and answered with one JSON object.
                ErrorKind::Malformed("not an event stream (no data: events)".into())
            } else {
                ErrorKind::Truncated
            };
            return Err((kind, None));
        }
        let (output_tokens, source) = match self.completion_tokens {
            Some(n) => (n, TokenSource::Usage),
            None => (self.token_chunks, TokenSource::Estimated),
        };
        Ok(Success {
            ttft_ns: self.first_token_ns.map(|t| t.saturating_sub(intended_ns)),
            e2e_ns: done.end_ns.saturating_sub(intended_ns),
            output_tokens,
            source,
            prompt_tokens: self.prompt_tokens,
            token_reads: self.token_reads,
            ttfb_ns: done.first_byte_ns.saturating_sub(intended_ns),
            decode_ns: self
                .first_token_ns
                .map_or(0, |first| self.last_token_ns.saturating_sub(first)),
        })
    }

    /// The category of a failed exchange.
    pub fn failure(mut self, f: Failure) -> Failed {
        self.flush_itl();
        if self.status != 0 && self.status != 200 {
            return (ErrorKind::Http(self.status), Some(self.error_body));
        }
        let kind = match f.error {
            ExchangeError::Io(e) => ErrorKind::from_io(&e),
            ExchangeError::Closed if f.response_started => {
                ErrorKind::Malformed("connection closed inside the response head".into())
            }
            ExchangeError::Closed => ErrorKind::ConnectionClosed,
            ExchangeError::Head(e @ HeadError::TooLarge) => ErrorKind::TooLarge(e.to_string()),
            ExchangeError::Head(e) => ErrorKind::Malformed(e.to_string()),
            ExchangeError::Body(BodyError::Truncated) => ErrorKind::Truncated,
            ExchangeError::Body(e) => ErrorKind::Malformed(e.to_string()),
            ExchangeError::Timeout(ReadTimeout::FirstToken) => ErrorKind::TimeoutFirstToken,
            ExchangeError::Timeout(ReadTimeout::Idle) => ErrorKind::TimeoutIdle,
        };
        (kind, None)
    }
}

impl ResponseHandler for StreamHandler<'_> {
    fn read_deadline(&self) -> Option<(u64, ReadTimeout)> {
        let ttft = self
            .ttft_deadline
            .filter(|_| self.first_token_ns.is_none())
            .map(|d| (d, ReadTimeout::FirstToken));
        let idle = self
            .core
            .idle_timeout_ns
            .filter(|_| self.last_read_ns != 0)
            .map(|d| (self.last_read_ns + d, ReadTimeout::Idle));
        match (ttft, idle) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn on_read(&mut self, t_ns: u64) {
        self.last_read_ns = t_ns;
        if let Some(t) = self.trace.as_mut() {
            t.first_byte_ns.get_or_insert(t_ns);
        }
        dispatch_due(self.core, t_ns);
    }

    fn head(&mut self, status: u16, _t_ns: u64) {
        self.status = status;
        if let Some(t) = self.trace.as_mut() {
            t.status = status;
        }
    }

    fn body(&mut self, data: &[u8], t_ns: u64) -> bool {
        if self.status != 200 {
            let room = ERROR_SAMPLE_BYTES.saturating_sub(self.error_body.len());
            self.error_body
                .extend_from_slice(&data[..data.len().min(room)]);
            self.error_body_len += data.len();
            return self.error_body_len <= MAX_ERROR_BODY;
        }
        if self.done {
            // After `data: [DONE]` only the end of the body is read, so the connection is reusable.
            return true;
        }
        self.body_bytes += data.len();
        if self.body_bytes > MAX_STREAM_BODY {
            self.error = Some(ErrorKind::TooLarge(format!(
                "stream body over {} MiB",
                MAX_STREAM_BODY >> 20
            )));
            return false;
        }
        let Self {
            core,
            rec,
            trace,
            group_tokens,
            group_gap_ns,
            usage_seen,
            sse,
            first_token_ns,
            last_token_ns,
            token_reads,
            token_chunks,
            completion_tokens,
            prompt_tokens,
            finished,
            done,
            events,
            error,
            ..
        } = self;
        let mut parser = core.chunks.borrow_mut();
        let fed = sse.feed(data, |ev| {
            *events += 1;
            if ev.is_done() {
                *done = true;
                return Flow::Stop;
            }
            let info = match parser.parse(ev.data) {
                Ok(info) => info,
                Err(_) if ev.error_event => {
                    *error = Some(ErrorKind::stream(&String::from_utf8_lossy(ev.data)));
                    return Flow::Stop;
                }
                Err(_) => {
                    *error = Some(ErrorKind::Malformed("stream chunk is not JSON".into()));
                    return Flow::Stop;
                }
            };
            if let Some(msg) = info.error {
                *error = Some(ErrorKind::stream(&msg));
                return Flow::Stop;
            }
            if ev.error_event {
                *error = Some(ErrorKind::stream(&String::from_utf8_lossy(ev.data)));
                return Flow::Stop;
            }
            if let Some(stamp) = info.sent_stamp_ns {
                // Same machine, same monotonic clock: read time − send time is what the network
                // stack and this client added.
                rec.borrow_mut()
                    .added_delay_ns
                    .saturating_record(t_ns.saturating_sub(stamp));
            }
            if info.has_output {
                first_token_ns.get_or_insert(t_ns);
                if *last_token_ns != t_ns {
                    // A new token-bearing read: the previous one's token count is final.
                    if let Some(gap) = group_gap_ns.take() {
                        rec.borrow_mut().record_itl(gap, *group_tokens);
                    }
                    *group_gap_ns = (*last_token_ns != 0).then(|| t_ns - *last_token_ns);
                    *group_tokens = 0;
                    *last_token_ns = t_ns;
                    *token_reads += 1;
                    if let Some(t) = trace.as_mut() {
                        t.token_reads_ns.push(t_ns);
                    }
                }
                // Tokens in this chunk: the growth of a running usage count when the server
                // sends one with every chunk, else one per content-bearing chunk.
                *group_tokens += match info.completion_tokens {
                    Some(c) if c > *usage_seen => {
                        let k = c - *usage_seen;
                        *usage_seen = c;
                        k
                    }
                    _ => 1,
                };
                *token_chunks += 1;
            }
            *finished |= info.finished;
            if info.completion_tokens.is_some() {
                *completion_tokens = info.completion_tokens;
            }
            if info.prompt_tokens.is_some() {
                *prompt_tokens = info.prompt_tokens;
            }
            Flow::Continue
        });
        if let Err(SseError::TooLong) = fed {
            *error = Some(ErrorKind::TooLarge("event stream line over 4 MiB".into()));
        }
        error.is_none()
    }
}
