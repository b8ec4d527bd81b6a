//! Measurements: each core records into its own [`Recorder`] (HdrHistograms and counters, no
//! sharing); at the end of a level the recorders are merged into one [`LevelStats`], the per-level
//! object written to `benchmark_qps_results.json` and shown in the console table.
//!
//! Definitions (README.md, "Metric definitions"): latencies are measured from the arrival's intended send time; TTFT is
//! the read that delivered the first non-empty content or reasoning text; E2E is the read that
//! completed the response; tokens/sec is output tokens ÷ E2E; output tokens come from
//! `usage.completion_tokens` when the server sends it, else the count of content-bearing chunks
//! (labelled `estimated`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Largest latency recorded, in microseconds (one hour); larger values are clamped.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Tokens/sec are recorded in thousandths.
const TPS_SCALE: f64 = 1000.0;
/// Largest tokens/sec recorded (in thousandths): a billion tokens/s, far beyond any stream.
const MAX_TPS_MILLI: u64 = 1_000_000_000_000;
/// Bytes of an error response body kept as that error's sample.
pub const ERROR_SAMPLE_BYTES: usize = 512;

/// The stable category of a failed request: the key in `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// A status other than 200.
    Http(u16),
    /// `--timeout` elapsed.
    TimeoutTotal,
    /// `--connect-timeout` elapsed (TCP connect and TLS handshake).
    TimeoutConnect,
    /// `--ttft-timeout` elapsed before the first output token.
    TimeoutFirstToken,
    /// `--idle-timeout` elapsed between reads.
    TimeoutIdle,
    ConnectionRefused,
    ConnectionReset,
    /// The server closed the connection before sending a response head.
    ConnectionClosed,
    /// Any other socket error, by its kind.
    Io(String),
    /// Not HTTP, bad framing, or a chunk that is not JSON.
    Malformed(String),
    /// The body or the stream ended before the response was complete.
    Truncated,
    /// An `error` object (or `event: error`) inside the stream. One category whatever the
    /// message (servers put request ids in them); the messages are counted apart
    /// ([`Recorder::stream_messages`]).
    Stream,
    /// The kernel gave up on the connection (`ETIMEDOUT`: no answer to retransmissions or
    /// keep-alive probes), as distinct from qpsbench's own `--timeout`.
    ConnectionTimedOut,
    /// The client hit its own open-file limit (or the engine's reserve below it): the
    /// request never reached the endpoint.
    OutOfFds,
    /// The kernel had no local port left for another connection to the endpoint.
    NoEphemeralPort,
    /// A TLS handshake or record failure, by category (`unknown issuer`, `name mismatch`, …).
    Tls(String),
    /// A response over one of the memory bounds (head, event line, body), by which.
    TooLarge(String),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Http(code) => write!(f, "HTTP {code}"),
            ErrorKind::TimeoutTotal => f.write_str("Timeout (total)"),
            ErrorKind::TimeoutConnect => f.write_str("Timeout (connect)"),
            ErrorKind::TimeoutFirstToken => f.write_str("Timeout (first token)"),
            ErrorKind::TimeoutIdle => f.write_str("Timeout (idle)"),
            ErrorKind::ConnectionRefused => f.write_str("Connection refused"),
            ErrorKind::ConnectionReset => f.write_str("Connection reset"),
            ErrorKind::ConnectionClosed => f.write_str("Connection closed"),
            ErrorKind::Io(kind) => write!(f, "Connection error: {kind}"),
            ErrorKind::Malformed(why) => write!(f, "Malformed response: {why}"),
            ErrorKind::Truncated => f.write_str("Truncated stream"),
            ErrorKind::Stream => f.write_str("Stream error"),
            ErrorKind::ConnectionTimedOut => f.write_str("Connection timed out"),
            ErrorKind::OutOfFds => f.write_str(OUT_OF_FDS),
            ErrorKind::NoEphemeralPort => f.write_str(NO_EPHEMERAL_PORT),
            ErrorKind::Tls(what) => write!(f, "TLS: {what}"),
            ErrorKind::TooLarge(what) => write!(f, "Response too large: {what}"),
        }
    }
}

