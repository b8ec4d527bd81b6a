//! Following one streamed response as it arrives: the [`StreamHandler`] that the connection
//! hands each read's bytes (with the read's time) and that turns them, through `sse` and the
//! API's event reader (`api`), into TTFT, inter-token gaps, token counts and the request's
//! outcome. An embeddings answer is one JSON object instead: it is kept as it is read and
//! checked once at its end (`api::embeddings`).
//!
//! Every time is the time of the read that delivered the bytes, taken before any parsing.

use std::cell::RefCell;

use crate::api::openai::{ChunkParser, Inspect};
use crate::cli::Api;
use crate::http::body::BodyError;
use crate::http::conn::{Completed, ExchangeError, Failure, ReadTimeout, ResponseHandler};
use crate::http::head::HeadError;
use crate::http::sse::{Event, Flow, SseError, SseParser};
use crate::recording::outcome::{ErrorKind, Success, TokenSource, ERROR_SAMPLE_BYTES};
use crate::recording::recorder::Recorder;

/// Error bodies longer than this are not read to the end (the connection is closed instead).
const MAX_ERROR_BODY: usize = 1 << 20;
/// A streamed response longer than this fails as `Response too large` (memory stays bounded
/// even against an endpoint that never stops sending; a 64k-token answer is ~15 MiB of SSE).
pub const MAX_STREAM_BODY: usize = 256 << 20;

/// A failed request: its category and, for HTTP errors, the start of the body (for a stream
/// error, its message).
#[derive(Debug)]
pub struct Failed {
    pub kind: ErrorKind,
    pub body: Option<Vec<u8>>,
}

impl Failed {
    /// A failure with nothing of the server's to keep.
    pub fn new(kind: ErrorKind) -> Self {
        Self { kind, body: None }
    }

    /// A failure with the server's text.
    pub fn with_body(kind: ErrorKind, body: Vec<u8>) -> Self {
        Self {
            kind,
            body: Some(body),
        }
    }
}

/// What `--save-requests` keeps of one request besides its outcome.
#[derive(Default)]
pub struct Trace {
    pub status: u16,
    pub first_byte_ns: Option<u64>,
    /// Times of the reads that carried output tokens.
    pub token_reads_ns: Vec<u64>,
}

/// How a run's answers are read.
#[derive(Clone, Copy)]
pub enum Reading {
    /// An event stream, each event's JSON read by the API's reader.
    Events(Inspect),
    /// One JSON answer that must hold an embedding for each of `inputs` inputs.
    Embeddings { inputs: u64 },
}

impl Reading {
    /// How `api`'s answers are read (`batch`: `--embedding-batch`).
    pub fn of(api: Api, batch: u32) -> Self {
        match api {
            Api::Chat | Api::Completions => Self::Events(crate::api::openai::inspect),
            Api::Responses => Self::Events(crate::api::responses::inspect),
            Api::Messages => Self::Events(crate::api::anthropic::inspect),
            Api::Embeddings => Self::Embeddings {
                inputs: u64::from(batch.max(1)),
            },
        }
    }
}

/// What a stream handler needs from its core.
#[derive(Clone, Copy)]
pub struct Hooks<'a> {
    pub chunks: &'a RefCell<ChunkParser>,
    pub reading: Reading,
    pub on_read: &'a dyn Fn(u64),
    pub idle_timeout_ns: Option<u64>,
}

/// A `Stream error` whose message is recorded with it (as the failure's body).
fn stream_error(message: Vec<u8>) -> Failed {
    Failed::with_body(ErrorKind::Stream, message)
}

