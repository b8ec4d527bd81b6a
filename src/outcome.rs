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
}