impl ErrorKind {
    /// Maps a socket error to its category.
    pub fn from_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        if let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<crate::http::tls::TlsRecordError>())
        {
            return ErrorKind::Tls(tls.0.clone());
        }
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => return ErrorKind::OutOfFds,
            Some(libc::EADDRNOTAVAIL) => return ErrorKind::NoEphemeralPort,
            Some(libc::ETIMEDOUT) => return ErrorKind::ConnectionTimedOut,
            _ => {}
        }
        match e.kind() {
            K::ConnectionRefused => ErrorKind::ConnectionRefused,
            K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => ErrorKind::ConnectionReset,
            K::UnexpectedEof => ErrorKind::ConnectionClosed,
            K::TimedOut => ErrorKind::ConnectionTimedOut,
            other => ErrorKind::Io(format!("{other:?}")),
        }
    }

    /// Maps a failure to open a connection to its category.
    pub fn from_connect(e: crate::http::conn::ConnectError) -> Self {
        match e {
            crate::http::conn::ConnectError::Io(e) => Self::from_io(&e),
            crate::http::conn::ConnectError::Tls(what) => ErrorKind::Tls(what),
        }
    }

    /// A category that says the client, not the endpoint, ran out of something: a level with
    /// such errors is client-limited.
    pub fn is_client_side(&self) -> bool {
        matches!(self, ErrorKind::OutOfFds | ErrorKind::NoEphemeralPort)
    }
}

/// The category of a request that found no file descriptor for its connection.
pub const OUT_OF_FDS: &str = "Client: out of file descriptors";
/// The category of a request that found no local port for its connection.
pub const NO_EPHEMERAL_PORT: &str = "Client: no ephemeral port";

/// Distinct stream error messages a core keeps (the rest are counted as `other`); the level
/// reports the [`STREAM_MESSAGES_SHOWN`] most frequent.
const STREAM_MESSAGES_KEPT: usize = 16;
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

/// Count and first sample of one error category.
#[derive(Debug, Clone, Default)]
pub struct ErrorStat {
    pub count: u64,
    /// The first `ERROR_SAMPLE_BYTES` of the first such response body, when there was one.
    pub sample: Option<String>,
}

/// Where a request's output token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    Usage,
    Estimated,
}

/// One successful request, as measured.
#[derive(Debug, Clone, Copy)]
pub struct Success {
    pub ttft_ns: Option<u64>,
    pub e2e_ns: u64,
    pub output_tokens: u64,
    pub source: TokenSource,
    pub prompt_tokens: Option<u64>,
    /// Distinct reads that delivered output tokens.
    pub token_reads: u64,
    /// First response byte − intended send time.
    pub ttfb_ns: u64,
    /// Time from the first to the last output token.
    pub decode_ns: u64,
    /// When the response was complete (monotonic ns): for the completion window.
    pub done_ns: u64,
}

/// One core's measurements for one level.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub ttft_us: Histogram<u64>,
    pub e2e_us: Histogram<u64>,
    /// Time to first byte, µs (successful requests).
    pub ttfb_us: Histogram<u64>,
    /// Time per output token after the first, µs (successful requests with 2+ tokens).
    pub tpot_us: Histogram<u64>,
    /// Inter-token latency, µs: each gap between token-bearing reads, split evenly among the
    /// tokens of the later read (every token of every HTTP 200 stream).
    pub itl_us: Histogram<u64>,
    pub tps_milli: Histogram<u64>,
    pub send_lag_ns: Histogram<u64>,
    pub sent: u64,
    pub succeeded: u64,
    pub errors: HashMap<ErrorKind, ErrorStat>,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub usage_counted: u64,
    pub estimated_counted: u64,
    /// Idle pooled connections found closed (or with unread bytes, e.g. a TLS close_notify)
    /// when a request came to reuse them, and discarded before the request was written.
    pub idle_closed: u64,
    pub new_connections: u64,
    /// TCP connect and TLS handshake times of the connections opened, µs.
    pub connect_us: Histogram<u64>,
    pub handshake_us: Histogram<u64>,
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
    pub cap_wait_ns: Histogram<u64>,
    /// Actual send times (ns, monotonic), for the goodness-of-fit test of the arrival process.
    /// Moved (not merged) into the level's recorder by the engine.
    pub send_times_ns: Vec<u64>,
    /// Per-request records (`--save-requests`); moved like `send_times_ns`.
    pub records: Vec<crate::records::RequestRecord>,
    /// Client's added delay: read time − the endpoint's send stamp (`qpsbench_sent_ns`), per
    /// stamped chunk, ns. Only the built-in endpoint with `--stamp-chunks` stamps chunks.
    pub added_delay_ns: Histogram<u64>,
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
}

