//! What became of one request: the stable error categories (the keys of a level's `errors`), and
//! what a successful request measured. The engine decides an outcome once per request; the
//! recorder counts it.

use std::fmt;

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
    /// (the recorder's `stream_messages`).
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
            other => ErrorKind::Io(other.to_string()),
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

    /// The category a key of `errors` names (the inverse of `Display`), for reading saved
    /// results back (`merge`); `None` for a key no version of qpsbench writes.
    pub fn parse(key: &str) -> Option<Self> {
        let fixed = [
            ErrorKind::TimeoutTotal,
            ErrorKind::TimeoutConnect,
            ErrorKind::TimeoutFirstToken,
            ErrorKind::TimeoutIdle,
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::ConnectionClosed,
            ErrorKind::Truncated,
            ErrorKind::Stream,
            ErrorKind::ConnectionTimedOut,
            ErrorKind::OutOfFds,
            ErrorKind::NoEphemeralPort,
        ];
        if let Some(k) = fixed.into_iter().find(|k| k.to_string() == key) {
            return Some(k);
        }
        let with = |prefix: &str| key.strip_prefix(prefix).map(str::to_string);
        if let Some(code) = key.strip_prefix("HTTP ") {
            return code.parse().ok().map(ErrorKind::Http);
        }
        with("Connection error: ")
            .map(ErrorKind::Io)
            .or_else(|| with("Malformed response: ").map(ErrorKind::Malformed))
            .or_else(|| with("TLS: ").map(ErrorKind::Tls))
            .or_else(|| with("Response too large: ").map(ErrorKind::TooLarge))
    }
}

/// The category of a request that found no file descriptor for its connection.
pub const OUT_OF_FDS: &str = "Client: out of file descriptors";
/// The category of a request that found no local port for its connection.
pub const NO_EPHEMERAL_PORT: &str = "Client: no ephemeral port";

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

/// How one request ended, as its recorder counts it.
#[derive(Debug)]
pub enum Ended<'a> {
    /// It succeeded; `slo_met`: its own TTFT and E2E met the SLOs (always, without SLOs).
    Ok { success: Success, slo_met: bool },
    /// It failed at `at_ns` (monotonic) with `kind`; `body` is the start of an HTTP error's
    /// body, or a stream error's message.
    Failed {
        at_ns: u64,
        kind: ErrorKind,
        body: Option<&'a [u8]>,
    },
    /// It was abandoned at `at_ns` (`--cancel-rate`): neither ok nor failed.
    Cancelled { at_ns: u64 },
}

/// One successful request, as measured.
#[derive(Debug, Clone, Copy)]
pub struct Success {
    pub ttft_ns: Option<u64>,
    pub e2e_ns: u64,
    pub output_tokens: u64,
    pub source: TokenSource,
    pub prompt_tokens: Option<u64>,
    /// `usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the server's
    /// prefix cache, when it reports them.
    pub cached_tokens: Option<u64>,
    /// Distinct reads that delivered output tokens.
    pub token_reads: u64,
    /// First response byte − intended send time.
    pub ttfb_ns: u64,
    /// Time from the first to the last output token.
    pub decode_ns: u64,
    /// When the response was complete (monotonic ns): for the completion window.
    pub done_ns: u64,
    /// What the answer's reasoning took, when it had any.
    pub reasoning: Reasoning,
}

/// A reasoning model's answer, measured apart: `ttft_ns` is its first token of any kind, and
/// the answer itself starts later.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reasoning {
    /// Time to first output token: the first non-empty answer text (chat `content`, a
    /// completion's `text`) − intended send, ns; None without answer text.
    pub ttfot_ns: Option<u64>,
    /// `usage.completion_tokens_details.reasoning_tokens`, when the server reported it.
    pub tokens: Option<u64>,
}

impl Reasoning {
    /// The answer reasoned before it answered: reasoning tokens reported, or its first token
    /// came before its first answer token (`ttft_ns`).
    pub fn seen(&self, ttft_ns: Option<u64>) -> bool {
        self.tokens.is_some_and(|t| t > 0)
            || matches!((ttft_ns, self.ttfot_ns), (Some(a), Some(b)) if b > a)
    }
}

/// The share of a request's prompt tokens that must come from the server's prefix cache for the
/// request to count as a cache hit: a chat template's short shared prefix never reaches it.
pub const CACHE_HIT_SHARE: f64 = 0.5;

/// What the server's prefix cache gave a level's successful requests, from the `cached_tokens`
/// they reported (requests that reported none are left out of every figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheCounts {
    /// Successful requests that reported `cached_tokens`.
    pub reported: u64,
    /// Their prompt tokens, and of those the cached ones.
    pub prompt_tokens: u64,
    pub cached_tokens: u64,
    /// Of them, cache hits: at least [`CACHE_HIT_SHARE`] of the prompt came from the cache.
    pub hits: u64,
}

impl CacheCounts {
    /// A success that reported `cached` of its `prompt` tokens from the cache.
    pub fn record(&mut self, cached: u64, prompt: Option<u64>) {
        self.reported += 1;
        self.cached_tokens += cached;
        if let Some(p) = prompt {
            self.prompt_tokens += p;
            if p > 0 && cached as f64 >= CACHE_HIT_SHARE * p as f64 {
                self.hits += 1;
            }
        }
    }

    pub fn merge(&mut self, other: &CacheCounts) {
        self.reported += other.reported;
        self.prompt_tokens += other.prompt_tokens;
        self.cached_tokens += other.cached_tokens;
        self.hits += other.hits;
    }

    /// Cached ÷ prompt tokens of the requests that reported them; `None` when none did.
    pub fn hit_share(&self) -> Option<f64> {
        (self.reported > 0 && self.prompt_tokens > 0)
            .then(|| self.cached_tokens as f64 / self.prompt_tokens as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_keys_parse_back_to_their_category() {
        for k in [
            ErrorKind::Http(503),
            ErrorKind::TimeoutIdle,
            ErrorKind::Io("broken pipe".into()),
            ErrorKind::Malformed("not JSON".into()),
            ErrorKind::Tls("unknown issuer".into()),
            ErrorKind::TooLarge("head".into()),
            ErrorKind::OutOfFds,
            ErrorKind::Stream,
        ] {
            assert_eq!(ErrorKind::parse(&k.to_string()), Some(k));
        }
        assert_eq!(ErrorKind::parse("HTTP x"), None);
        assert_eq!(ErrorKind::parse("Something else"), None);
    }

    #[test]
    fn a_cache_hit_is_half_the_prompt_or_more() {
        let mut c = CacheCounts::default();
        assert_eq!(c.hit_share(), None);
        // A template's 24-token prefix of a 160-token prompt is no hit; 144 of 160 is.
        c.record(24, Some(160));
        c.record(144, Some(160));
        c.record(80, Some(160));
        c.record(0, Some(160));
        assert_eq!((c.reported, c.hits), (4, 2));
        assert_eq!(c.hit_share(), Some(248.0 / 640.0));
        let mut d = CacheCounts::default();
        d.record(5, None);
        d.merge(&c);
        assert_eq!((d.reported, d.hits, d.cached_tokens), (5, 2, 253));
    }
}