/// Follows one streamed chat response.
pub struct StreamHandler<'a> {
    /// The core's chunk parser (reused by every stream of the core).
    chunks: &'a RefCell<ChunkParser>,
    reading: Reading,
    /// An embeddings answer's bytes so far (bounded by [`MAX_STREAM_BODY`]).
    json: Vec<u8>,
    /// Called with each read's time before its bytes are parsed: the engine sends arrivals
    /// that fell due meanwhile.
    on_read: &'a dyn Fn(u64),
    /// `--idle-timeout`, ns.
    idle_timeout_ns: Option<u64>,
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
    /// The first read with answer text (not only reasoning): TTFOT.
    first_answer_ns: Option<u64>,
    reasoning_tokens: Option<u64>,
    last_token_ns: u64,
    /// Distinct reads that carried output tokens.
    token_reads: u64,
    token_chunks: u64,
    completion_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    finished: bool,
    done: bool,
    /// SSE events seen (a 200 answer without any is not a stream at all).
    events: u64,
    /// What ended the stream early: its category and, for a stream error, the message.
    error: Option<Failed>,
    /// A session's turn: the answer's text is kept here, until it passes
    /// `session_plan::MAX_ANSWER_BYTES` (then no more is kept, and the caller ends the session).
    answer: Option<&'a mut Vec<u8>>,
}

impl<'a> StreamHandler<'a> {
    pub fn new(
        hooks: Hooks<'a>,
        rec: &'a RefCell<Recorder>,
        trace: Option<&'a mut Trace>,
        ttft_deadline: Option<u64>,
    ) -> Self {
        Self {
            chunks: hooks.chunks,
            reading: hooks.reading,
            json: Vec::new(),
            on_read: hooks.on_read,
            idle_timeout_ns: hooks.idle_timeout_ns,
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
            first_answer_ns: None,
            reasoning_tokens: None,
            last_token_ns: 0,
            token_reads: 0,
            token_chunks: 0,
            completion_tokens: None,
            prompt_tokens: None,
            cached_tokens: None,
            finished: false,
            done: false,
            events: 0,
            error: None,
            answer: None,
        }
    }

    /// Keeps the answer's text in `answer` (a session's turn).
    pub fn keeping_answer(mut self, answer: &'a mut Vec<u8>) -> Self {
        self.answer = Some(answer);
        self
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
            return Err(Failed::with_body(
                ErrorKind::Http(self.status),
                self.error_body,
            ));
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Reading::Embeddings { inputs } = self.reading {
            return self.embeddings(inputs, done, intended_ns);
        }
        if !(self.done || self.finished) {
            let kind = if self.events == 0 {
                // E.g. a server that ignored `stream: true` and answered with one JSON object.
                ErrorKind::Malformed("not an event stream (no data: events)".into())
            } else {
                ErrorKind::Truncated
            };
            return Err(Failed::new(kind));
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
            cached_tokens: self.cached_tokens,
            token_reads: self.token_reads,
            ttfb_ns: done.first_byte_ns.saturating_sub(intended_ns),
            decode_ns: self
                .first_token_ns
                .map_or(0, |first| self.last_token_ns.saturating_sub(first)),
            done_ns: done.end_ns,
            reasoning: crate::recording::outcome::Reasoning {
                ttfot_ns: self.first_answer_ns.map(|t| t.saturating_sub(intended_ns)),
                tokens: self.reasoning_tokens,
            },
        })
    }

    /// The category of a failed exchange.
    pub fn failure(mut self, f: Failure) -> Failed {
        self.flush_itl();
        if self.status != 0 && self.status != 200 {
            return Failed::with_body(ErrorKind::Http(self.status), self.error_body);
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
        Failed::new(kind)
    }
}