fn histogram(max: u64) -> Histogram<u64> {
    Histogram::new_with_bounds(1, max, 3).expect("static histogram bounds are valid")
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            ttft_us: histogram(MAX_LATENCY_US),
            e2e_us: histogram(MAX_LATENCY_US),
            ttfb_us: histogram(MAX_LATENCY_US),
            tpot_us: histogram(MAX_LATENCY_US),
            itl_us: histogram(MAX_LATENCY_US),
            tps_milli: histogram(MAX_TPS_MILLI),
            send_lag_ns: histogram(MAX_LATENCY_US * 1000),
            sent: 0,
            succeeded: 0,
            errors: HashMap::new(),
            output_tokens: 0,
            prompt_tokens: 0,
            usage_counted: 0,
            estimated_counted: 0,
            idle_closed: 0,
            new_connections: 0,
            connect_us: histogram(MAX_LATENCY_US),
            handshake_us: histogram(MAX_LATENCY_US),
            multi_token_successes: 0,
            single_read_successes: 0,
            first_send_ns: u64::MAX,
            last_send_ns: 0,
            cpu_ns: 0,
            pacer_spin_ns: 0,
            capped: 0,
            cap_wait_ns: histogram(MAX_LATENCY_US * 1000),
            send_times_ns: Vec::new(),
            records: Vec::new(),
            added_delay_ns: histogram(MAX_LATENCY_US * 1000),
            slo_met: 0,
            window_end_ns: u64::MAX,
            ok_in_window: 0,
            last_ok_ns: 0,
            stream_messages: Vec::new(),
            stream_messages_other: 0,
        }
    }

    /// A request was handed to its connection at `sent_ns`, `lag_ns` after its intended time;
    /// `capped`: `--max-concurrency` held it back (the lag is then that wait, not the client's).
    pub fn record_send(&mut self, sent_ns: u64, lag_ns: u64, capped: bool) {
        self.sent += 1;
        if capped {
            self.capped += 1;
            self.cap_wait_ns.saturating_record(lag_ns);
        } else {
            self.send_lag_ns.saturating_record(lag_ns);
        }
        self.send_times_ns.push(sent_ns);
        self.first_send_ns = self.first_send_ns.min(sent_ns);
        self.last_send_ns = self.last_send_ns.max(sent_ns);
    }

    /// `tokens` tokens arrived `gap_ns` after the previous token-bearing read: `tokens` gaps of
    /// `gap_ns / tokens` each.
    pub fn record_itl(&mut self, gap_ns: u64, tokens: u64) {
        if let Some(each) = gap_ns.checked_div(tokens) {
            let _ = self
                .itl_us
                .record_n((each / 1000).min(MAX_LATENCY_US), tokens);
        }
    }

    /// A connection was opened.
    pub fn record_connect(&mut self, connect_ns: u64, handshake_ns: u64, tls: bool) {
        self.new_connections += 1;
        self.connect_us.saturating_record(connect_ns / 1000);
        if tls {
            self.handshake_us.saturating_record(handshake_ns / 1000);
        }
    }

    pub fn record_success(&mut self, s: Success) {
        self.succeeded += 1;
        if s.output_tokens > 1 {
            self.multi_token_successes += 1;
            if s.token_reads == 1 {
                self.single_read_successes += 1;
            }
        }
        if let Some(t) = s.ttft_ns {
            self.ttft_us.saturating_record(t / 1000);
        }
        self.e2e_us.saturating_record(s.e2e_ns / 1000);
        self.ttfb_us.saturating_record(s.ttfb_ns / 1000);
        if s.output_tokens > 1 {
            self.tpot_us
                .saturating_record(s.decode_ns / (s.output_tokens - 1) / 1000);
        }
        let secs = s.e2e_ns.max(1) as f64 / 1e9;
        self.tps_milli
            .saturating_record((s.output_tokens as f64 / secs * TPS_SCALE) as u64);
        self.output_tokens += s.output_tokens;
        self.prompt_tokens += s.prompt_tokens.unwrap_or(0);
        self.last_ok_ns = self.last_ok_ns.max(s.done_ns);
        if s.done_ns <= self.window_end_ns {
            self.ok_in_window += 1;
        }
        match s.source {
            TokenSource::Usage => self.usage_counted += 1,
            TokenSource::Estimated => self.estimated_counted += 1,
        }
    }

    /// A failed request of category `kind`; `sample` is the start of an HTTP error's body, or a
    /// stream error's message.
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
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.ttft_us.add(&other.ttft_us);
        let _ = self.e2e_us.add(&other.e2e_us);
        let _ = self.ttfb_us.add(&other.ttfb_us);
        let _ = self.tpot_us.add(&other.tpot_us);
        let _ = self.itl_us.add(&other.itl_us);
        let _ = self.tps_milli.add(&other.tps_milli);
        let _ = self.send_lag_ns.add(&other.send_lag_ns);
        self.sent += other.sent;
        self.succeeded += other.succeeded;
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
        let _ = self.connect_us.add(&other.connect_us);
        let _ = self.handshake_us.add(&other.handshake_us);
        self.multi_token_successes += other.multi_token_successes;
        self.single_read_successes += other.single_read_successes;
        self.first_send_ns = self.first_send_ns.min(other.first_send_ns);
        self.last_send_ns = self.last_send_ns.max(other.last_send_ns);
        self.cpu_ns += other.cpu_ns;
        self.pacer_spin_ns += other.pacer_spin_ns;
        self.capped += other.capped;
        let _ = self.cap_wait_ns.add(&other.cap_wait_ns);
        let _ = self.added_delay_ns.add(&other.added_delay_ns);
        self.slo_met += other.slo_met;
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
    }
}

