//! The hot-path recorder: each core records into its own [`Recorder`] (HdrHistograms and
//! counters; nothing shared between cores), and at the end of a level the engine merges them into
//! one, from which `stats` builds the level's result.
//!
//! Definitions (README.md, "Metric definitions"): latencies are measured from the arrival's
//! intended send time; TTFT is the read that delivered the first non-empty content or reasoning
//! text; E2E is the read that completed the response; tokens/sec is output tokens ÷ E2E.

use std::collections::HashMap;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::recording::live::LiveCounters;
use crate::recording::outcome::{
    Ended, ErrorKind, ErrorStat, Success, TokenSource, ERROR_SAMPLE_BYTES,
};
use crate::recording::request_log::RequestRecord;
use crate::recording::session_counts::SessionEnd;
use crate::recording::timeline::Timeline;

/// Largest latency recorded, in microseconds (one hour); larger values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Tokens/sec are recorded in thousandths.
pub const TPS_SCALE: f64 = 1000.0;
/// Largest tokens/sec recorded (in thousandths): a billion tokens/s, far beyond any stream.
const MAX_TPS_MILLI: u64 = 1_000_000_000_000;
/// The largest token count a histogram tells apart (larger ones are recorded as this).
const MAX_TOKENS: u64 = 1 << 24;
/// Distinct stream error messages a core keeps (the rest are counted as `other`); the level
/// reports the [`STREAM_MESSAGES_SHOWN`] most frequent.
pub const STREAM_MESSAGES_KEPT: usize = 16;
pub const STREAM_MESSAGES_SHOWN: usize = 5;
/// Characters of a stream error message kept.
const STREAM_MESSAGE_CHARS: usize = 200;

/// A stream error message cut to [`STREAM_MESSAGE_CHARS`] bytes on a character boundary.
fn bounded_message(msg: &str) -> &str {
    let mut end = msg.len().min(STREAM_MESSAGE_CHARS);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    &msg[..end]
}