impl ResponseHandler for StreamHandler<'_> {
    fn read_deadline(&self) -> Option<(u64, ReadTimeout)> {
        let ttft = self
            .ttft_deadline
            .filter(|_| self.first_token_ns.is_none())
            .map(|d| (d, ReadTimeout::FirstToken));
        let idle = self
            .idle_timeout_ns
            .filter(|_| self.last_read_ns != 0)
            .map(|d| (self.last_read_ns + d, ReadTimeout::Idle));
        match (ttft, idle) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    fn on_read(&mut self, t_ns: u64) {
        crate::rt::note_work();
        self.last_read_ns = t_ns;
        if let Some(t) = self.trace.as_mut() {
            t.first_byte_ns.get_or_insert(t_ns);
        }
        (self.on_read)(t_ns);
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
            let what = format!("stream body over {} MiB", MAX_STREAM_BODY >> 20);
            self.error = Some(Failed::new(ErrorKind::TooLarge(what)));
            return false;
        }
        if let Reading::Embeddings { .. } = self.reading {
            // `--ttft-timeout` bounds an embedding's first byte (it has no token; its TTFT is
            // left out of the figures).
            self.first_token_ns.get_or_insert(t_ns);
            self.json.extend_from_slice(data);
            return true;
        }
        // The SSE parser is moved out for the feed (a move, no allocation), so that each event
        // can update the handler.
        let mut sse = std::mem::take(&mut self.sse);
        let chunks = self.chunks;
        let mut parser = chunks.borrow_mut();
        let fed = sse.feed(data, |ev| self.on_event(&ev, t_ns, &mut parser));
        self.sse = sse;
        if let Err(SseError::TooLong) = fed {
            let what = "event stream line over 4 MiB".to_string();
            self.error = Some(Failed::new(ErrorKind::TooLarge(what)));
        }
        self.error.is_none()
    }
}

impl StreamHandler<'_> {
    /// One SSE event of a 200 answer, read at `t_ns`.
    fn on_event(&mut self, ev: &Event<'_>, t_ns: u64, parser: &mut ChunkParser) -> Flow {
        self.events += 1;
        if ev.is_done() {
            self.done = true;
            return Flow::Stop;
        }
        let Reading::Events(inspect) = self.reading else {
            unreachable!("embeddings answers are not event streams");
        };
        let info = match parser.parse_with(ev.data, self.answer.as_deref_mut(), inspect) {
            Ok(info) => info,
            Err(_) if ev.error_event => return self.stop(stream_error(ev.data.to_vec())),
            Err(_) => {
                let kind = ErrorKind::Malformed("stream chunk is not JSON".into());
                return self.stop(Failed::new(kind));
            }
        };
        if let Some(msg) = info.error {
            return self.stop(stream_error(msg.into_bytes()));
        }
        if self
            .answer
            .as_ref()
            .is_some_and(|a| a.len() > super::session_plan::MAX_ANSWER_BYTES)
        {
            // Past the cap nothing more is kept; the turn itself is measured to its end.
            self.answer = None;
        }
        if ev.error_event {
            return self.stop(stream_error(ev.data.to_vec()));
        }
        if let Some(stamp) = info.sent_stamp_ns {
            // Same machine, same monotonic clock: read time − send time is what the network
            // stack and this client added.
            self.rec
                .borrow_mut()
                .hist
                .added_delay_ns
                .saturating_record(t_ns.saturating_sub(stamp));
        }
        if info.has_output {
            self.count_tokens(info.completion_tokens, t_ns);
        }
        if info.has_answer {
            self.first_answer_ns.get_or_insert(t_ns);
        }
        if info.reasoning_tokens.is_some() {
            self.reasoning_tokens = info.reasoning_tokens;
        }
        self.finished |= info.finished;
        if info.completion_tokens.is_some() {
            self.completion_tokens = info.completion_tokens;
        }
        if info.prompt_tokens.is_some() {
            self.prompt_tokens = info.prompt_tokens;
        }
        if info.cached_tokens.is_some() {
            self.cached_tokens = info.cached_tokens;
        }
        Flow::Continue
    }

    /// The outcome of an embeddings answer to `inputs` inputs, read whole.
    fn embeddings(self, inputs: u64, done: Completed, intended_ns: u64) -> Result<Success, Failed> {
        use crate::api::embeddings::{check, Refusal};
        let answer = check(&self.json, inputs).map_err(|r| match r {
            Refusal::Malformed(why) => Failed::new(ErrorKind::Malformed(why)),
            Refusal::Error(message) => stream_error(message.into_bytes()),
        })?;
        Ok(Success {
            ttft_ns: None,
            e2e_ns: done.end_ns.saturating_sub(intended_ns),
            output_tokens: 0,
            source: TokenSource::Usage,
            prompt_tokens: answer.prompt_tokens,
            cached_tokens: None,
            token_reads: 0,
            ttfb_ns: done.first_byte_ns.saturating_sub(intended_ns),
            decode_ns: 0,
            done_ns: done.end_ns,
            reasoning: Default::default(),
        })
    }

    fn stop(&mut self, failed: Failed) -> Flow {
        self.error = Some(failed);
        Flow::Stop
    }

    /// A content-bearing chunk read at `t_ns`; `completion` is its running usage count, if any.
    fn count_tokens(&mut self, completion: Option<u64>, t_ns: u64) {
        self.first_token_ns.get_or_insert(t_ns);
        if self.last_token_ns != t_ns {
            // A new token-bearing read: the previous one's token count is final.
            self.flush_itl();
            self.group_gap_ns = (self.last_token_ns != 0).then(|| t_ns - self.last_token_ns);
            self.group_tokens = 0;
            self.last_token_ns = t_ns;
            self.token_reads += 1;
            if let Some(t) = self.trace.as_mut() {
                t.token_reads_ns.push(t_ns);
            }
        }
        // Tokens in this chunk: the growth of a running usage count when the server sends one
        // with every chunk, else one per content-bearing chunk.
        self.group_tokens += match completion {
            Some(c) if c > self.usage_seen => {
                let k = c - self.usage_seen;
                self.usage_seen = c;
                k
            }
            _ => 1,
        };
        self.token_chunks += 1;
    }
}