/// Percentiles of one metric, in the order they were asked for, then `max`. `null` when the
/// level had no sample of it (e.g. no successful request).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<(String, Option<f64>)>);

impl Percentiles {
    fn from_hist(h: &Histogram<u64>, pcts: &[f64], scale: f64) -> Self {
        let mut v: Vec<(String, Option<f64>)> = pcts
            .iter()
            .map(|&p| {
                let val = (!h.is_empty()).then(|| h.value_at_quantile(p / 100.0) as f64 * scale);
                (pct_key(p), val)
            })
            .collect();
        v.push((
            "max".into(),
            (!h.is_empty()).then(|| h.max() as f64 * scale),
        ));
        Self(v)
    }

    /// The value at percentile key `p50`, `p95`, … or `max`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v)
    }
}

impl Serialize for Percentiles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &v.map(round6))?;
        }
        m.end()
    }
}

/// `50` → `p50`, `99.9` → `p99.9`.
pub fn pct_key(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("p{}", p as u64)
    } else {
        format!("p{p}")
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The percentiles always computed for the JSON (p90 included), merged with the user's.
pub fn json_percentiles(user: &[f64]) -> Vec<f64> {
    let mut all: Vec<f64> = vec![50.0, 90.0, 95.0, 99.0];
    for &p in user {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    all
}

/// One client core's CPU use during a level.
#[derive(Debug, Clone, Serialize)]
pub struct CoreCpu {
    pub core: usize,
    pub cpu_s: f64,
    /// CPU time ÷ the level's wall time (from its start until its last request ended), %.
    pub busy_pct: f64,
}

/// What `--max-concurrency` did in one level.
#[derive(Debug, Clone, Serialize)]
pub struct CapStats {
    pub limit: usize,
    /// Arrivals that were due while every slot was taken.
    pub waited: u64,
    /// How long they waited (intended → sent), µs; null when none waited.
    pub wait_us: Option<SendLag>,
}

/// The warm-up before a level's measured window.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupStats {
    pub seconds: f64,
    pub requests: u64,
    pub successful: u64,
}

/// Send-lag summary in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct SendLag {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl SendLag {
    /// p50/p99/max of a histogram of nanoseconds, in µs (zeros when empty).
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let q = |q: f64| round6(h.value_at_quantile(q) as f64 / 1000.0);
        Self {
            p50: q(0.5),
            p99: q(0.99),
            max: round6(h.max() as f64 / 1000.0),
        }
    }
}