/// Declares the recorder's histograms in one list: each one's field, the name it is saved under
/// in `histograms.json` and its bounds. The struct, its constructor, the merge and the saved list
/// (`each`, `each_mut`) all come from this list, so adding a histogram is one line of it (and
/// the line that records into it).
macro_rules! histograms {
    ($($(#[$doc:meta])* $field:ident: $saved:literal, $make:expr;)+) => {
        /// Every histogram of one recorder.
        #[derive(Debug, Clone)]
        pub struct Histograms {
            $($(#[$doc])* pub $field: Histogram<u64>,)+
        }

        impl Histograms {
            fn new() -> Self {
                Self { $($field: $make,)+ }
            }

            /// Each histogram with the name it is saved under.
            pub fn each(&self) -> impl Iterator<Item = (&'static str, &Histogram<u64>)> {
                [$(($saved, &self.$field)),+].into_iter()
            }

            /// Each histogram with the name it is saved under, to fill.
            pub fn each_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut Histogram<u64>)> {
                [$(($saved, &mut self.$field)),+].into_iter()
            }

            /// Adds another recorder's histograms (same bounds on both sides: `add` cannot fail).
            fn merge(&mut self, other: &Histograms) {
                $(let _ = self.$field.add(&other.$field);)+
            }
        }
    };
}

histograms! {
    /// Time to first token (content or reasoning text), µs (successful requests).
    ttft_us: "ttft_us", histogram(MAX_LATENCY_US);
    /// End-to-end latency, µs (successful requests).
    e2e_us: "e2e_us", histogram(MAX_LATENCY_US);
    /// Time to first byte, µs (successful requests).
    ttfb_us: "ttfb_us", histogram(MAX_LATENCY_US);
    /// Inter-token latency, µs: each gap between token-bearing reads, split evenly among the
    /// tokens of the later read (every token of every HTTP 200 stream).
    itl_us: "itl_us", histogram(MAX_LATENCY_US);
    /// Time per output token after the first, µs (successful requests with 2+ tokens).
    tpot_us: "tpot_us", histogram(MAX_LATENCY_US);
    /// Output tokens ÷ E2E of each success, in thousandths.
    tps_milli: "tokens_per_sec_milli", histogram(MAX_TPS_MILLI);
    /// How late each send was against its intended time, ns (arrivals the cap held back excluded).
    send_lag_ns: "send_lag_ns", histogram(MAX_LATENCY_US * 1000);
    /// Output tokens of each successful request.
    output_tokens_n: "output_tokens", count_histogram();
    /// `usage.prompt_tokens` of each successful request that reported it.
    prompt_tokens_n: "prompt_tokens", count_histogram();
    /// Cached prompt tokens of each successful request that reported them (3 significant
    /// figures: exact to 2,048, within 0.1% above; a fourth would add ~10 MiB of peak memory per
    /// level).
    cached_tokens_n: "cached_prompt_tokens", histogram(MAX_TOKENS);
    /// TCP connect and TLS handshake times of the connections opened, µs.
    connect_us: "connect_us", histogram(MAX_LATENCY_US);
    handshake_us: "tls_handshake_us", histogram(MAX_LATENCY_US);
    /// How long `--max-concurrency` held each capped arrival back, ns.
    cap_wait_ns: "cap_wait_ns", histogram(MAX_LATENCY_US * 1000);
    /// Client's added delay: read time − the endpoint's send stamp (`qpsbench_sent_ns`), per
    /// stamped chunk, ns. Only the built-in endpoint with `--stamp-chunks` stamps chunks.
    added_delay_ns: "client_added_delay_ns", histogram(MAX_LATENCY_US * 1000);
    /// Time to first output token (answer text, after any reasoning), µs.
    ttfot_us: "ttfot_us", histogram(MAX_LATENCY_US);
    /// `reasoning_tokens` of each success that reported them.
    reasoning_tokens_n: "reasoning_tokens", histogram(MAX_TOKENS);
}

/// One core's measurements for one level.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// The histograms, each listed once (`histograms!` above).
    pub hist: Histograms,
    pub cache: crate::recording::outcome::CacheCounts,
    /// Successes that reasoned before answering (`outcome::Reasoning::seen`).
    pub reasoning_requests: u64,
    pub sent: u64,
    pub succeeded: u64,
    /// Requests abandoned by `--cancel-rate` (counted in `sent`, never as errors).
    pub cancelled: u64,
    pub errors: HashMap<ErrorKind, ErrorStat>,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub usage_counted: u64,
    pub estimated_counted: u64,
    /// Idle pooled connections found closed (or with unread bytes, e.g. a TLS close_notify)
    /// when a request came to reuse them, and discarded before the request was written.
    pub idle_closed: u64,
    pub new_connections: u64,
    /// Successful responses with more than one output token, and those of them whose tokens all
    /// arrived in a single read (a sign of a buffering proxy).
    pub multi_token_successes: u64,
    pub single_read_successes: u64,
    /// Earliest and latest actual send times (ns, monotonic clock).
    pub first_send_ns: u64,
    pub last_send_ns: u64,
    /// CPU time of the core's thread during the level.
    pub cpu_ns: u64,
    /// Wall time the pacer spent in its spin phase just before arrivals (other tasks of the core
    /// run during it too); the visible cost of precise pacing.
    pub pacer_spin_ns: u64,
    /// Arrivals that `--max-concurrency` held back, and how long (ns, intended → sent). Their
    /// send lag is this wait, so they are kept out of `send_lag_ns`.
    pub capped: u64,
    /// Actual send times (ns, monotonic), for the goodness-of-fit test of the arrival process.
    /// Moved (not merged) into the level's recorder by the engine.
    pub send_times_ns: Vec<u64>,
    /// Per-request records (`--save-requests`); moved like `send_times_ns`.
    pub records: Vec<RequestRecord>,
    /// Successful requests whose own TTFT and E2E met the SLOs (all successes without SLOs).
    pub slo_met: u64,
    /// The end of the sending window (monotonic ns), set when the level starts: successes
    /// completed by then count toward `in_window_throughput_qps`.
    pub window_end_ns: u64,
    /// Successful requests completed by `window_end_ns`.
    pub ok_in_window: u64,
    /// The latest successful completion (monotonic ns; 0: none): the completion window's end.
    pub last_ok_ns: u64,
    /// Stream error messages and their counts (at most [`STREAM_MESSAGES_KEPT`] distinct), and
    /// how many did not fit.
    pub stream_messages: Vec<(String, u64)>,
    pub stream_messages_other: u64,
    /// Sends and outcomes per second of the measured window (`timeline.jsonl`).
    pub timeline: Timeline,
    /// The core's live counters, published for the progress line (measured window only).
    pub live: Option<Arc<LiveCounters>>,
    /// With several `--endpoint`s: what each got (empty with one).
    pub endpoints: Vec<crate::recording::endpoints::EndpointRecorder>,
    /// With sessions (`--session-turns`): the sessions' counts and each turn's figures.
    pub turns: Option<Box<crate::recording::session_counts::Turns>>,
}

fn histogram(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).expect("static histogram bounds are valid")
}

/// Token counts, exact up to 16,383 (4 significant figures: a prompt of 3,004 tokens reads as
/// 3,004, not as the 3,005 that closes its 3-figure bucket); ~700 KB.
fn count_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TOKENS, 4).expect("static histogram bounds are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: Histograms::new(),
            cache: Default::default(),
            reasoning_requests: 0,
            sent: 0,
            succeeded: 0,
            cancelled: 0,
            errors: HashMap::new(),
            output_tokens: 0,
            prompt_tokens: 0,
            usage_counted: 0,
            estimated_counted: 0,
            idle_closed: 0,
            new_connections: 0,
            multi_token_successes: 0,
            single_read_successes: 0,
            first_send_ns: u64::MAX,
            last_send_ns: 0,
            cpu_ns: 0,
            pacer_spin_ns: 0,
            capped: 0,
            send_times_ns: Vec::new(),
            records: Vec::new(),
            slo_met: 0,
            window_end_ns: u64::MAX,
            ok_in_window: 0,
            last_ok_ns: 0,
            stream_messages: Vec::new(),
            timeline: Timeline::default(),
            live: None,
            stream_messages_other: 0,
            endpoints: Vec::new(),
            turns: None,
        }
    }

    /// A request was handed to its connection at `sent_ns`, `lag_ns` after its intended time;
    /// `capped`: `--max-concurrency` held it back (the lag is then that wait, not the client's).
    /// `turn`: the session turn it is (from 1), or 0 without sessions. A session's turn after
    /// the first (due the previous turn's end plus the think time) counts as a request and in
    /// the send lag, but is not an arrival of the plan, so it stays out of the arrival gaps
    /// (`send_times_ns`).
    pub fn record_send(&mut self, sent_ns: u64, lag_ns: u64, capped: bool, turn: u32) {
        self.count_send(sent_ns, lag_ns, capped && turn <= 1);
        if turn <= 1 {
            self.send_times_ns.push(sent_ns);
        }
        if let Some(turns) = self.turns.as_mut().filter(|_| turn > 0) {
            turns.sent(turn);
        }
    }

    fn count_send(&mut self, sent_ns: u64, lag_ns: u64, capped: bool) {
        self.sent += 1;
        self.timeline.sent(sent_ns);
        if let Some(l) = &self.live {
            l.sent(lag_ns);
        }
        if capped {
            self.capped += 1;
            self.hist.cap_wait_ns.saturating_record(lag_ns);
        } else {
            self.hist.send_lag_ns.saturating_record(lag_ns);
        }
        self.first_send_ns = self.first_send_ns.min(sent_ns);
        self.last_send_ns = self.last_send_ns.max(sent_ns);
    }

    /// `tokens` tokens arrived `gap_ns` after the previous token-bearing read: `tokens` gaps of
    /// `gap_ns / tokens` each.
    pub fn record_itl(&mut self, gap_ns: u64, tokens: u64) {
        if let Some(each) = gap_ns.checked_div(tokens) {
            let _ = self
                .hist
                .itl_us
                .record_n((each / 1000).min(MAX_LATENCY_US), tokens);
        }
    }

    /// A connection was opened.
    pub fn record_connect(&mut self, connect_ns: u64, handshake_ns: u64, tls: bool) {
        self.new_connections += 1;
        self.hist.connect_us.saturating_record(connect_ns / 1000);
        if tls {
            self.hist
                .handshake_us
                .saturating_record(handshake_ns / 1000);
        }
    }

    pub fn record_success(&mut self, s: Success) {
        self.succeeded += 1;
        self.timeline.ok(&s);
        if let Some(l) = &self.live {
            l.ok(s.ttft_ns);
        }
        if s.output_tokens > 1 {
            self.multi_token_successes += 1;
            if s.token_reads == 1 {
                self.single_read_successes += 1;
            }
        }
        if let Some(t) = s.ttft_ns {
            self.hist.ttft_us.saturating_record(t / 1000);
        }
        if let Some(t) = s.reasoning.ttfot_ns {
            self.hist.ttfot_us.saturating_record(t / 1000);
        }
        if let Some(n) = s.reasoning.tokens {
            self.hist.reasoning_tokens_n.saturating_record(n);
        }
        if s.reasoning.seen(s.ttft_ns) {
            self.reasoning_requests += 1;
        }
        self.hist.e2e_us.saturating_record(s.e2e_ns / 1000);
        self.hist.ttfb_us.saturating_record(s.ttfb_ns / 1000);
        if s.output_tokens > 1 {
            self.hist
                .tpot_us
                .saturating_record(s.decode_ns / (s.output_tokens - 1) / 1000);
        }
        let secs = s.e2e_ns.max(1) as f64 / 1e9;
        self.hist
            .tps_milli
            .saturating_record((s.output_tokens as f64 / secs * TPS_SCALE) as u64);
        self.output_tokens += s.output_tokens;
        self.prompt_tokens += s.prompt_tokens.unwrap_or(0);
        self.hist.output_tokens_n.saturating_record(s.output_tokens);
        if let Some(p) = s.prompt_tokens {
            self.hist.prompt_tokens_n.saturating_record(p);
        }
        if let Some(c) = s.cached_tokens {
            // Zero is a value here (nothing came from the cache), so it is recorded too.
            self.hist.cached_tokens_n.saturating_record(c);
            self.cache.record(c, s.prompt_tokens);
        }
        self.last_ok_ns = self.last_ok_ns.max(s.done_ns);
        if s.done_ns <= self.window_end_ns {
            self.ok_in_window += 1;
        }
        match s.source {
            TokenSource::Usage => self.usage_counted += 1,
            TokenSource::Estimated => self.estimated_counted += 1,
        }
    }

    /// How one request to endpoint `endpoint` ended (`turn`: its session turn from 1, or 0):
    /// counted in the level's totals, its endpoint's, its session turn's and the timeline.
    pub fn record_outcome(&mut self, endpoint: usize, turn: u32, ended: Ended<'_>) {
        if let Some(e) = self.endpoints.get_mut(endpoint) {
            e.sent += 1;
            match &ended {
                Ended::Ok { success, .. } => e.success(success.ttft_ns),
                Ended::Failed { kind, .. } => e.failure(kind),
                Ended::Cancelled { .. } => {}
            }
        }
        match ended {
            Ended::Ok { success, slo_met } => {
                self.slo_met += u64::from(slo_met);
                if let Some(turns) = self.turns.as_mut().filter(|_| turn > 0) {
                    turns.success(turn, &success);
                }
                self.record_success(success);
            }
            Ended::Failed { at_ns, kind, body } => self.record_failure(at_ns, kind, body),
            Ended::Cancelled { at_ns } => self.record_cancel(at_ns),
        }
    }

    /// A session ended (counted with sessions only).
    pub fn record_session_end(&mut self, how: SessionEnd) {
        if let Some(turns) = self.turns.as_mut() {
            turns.sessions.ended(how);
        }
    }

    /// Idle pooled connections found closed when a request came to reuse them.
    pub fn record_idle_closed(&mut self, n: u64) {
        self.idle_closed += n;
    }

    /// Time a pacer spun before an arrival or a session's turn.
    pub fn record_pacer_spin(&mut self, ns: u64) {
        self.pacer_spin_ns += ns;
    }

    /// One request's record (`--save-requests`).
    pub fn record_request(&mut self, record: RequestRecord) {
        self.records.push(record);
    }

    /// A request was abandoned at `t_ns` (`--cancel-rate`): it ended, neither ok nor failed.
    fn record_cancel(&mut self, t_ns: u64) {
        self.cancelled += 1;
        self.timeline.cancelled(t_ns);
        if let Some(l) = &self.live {
            l.cancelled();
        }
    }

    /// A request that failed at `done_ns` (monotonic) with `kind`: counted, and placed in the
    /// timeline; `sample` is the start of an HTTP error's body, or a stream error's message.
    pub fn record_failure(&mut self, done_ns: u64, kind: ErrorKind, sample: Option<&[u8]>) {
        self.timeline.failed(done_ns, &kind);
        if let Some(l) = &self.live {
            l.failed();
        }
        self.record_error(kind, sample);
    }

    pub fn record_error(&mut self, kind: ErrorKind, sample: Option<&[u8]>) {
        if kind == ErrorKind::Stream {
            let message = String::from_utf8_lossy(sample.unwrap_or_default());
            self.count_stream_message(bounded_message(&message), 1, STREAM_MESSAGES_KEPT);
        }
        let stat = self.errors.entry(kind).or_default();
        stat.count += 1;
        if stat.sample.is_none() {
            if let Some(body) = sample.filter(|b| !b.is_empty()) {
                let body = &body[..body.len().min(ERROR_SAMPLE_BYTES)];
                stat.sample = Some(String::from_utf8_lossy(body).into_owned());
            }
        }
    }

    /// An error object or event inside the stream: one `Stream error`, its message counted.
    pub fn record_stream_error(&mut self, message: &str) {
        self.record_error(ErrorKind::Stream, Some(message.as_bytes()));
    }

    /// Counts `n` of `message`, keeping at most `limit` distinct ones.
    fn count_stream_message(&mut self, message: &str, n: u64, limit: usize) {
        if let Some(entry) = self.stream_messages.iter_mut().find(|(m, _)| m == message) {
            entry.1 += n;
        } else if self.stream_messages.len() < limit {
            self.stream_messages.push((message.to_string(), n));
        } else {
            self.stream_messages_other += n;
        }
    }

    /// Adds another core's measurements into this one.
    pub fn merge(&mut self, other: &Recorder) {
        self.hist.merge(&other.hist);
        self.cache.merge(&other.cache);
        self.reasoning_requests += other.reasoning_requests;
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        self.cancelled += other.cancelled;
        self.timeline.merge(&other.timeline);
        for (k, v) in &other.errors {
            let stat = self.errors.entry(k.clone()).or_default();
            stat.count += v.count;
            if stat.sample.is_none() {
                stat.sample.clone_from(&v.sample);
            }
        }
        self.output_tokens += other.output_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.usage_counted += other.usage_counted;
        self.estimated_counted += other.estimated_counted;
        self.idle_closed += other.idle_closed;
        self.new_connections += other.new_connections;
        self.multi_token_successes += other.multi_token_successes;
        self.single_read_successes += other.single_read_successes;
        self.first_send_ns = self.first_send_ns.min(other.first_send_ns);
        self.last_send_ns = self.last_send_ns.max(other.last_send_ns);
        self.cpu_ns += other.cpu_ns;
        self.pacer_spin_ns += other.pacer_spin_ns;
        self.capped += other.capped;
        self.slo_met += other.slo_met;
        if let Some(o) = &other.turns {
            self.turns.get_or_insert_with(Default::default).merge(o);
        }
        self.ok_in_window += other.ok_in_window;
        self.last_ok_ns = self.last_ok_ns.max(other.last_ok_ns);
        // Every core has the same window; a fresh recorder has none (MAX).
        self.window_end_ns = self.window_end_ns.min(other.window_end_ns);
        // Merged whole (each core kept at most STREAM_MESSAGES_KEPT): a message frequent on
        // one core must not be lost because another core's messages came first.
        for (m, n) in &other.stream_messages {
            self.count_stream_message(m, *n, usize::MAX);
        }
        self.stream_messages_other += other.stream_messages_other;
        if self.endpoints.len() < other.endpoints.len() {
            self.endpoints
                .resize_with(other.endpoints.len(), Default::default);
        }
        for (mine, theirs) in self.endpoints.iter_mut().zip(&other.endpoints) {
            mine.merge(theirs);
        }
    }
}
