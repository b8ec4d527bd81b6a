//! Response head parsing: status line and headers (httparse), reduced to what the client needs —
//! status, body framing and whether the connection may be reused.
//!
//! Data flow: `http::conn` accumulates the first bytes of a response and calls [`parse_head`]
//! until it returns a head; the bytes after the head go to `http::body`.

use super::body::Framing;

/// Largest response head accepted; a bigger one is a protocol error, not a memory leak.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 96;

/// What the client keeps of a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Length of the head in bytes, including the blank line.
    pub len: usize,
    pub framing: Framing,
    /// The connection may carry another request after this response is fully read.
    pub keep_alive: bool,
    /// `Keep-Alive: timeout=N`: the server closes the connection after N idle seconds.
    pub keep_alive_timeout_s: Option<u64>,
}

/// Why a head could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not HTTP, or a malformed status line or header (the text is httparse's reason).
    Invalid(&'static str),
    /// More than [`MAX_HEAD_BYTES`] without the end of the head.
    TooLarge,
    /// A Content-Length that is not a number, or two that disagree.
    BadContentLength,
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Invalid(why) => write!(f, "invalid response head ({why})"),
            HeadError::TooLarge => write!(f, "response head over {MAX_HEAD_BYTES} bytes"),
            HeadError::BadContentLength => write!(f, "invalid Content-Length"),
        }
    }
}

/// Parses a response head from the start of `buf`. `Ok(None)`: need more bytes.
///
/// Interim 1xx responses are returned like any other; the caller skips them.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD_BYTES {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => {
            return Err(HeadError::Invalid(match e {
                httparse::Error::HeaderName => "bad header name",
                httparse::Error::HeaderValue => "bad header value",
                httparse::Error::NewLine => "bad line ending",
                httparse::Error::Status => "bad status code",
                httparse::Error::Token => "bad token",
                httparse::Error::Version => "not HTTP/1.x",
                _ => "malformed",
            }))
        }
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let mut chunked = false;
    let mut content_length: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut keep_alive_timeout_s = None;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The final coding decides: `gzip, chunked` is chunked.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .map(|last| trim(last).eq_ignore_ascii_case(b"chunked"))
                .unwrap_or(false);
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = parse_u64(trim(h.value)).ok_or(HeadError::BadContentLength)?;
            if content_length.is_some_and(|old| old != v) {
                return Err(HeadError::BadContentLength);
            }
            content_length = Some(v);
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = trim(token);
                conn_close |= t.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("keep-alive") {
            keep_alive_timeout_s = keep_alive_timeout(h.value);
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let keep_alive =
        framing != Framing::Close && !conn_close && (!http10 || conn_keep_alive) && status != 101;
    Ok(Some(Head {
        status,
        len,
        framing,
        keep_alive,
        keep_alive_timeout_s,
    }))
}

/// The `timeout=N` parameter of a `Keep-Alive` header (`timeout=5, max=100`), seconds.
fn keep_alive_timeout(value: &[u8]) -> Option<u64> {
    value.split(|&b| b == b',').find_map(|param| {
        let param = trim(param);
        let (name, v) = param.split_at(param.iter().position(|&b| b == b'=')?);
        trim(name)
            .eq_ignore_ascii_case(b"timeout")
            .then(|| parse_u64(trim(&v[1..])))
            .flatten()
    })
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_sse_head() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nabc";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Chunked);
        assert!(h.keep_alive);
        assert_eq!(&raw[h.len..], b"abc");
    }

    #[test]
    fn keep_alive_timeout_is_read() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: max=100, Timeout = 5\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.keep_alive_timeout_s, Some(5));
        let h = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nKeep-Alive: timeout\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.keep_alive_timeout_s, None);
        assert_eq!(keep_alive_timeout(b"timeout=x"), None);
        assert_eq!(keep_alive_timeout(b"timeout=30"), Some(30));
    }

    #[test]
    fn partial_head_needs_more_at_every_split() {
        let raw =
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\nConnection: close\r\n\r\n";
        for i in 0..raw.len() {
            assert_eq!(parse_head(&raw[..i]), Ok(None), "prefix {i}");
        }
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.status, 503);
        assert_eq!(h.framing, Framing::Length(12));
        assert!(!h.keep_alive);
    }

    #[test]
    fn http10_close_delimited_and_keep_alive_rules() {
        let h = parse_head(b"HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let h =
            parse_head(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(h.keep_alive);
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = parse_head(b"HTTP/1.1 204 No Content\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::Empty);
    }

    #[test]
    fn garbage_and_bad_lengths_are_errors() {
        assert!(matches!(
            parse_head(b"<html>hello</html>\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"),
            Err(HeadError::BadContentLength)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(HeadError::BadContentLength)
        );
        let mut big = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        big.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
    }
}