/// Connection setup for one level: the warm-up before the window and the connections opened
/// during it, with their TCP connect and TLS handshake times (µs; kept apart from TTFT).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStats {
    pub warmed_up: u64,
    pub warmup_failures: u64,
    pub warmup_connect_us: Percentiles,
    pub warmup_tls_handshake_us: Percentiles,
    pub opened_in_window: u64,
    pub connect_us: Percentiles,
    pub tls_handshake_us: Percentiles,
}

impl ConnectionStats {
    pub fn new(warm: &Recorder, level: &Recorder) -> Self {
        let p = [50.0, 90.0, 99.0];
        Self {
            warmed_up: warm.new_connections,
            warmup_failures: warm.errors.values().map(|e| e.count).sum(),
            warmup_connect_us: Percentiles::from_hist(&warm.connect_us, &p, 1.0),
            warmup_tls_handshake_us: Percentiles::from_hist(&warm.handshake_us, &p, 1.0),
            opened_in_window: level.new_connections,
            connect_us: Percentiles::from_hist(&level.connect_us, &p, 1.0),
            tls_handshake_us: Percentiles::from_hist(&level.handshake_us, &p, 1.0),
        }
    }
}

/// The share of multi-token responses that delivered all their tokens in one read above which a
/// level is reported as looking buffered.
pub const BUFFERED_SHARE: f64 = 0.9;

/// One message behind the `Stream error` category.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamMessage {
    pub message: String,
    pub count: u64,
}

/// The top [`STREAM_MESSAGES_SHOWN`] messages by count, the rest summed as `other`.
fn top_stream_messages(r: &Recorder) -> Vec<StreamMessage> {
    let mut all = r.stream_messages.clone();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let other: u64 = r.stream_messages_other
        + all
            .iter()
            .skip(STREAM_MESSAGES_SHOWN)
            .map(|m| m.1)
            .sum::<u64>();
    let mut out: Vec<StreamMessage> = all
        .into_iter()
        .take(STREAM_MESSAGES_SHOWN)
        .map(|(message, count)| StreamMessage { message, count })
        .collect();
    if other > 0 {
        out.push(StreamMessage {
            message: "other".into(),
            count: other,
        });
    }
    out
}

/// Where a level sits in time (monotonic ns), for its windows.
#[derive(Debug, Clone, Copy)]
pub struct LevelClock {
    /// The measured window's start.
    pub start_ns: u64,
    /// `--duration`, seconds.
    pub duration_s: f64,
    /// When the level ended (every request finished, or the grace period ran out).
    pub end_ns: u64,
    /// Stopped by Ctrl-C / SIGTERM.
    pub interrupted: bool,
}

impl LevelClock {
    /// From the start to the last successful completion (to the end, if interrupted), s.
    fn completion_window_s(&self, r: &Recorder) -> f64 {
        let end = if self.interrupted {
            self.end_ns
        } else {
            r.last_ok_ns
        };
        if r.succeeded == 0 && !self.interrupted {
            return 0.0;
        }
        end.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// `n ÷ secs`, 0 over an empty window.
fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round6(n as f64 / secs)
    } else {
        0.0
    }
}