#[cfg(test)]
mod tests {
    //! The stream handler on synthetic reads with given timestamps: no network, no clock, no
    //! tolerance. Each read is `(t_ns, bytes)`, fed the way `Conn::exchange` feeds body data.
    use super::*;

    const MS: u64 = 1_000_000;

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
        let chunks = RefCell::new(ChunkParser::new());
        let reads_seen = std::cell::Cell::new(0);
        let on_read = |_| reads_seen.set(reads_seen.get() + 1);
        let hooks = Hooks {
            chunks: &chunks,
            reading: Reading::of(Api::Chat, 1),
            on_read: &on_read,
            idle_timeout_ns: None,
        };
        let rec = RefCell::new(Recorder::new());
        let mut h = StreamHandler::new(hooks, &rec, None, None);
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
        // The engine heard of every read (to send what fell due), the head's included.
        assert_eq!(reads_seen.get(), reads.len() + 1);
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
        assert_eq!(rec.hist.itl_us.len(), 1);
        assert_eq!(
            rec.hist.itl_us.max(),
            rec.hist.itl_us.highest_equivalent(10_000)
        );
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
        assert_eq!(rec.hist.itl_us.len(), 3);
        assert_eq!(
            rec.hist.itl_us.min(),
            rec.hist.itl_us.lowest_equivalent(4_000)
        );
        assert_eq!(
            rec.hist.itl_us.max(),
            rec.hist.itl_us.highest_equivalent(4_000)
        );
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
        assert_eq!(rec.hist.itl_us.len(), 1);
        assert_eq!(
            rec.hist.itl_us.max(),
            rec.hist.itl_us.highest_equivalent(20_000)
        );
    }

    #[test]
    fn truncated_streams_and_non_streams_fail_with_their_category() {
        let (out, _) = run(0, &[(10 * MS, content("a")), (20 * MS, content("b"))]);
        assert_eq!(out.unwrap_err().kind, ErrorKind::Truncated);
        let (out, _) = run(0, &[(10 * MS, "{\"id\":\"x\"}".to_string())]);
        let kind = out.unwrap_err().kind;
        assert!(
            matches!(&kind, ErrorKind::Malformed(m) if m.contains("not an event stream")),
            "{kind:?}"
        );
        let (out, _) = run(0, &[(10 * MS, "data: {not json\n\n".to_string())]);
        assert_eq!(
            out.unwrap_err().kind,
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
        let Failed {
            kind,
            body: message,
        } = out.unwrap_err();
        assert_eq!(kind, ErrorKind::Stream);
        assert_eq!(kind.to_string(), "Stream error");
        assert_eq!(message.as_deref(), Some(&b"overloaded (req 42)"[..]));
    }
}
