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
use crate::clock::{now_ns, thread_cpu_ns};
use crate::http::body::BodyError;
use crate::http::conn::{Completed, ExchangeError, Failure, ReadTimeout, ResponseHandler};
use crate::http::head::HeadError;
use crate::openai::ChunkParser;
use crate::outcome::{ErrorKind, Success, TokenSource, ERROR_SAMPLE_BYTES};
use crate::prepared::{CoreRequests, RequestBuf};
use crate::recorder::Recorder;
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
    /// The rendered request of each sample: this core's own handle on the shared buffer
    /// (replaced between levels by `Command::Reset`).
    pub requests: RefCell<CoreRequests>,
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
    /// The core thread's CPU time when the first measured arrival was sent, so that the
    /// warm-up's CPU is not charged to the measured requests.
    pub cpu_at_window_ns: Option<u64>,
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
                    if i == s.measured_from && s.measured_from > 0 {
                        s.cpu_at_window_ns = Some(thread_cpu_ns());
                    }
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
        let (idle, closed) = core.pool.take(now);
        let mut closed_by_server = closed;
        if let Some(mut conn) = idle {
            match conn.try_write_now(core.requests.borrow().get(sample)) {
                Ok(()) => first = Some(conn),
                // The send itself was refused (reset in the instant after the check): nothing
                // was written, so the request starts on a fresh connection.
                Err(_) => closed_by_server += 1,
            }
        }
        if closed_by_server > 0 {
            rec.borrow_mut().idle_closed += closed_by_server;
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
async fn run(core: Rc<Core>, rec: Rc<RefCell<Recorder>>, mut t: Ticket, first: Option<PooledConn>) {
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

/// One exchange on `first` (the pooled connection the request was already written to at
/// dispatch) or on a new connection. Never retried: once written, a request's fate is its
/// outcome, whatever the server did with it.
async fn attempt(
    core: &Rc<Core>,
    rec: &RefCell<Recorder>,
    t: &Ticket,
    first: Option<PooledConn>,
    trace: &mut Option<Trace>,
) -> Result<Success, Failed> {
    let ttft_deadline = core
        .ttft_timeout_ns
        .map(|d| t.sent_ns.unwrap_or(t.intended_ns) + d);
    let request = RequestBuf::new(&core.requests.borrow(), t.sample);
    let mut conn = match first {
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
    let mut handler = StreamHandler::new(core, rec, trace.as_mut(), ttft_deadline);
    match conn.exchange(request, &mut handler).await {
        Ok(done) => {
            if done.reusable {
                core.pool.put(conn, done.end_ns);
            }
            handler.finish(done, t.intended_ns)
        }
        Err(f) => Err(handler.failure(f)),
    }
}

/// A `Stream error` whose message is recorded with it (as the failure's body).
fn stream_error(message: Vec<u8>) -> Failed {
    (ErrorKind::Stream, Some(message))
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
    /// What ended the stream early: its category and, for a stream error, the message.
    error: Option<Failed>,
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
            return Err(e);
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
            done_ns: done.end_ns,
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
            self.error = Some((
                ErrorKind::TooLarge(format!("stream body over {} MiB", MAX_STREAM_BODY >> 20)),
                None,
            ));
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
                    *error = Some(stream_error(ev.data.to_vec()));
                    return Flow::Stop;
                }
                Err(_) => {
                    *error = Some((
                        ErrorKind::Malformed("stream chunk is not JSON".into()),
                        None,
                    ));
                    return Flow::Stop;
                }
            };
            if let Some(msg) = info.error {
                *error = Some(stream_error(msg.into_bytes()));
                return Flow::Stop;
            }
            if ev.error_event {
                *error = Some(stream_error(ev.data.to_vec()));
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
            *error = Some((
                ErrorKind::TooLarge("event stream line over 4 MiB".into()),
                None,
            ));
        }
        error.is_none()
    }
}

#[cfg(test)]
mod tests {
    //! The stream handler on synthetic reads with given timestamps: no network, no clock, no
    //! tolerance. Each read is `(t_ns, bytes)`, fed the way `Conn::exchange` feeds body data.
    use super::*;
    use crate::http::conn::Target;

    const MS: u64 = 1_000_000;

    fn core() -> Rc<Core> {
        Rc::new(Core {
            pool: Pool::new(
                Target {
                    addrs: Vec::new().into(),
                    tls: None,
                },
                1,
            ),
            chunks: RefCell::new(ChunkParser::new()),
            requests: RefCell::new(Rc::default()),
            timeout: Duration::from_secs(1),
            tls: false,
            schedule: RefCell::new(Schedule::default()),
            max_inflight: usize::MAX,
            inflight: Cell::new(0),
            slot_waker: RefCell::new(None),
            idle_waker: RefCell::new(None),
            save_requests: false,
            index: 0,
            slo: Slo::default(),
            connect_timeout: Duration::from_secs(1),
            ttft_timeout_ns: None,
            idle_timeout_ns: None,
        })
    }