/// One level's merged result: the object written to `benchmark_qps_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LevelStats {
    pub qps_target: f64,
    pub actual_qps: f64,
    pub success_rate: f64,
    pub ttft: Percentiles,
    pub e2e_latency: Percentiles,
    pub tokens_per_sec: Percentiles,
    /// Time to first byte, seconds.
    pub ttfb: Percentiles,
    /// Time per output token after the first, seconds.
    pub tpot: Percentiles,
    /// Inter-token latency, seconds.
    pub itl: Percentiles,
    /// All output tokens of the level ÷ `completion_window_s`.
    pub output_tokens_per_sec: f64,
    pub errors: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    /// Successful requests ÷ `completion_window_s` (vLLM's request throughput): what the
    /// endpoint finished, over the time it took, stragglers included.
    pub throughput_qps: f64,
    /// Successful requests that completed inside the sending window ÷ `--duration`: the
    /// steady-state rate, never more than the endpoint finished while load was applied.
    pub in_window_throughput_qps: f64,
    /// From the level's start to its last successful completion, seconds (an interrupted level:
    /// to the end of the grace period; 0 with no success).
    pub completion_window_s: f64,
    /// The last successful completion − the end of the sending window, seconds (0 if before).
    pub drain_s: f64,
    /// Successful requests that met every SLO given (`--slo-ttft`, `--slo-e2e`; all successful
    /// requests when none is) ÷ `completion_window_s`.
    pub goodput_qps: f64,
    pub send_lag_us: SendLag,
    /// The run was stopped (Ctrl-C / SIGTERM) during this level: it sent only part of its
    /// schedule, and `unfinished_requests` were still in flight after the grace period.
    pub interrupted: bool,
    pub unfinished_requests: u64,
    /// The client fell behind its own schedule (`validity`): this level measures the client.
    pub client_limited: bool,
    pub client_limited_reasons: Vec<String>,
    /// How well the realised send gaps follow the configured arrival process.
    pub send_gap_fit: Option<crate::validity::GapFit>,
    /// CPU time of each client core's thread during the level, and its share of the level's
    /// wall time.
    pub client_cpu_per_core: Vec<CoreCpu>,
    /// `--max-concurrency`: arrivals it held back and for how long (their latencies still
    /// count from the intended time).
    pub concurrency_cap: Option<CapStats>,
    /// `--warmup`: requests sent before the measured window and left out of every statistic.
    pub warmup: Option<WarmupStats>,
    /// Read time − the built-in endpoint's send stamp, per chunk, µs (only against
    /// `serve-mock --stamp-chunks`, as `qpsbench selftest` runs it).
    pub client_added_delay_us: Option<SendLag>,
    pub duration_s: f64,
    pub sending_window_s: f64,
    pub output_tokens_total: u64,
    /// `usage`, `estimated`, `mixed`, or `none` (no successful request).
    pub token_count_source: &'static str,
    pub requests_with_usage: u64,
    pub requests_estimated: u64,
    pub prompt_tokens_total: u64,
    pub error_samples: BTreeMap<String, String>,
    /// The most frequent messages behind `Stream error` (at most five, the rest as `other`).
    pub stream_error_messages: Vec<StreamMessage>,
    /// Idle keep-alive connections the server had closed, found and discarded before reuse
    /// (no request was written to them, so none failed).
    pub idle_connections_closed_by_server: u64,
    pub new_connections: u64,
    pub client_cpu_s: f64,
    /// Wall time the pacer spent spinning just before arrivals for precision (other tasks of the
    /// core run during it too).
    pub pacer_spin_s: f64,
    pub client_cpu_us_per_request: Option<f64>,
    pub client_cpu_us_per_token: Option<f64>,
    pub connections: Option<ConnectionStats>,
    /// Successful responses with more than one token whose tokens all came in one read.
    pub single_read_responses: u64,
    pub warnings: Vec<String>,
}

impl LevelStats {
    /// Builds the level's result from the merged recorder; `pcts` are the percentiles to report.
    pub fn from_recorder(r: &Recorder, qps_target: f64, clock: LevelClock, pcts: &[f64]) -> Self {
        let (start_ns, duration_s) = (clock.start_ns, clock.duration_s);
        let completion_s = clock.completion_window_s(r);
        let window_s = if r.sent > 0 {
            r.last_send_ns.saturating_sub(start_ns) as f64 / 1e9
        } else {
            0.0
        };
        let actual_qps = if window_s > 0.0 {
            r.sent as f64 / window_s
        } else {
            0.0
        };
        let failed: u64 = r.errors.values().map(|e| e.count).sum();
        let source = match (r.usage_counted, r.estimated_counted) {
            (0, 0) => "none",
            (_, 0) => "usage",
            (0, _) => "estimated",
            _ => "mixed",
        };
        let per = |n: u64| (n > 0).then(|| round6(r.cpu_ns as f64 / 1000.0 / n as f64));
        Self {
            qps_target,
            actual_qps: round6(actual_qps),
            success_rate: if r.sent > 0 {
                round6(r.succeeded as f64 * 100.0 / r.sent as f64)
            } else {
                0.0
            },
            ttft: Percentiles::from_hist(&r.ttft_us, pcts, 1e-6),
            e2e_latency: Percentiles::from_hist(&r.e2e_us, pcts, 1e-6),
            tokens_per_sec: Percentiles::from_hist(&r.tps_milli, pcts, 1.0 / TPS_SCALE),
            ttfb: Percentiles::from_hist(&r.ttfb_us, pcts, 1e-6),
            tpot: Percentiles::from_hist(&r.tpot_us, pcts, 1e-6),
            itl: Percentiles::from_hist(&r.itl_us, pcts, 1e-6),
            output_tokens_per_sec: rate(r.output_tokens, completion_s),
            errors: r
                .errors
                .iter()
                .map(|(k, v)| (k.to_string(), v.count))
                .collect(),
            total_requests: r.sent,
            successful_requests: r.succeeded,
            failed_requests: failed,
            throughput_qps: rate(r.succeeded, completion_s),
            in_window_throughput_qps: rate(r.ok_in_window, duration_s),
            completion_window_s: round6(completion_s),
            drain_s: round6((completion_s - duration_s).max(0.0)),
            goodput_qps: rate(r.slo_met, completion_s),
            send_lag_us: SendLag::from_ns(&r.send_lag_ns),
            interrupted: clock.interrupted,
            unfinished_requests: r.sent.saturating_sub(r.succeeded + failed),
            client_limited: false,
            client_limited_reasons: Vec::new(),
            send_gap_fit: None,
            client_cpu_per_core: Vec::new(),
            concurrency_cap: None,
            warmup: None,
            client_added_delay_us: (!r.added_delay_ns.is_empty())
                .then(|| SendLag::from_ns(&r.added_delay_ns)),
            duration_s,
            sending_window_s: round6(window_s),
            output_tokens_total: r.output_tokens,
            token_count_source: source,
            requests_with_usage: r.usage_counted,
            requests_estimated: r.estimated_counted,
            prompt_tokens_total: r.prompt_tokens,
            error_samples: r
                .errors
                .iter()
                .filter_map(|(k, v)| v.sample.clone().map(|s| (k.to_string(), s)))
                .collect(),
            stream_error_messages: top_stream_messages(r),
            idle_connections_closed_by_server: r.idle_closed,
            new_connections: r.new_connections,
            client_cpu_s: round6(r.cpu_ns as f64 / 1e9),
            pacer_spin_s: round6(r.pacer_spin_ns as f64 / 1e9),
            client_cpu_us_per_request: per(r.sent),
            client_cpu_us_per_token: per(r.output_tokens),
            connections: None,
            single_read_responses: r.single_read_successes,
            warnings: buffering_warning(r).into_iter().collect(),
        }
    }
}