    fn content(text: &str) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}]}}\n\n")
    }

    fn content_usage(text: &str, completion: u64) -> String {
        format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}},\"finish_reason\":null}}],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{completion}}}}}\n\n")
    }

    const ROLE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";
    const FINISH: &str =
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn usage(prompt: u64, completion: u64) -> String {
        format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\"completion_tokens\":{completion}}}}}\n\n")
    }

    /// Runs a 200 response made of `reads` through a handler; `intended` is the request's
    /// intended send time. Returns the outcome and the recorder.
    fn run(intended: u64, reads: &[(u64, String)]) -> (Result<Success, Failed>, Recorder) {
        let core = core();
        let rec = RefCell::new(Recorder::new());
        let mut h = StreamHandler::new(&core, &rec, None, None);
        h.on_read(reads[0].0);
        h.head(200, reads[0].0);
        let mut end = 0;
        for (t, data) in reads {
            h.on_read(*t);
            end = *t;
            if !h.body(data.as_bytes(), *t) {
                break;
            }
        }
        let done = Completed {
            end_ns: end,
            first_byte_ns: reads[0].0,
            reusable: true,
        };
        let out = h.finish(done, intended);
        (out, rec.into_inner())
    }

    #[test]
    fn ttft_is_the_first_content_not_the_role_chunk() {
        let (out, rec) = run(
            0,
            &[
                (5 * MS, ROLE.to_string()),
                (50 * MS, content("Hi")),
                (60 * MS, content(" there")),
                (70 * MS, format!("{FINISH}{}{DONE}", usage(12, 2))),
            ],
        );
        let s = out.unwrap();
        assert_eq!(s.ttft_ns, Some(50 * MS));
        assert_eq!(s.ttfb_ns, 5 * MS);
        assert_eq!(s.e2e_ns, 70 * MS);
        assert_eq!(s.done_ns, 70 * MS);
        assert_eq!(s.decode_ns, 10 * MS);
        assert_eq!((s.output_tokens, s.source), (2, TokenSource::Usage));
        assert_eq!(s.prompt_tokens, Some(12));
        assert_eq!(s.token_reads, 2);
        // One gap (50 → 60 ms) carrying one token.
        assert_eq!(rec.itl_us.len(), 1);
        assert_eq!(rec.itl_us.max(), rec.itl_us.highest_equivalent(10_000));
    }

    #[test]
    fn continuous_usage_splits_a_gap_among_the_tokens_it_delivered() {
        let (out, rec) = run(
            0,
            &[
                (10 * MS, content_usage("a", 1)),
                // One chunk carrying three tokens, 12 ms after the first: three gaps of 4 ms.
                (22 * MS, content_usage("bcd", 4)),
                (23 * MS, format!("{FINISH}{DONE}")),
            ],
        );
        let s = out.unwrap();
        assert_eq!((s.output_tokens, s.source), (4, TokenSource::Usage));
        assert_eq!(rec.itl_us.len(), 3);
        assert_eq!(rec.itl_us.min(), rec.itl_us.lowest_equivalent(4_000));
        assert_eq!(rec.itl_us.max(), rec.itl_us.highest_equivalent(4_000));
    }

    #[test]
    fn chunks_in_one_read_are_one_token_read_and_counts_are_estimated_without_usage() {
        let (out, rec) = run(
            0,
            &[
                (10 * MS, format!("{}{}", content("a"), content("b"))),
                (30 * MS, content("c")),
                (31 * MS, format!("{FINISH}{DONE}")),
            ],
        );
        let s = out.unwrap();
        assert_eq!((s.output_tokens, s.source), (3, TokenSource::Estimated));
        assert_eq!(s.token_reads, 2);
        // The 20 ms gap belongs to the one token of the second read.
        assert_eq!(rec.itl_us.len(), 1);
        assert_eq!(rec.itl_us.max(), rec.itl_us.highest_equivalent(20_000));
    }

    #[test]
    fn truncated_streams_and_non_streams_fail_with_their_category() {
        let (out, _) = run(0, &[(10 * MS, content("a")), (20 * MS, content("b"))]);
        assert_eq!(out.unwrap_err().0, ErrorKind::Truncated);
        let (out, _) = run(0, &[(10 * MS, "{\"id\":\"x\"}".to_string())]);
        let kind = out.unwrap_err().0;
        assert!(
            matches!(&kind, ErrorKind::Malformed(m) if m.contains("not an event stream")),
            "{kind:?}"
        );
        let (out, _) = run(0, &[(10 * MS, "data: {not json\n\n".to_string())]);
        assert_eq!(
            out.unwrap_err().0,
            ErrorKind::Malformed("stream chunk is not JSON".into())
        );
    }

    #[test]
    fn stream_errors_keep_their_message_apart_from_the_category() {
        let (out, _) = run(
            0,
            &[
                (10 * MS, content("a")),
                (
                    20 * MS,
                    "data: {\"error\":{\"message\":\"overloaded (req 42)\"}}\n\n".to_string(),
                ),
            ],
        );
        let (kind, message) = out.unwrap_err();
        assert_eq!(kind, ErrorKind::Stream);
        assert_eq!(kind.to_string(), "Stream error");
        assert_eq!(message.as_deref(), Some(&b"overloaded (req 42)"[..]));
    }
}