/// When nearly every successful multi-token response arrived in one read (TTFT ≈ E2E), something
/// between client and server is buffering the stream and TTFT means nothing.
fn buffering_warning(r: &Recorder) -> Option<String> {
    let n = r.multi_token_successes;
    let single = r.single_read_successes;
    (n >= 5 && single as f64 >= BUFFERED_SHARE * n as f64).then(|| {
        format!(
            "{single} of {n} responses delivered all their tokens in one read (TTFT ≈ E2E): the stream looks buffered by something between client and server (a proxy with buffering on, e.g. nginx proxy_buffering); TTFT is meaningless here"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(ttft_ms: u64, e2e_ms: u64, tokens: u64) -> Success {
        Success {
            ttft_ns: Some(ttft_ms * 1_000_000),
            e2e_ns: e2e_ms * 1_000_000,
            output_tokens: tokens,
            source: TokenSource::Usage,
            prompt_tokens: Some(10),
            token_reads: 5,
            ttfb_ns: ttft_ms * 1_000_000,
            decode_ns: (e2e_ms - ttft_ms) * 1_000_000,
            done_ns: e2e_ms * 1_000_000,
        }
    }

    fn clock(start_ns: u64, duration_s: f64) -> LevelClock {
        LevelClock {
            start_ns,
            duration_s,
            end_ns: start_ns,
            interrupted: false,
        }
    }

    #[test]
    fn merge_and_stats() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for i in 0..100 {
            a.record_send(1_000_000_000 + i * 10_000_000, 20_000, false);
            a.record_success(ok(100 + i, 1000, 50));
        }
        for i in 0..100 {
            b.record_send(1_000_000_000 + i * 10_000_000, 40_000, false);
            b.record_error(ErrorKind::Http(503), Some(b"{\"error\":\"busy\"}"));
        }
        a.merge(&b);
        let s = LevelStats::from_recorder(
            &a,
            100.0,
            clock(1_000_000_000 - 10_000_000, 1.0),
            &json_percentiles(&[50.0]),
        );
        assert_eq!(s.total_requests, 200);
        assert_eq!(s.successful_requests, 100);
        assert_eq!(s.success_rate, 50.0);
        assert_eq!(s.errors.get("HTTP 503"), Some(&100));
        assert_eq!(
            s.error_samples.get("HTTP 503").map(String::as_str),
            Some("{\"error\":\"busy\"}")
        );
        assert!((s.ttft.get("p50").unwrap() - 0.149).abs() < 0.002);
        assert!((s.tokens_per_sec.get("p99").unwrap() - 50.0).abs() < 0.1);
        assert_eq!(s.token_count_source, "usage");
        assert!((s.actual_qps - 200.0).abs() < 0.01);
        assert!((s.send_lag_us.p99 - 40.0).abs() < 0.1);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ttft"].as_object().unwrap().keys().count(), 5);
        assert!(json["ttft"]["p90"].is_number());
    }

    #[test]
    fn empty_level_has_null_percentiles() {
        let s = LevelStats::from_recorder(&Recorder::new(), 1.0, clock(0, 1.0), &[50.0]);
        assert_eq!(s.throughput_qps, 0.0);
        assert_eq!(s.completion_window_s, 0.0);
        assert_eq!(s.ttft.get("p50"), None);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["ttft"]["p50"],
            serde_json::Value::Null
        );
        assert_eq!(s.token_count_source, "none");
        assert_eq!(pct_key(99.9), "p99.9");
    }

    #[test]
    fn throughput_counts_the_time_the_work_took() {
        // 10 s window; 200 successes, the last completing at 20 s, 100 of them by 10 s.
        let start = 1_000_000_000;
        let mut r = Recorder::new();
        r.window_end_ns = start + 10_000_000_000;
        for i in 0..200u64 {
            r.record_send(start + i * 50_000_000, 0, false);
            let mut s = ok(50, 100, 20);
            s.done_ns = start + (i + 1) * 100_000_000;
            r.record_success(s);
        }
        let s = LevelStats::from_recorder(&r, 20.0, clock(start, 10.0), &[50.0]);
        assert_eq!(s.completion_window_s, 20.0);
        assert_eq!(s.throughput_qps, 10.0);
        assert_eq!(s.in_window_throughput_qps, 10.0);
        assert_eq!(s.drain_s, 10.0);
        assert_eq!(s.output_tokens_per_sec, 200.0);
        assert_eq!(s.goodput_qps, 0.0, "slo_met is counted by the engine");
        // Interrupted: the window runs to the end of the grace period.
        let mut c = clock(start, 10.0);
        c.interrupted = true;
        c.end_ns = start + 40_000_000_000;
        let s = LevelStats::from_recorder(&r, 20.0, c, &[50.0]);
        assert_eq!(s.completion_window_s, 40.0);
        assert_eq!(s.throughput_qps, 5.0);
    }

    #[test]
    fn stream_errors_are_one_category_with_their_messages_counted() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for i in 0..30 {
            a.record_stream_error(&format!("overloaded (request {i})"));
        }
        for _ in 0..7 {
            b.record_stream_error("context too long");
        }
        b.record_stream_error(&"é".repeat(300));
        a.merge(&b);
        let s = LevelStats::from_recorder(&a, 1.0, clock(0, 1.0), &[50.0]);
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors["Stream error"], 38);
        let m = &s.stream_error_messages;
        assert_eq!(m.len(), STREAM_MESSAGES_SHOWN + 1);
        assert_eq!((m[0].message.as_str(), m[0].count), ("context too long", 7));
        assert_eq!(m.last().unwrap().message, "other");
        assert_eq!(m.iter().map(|m| m.count).sum::<u64>(), 38);
        assert!(a.stream_messages.len() <= 2 * STREAM_MESSAGES_KEPT);
    }
}
