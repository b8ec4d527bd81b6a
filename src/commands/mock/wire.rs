//! The built-in endpoint's wire format, shared by its normal answers (`handler`) and its fault
//! modes (`fault`): a connection's byte stream ([`Io`]), whole responses, and the chunked SSE
//! events of a streamed chat completion.

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::http::sock::read_append;
use crate::http::tls::TlsIo;

/// The head of a streamed answer.
pub(crate) const SSE_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A connection's byte stream: plain TCP, or TCP with the endpoint's TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(TcpStream, Box<TlsIo<ServerConnection>>),
}

impl Io {
    /// Appends what the next read brings to `buf`; 0 means the peer closed.
    pub(crate) async fn read_more(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Io::Plain(stream) => read_append(stream, buf).await,
            Io::Tls(stream, tls) => tls.read_plain(stream, buf).await,
        }
    }

    /// Writes `out` fully and clears it (the buffer is reused).
    /// Makes the coming close a TCP reset (SO_LINGER with a zero timeout), for the
    /// `reset-mid-stream` fault.
    pub(crate) fn reset(&self) {
        use std::os::fd::AsRawFd;
        let fd = match self {
            Io::Plain(s) | Io::Tls(s, _) => s.as_raw_fd(),
        };
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on a live socket with a valid, correctly sized linger struct.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    pub(crate) async fn write(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Io::Plain(stream) => {
                // Straight into the socket when it has room (nearly always): the chunk leaves
                // when it is written, not when the runtime next submits its io_uring queue, so
                // a chunk's send stamp is its real send time even when many streams are due at
                // once. What does not fit goes through the runtime.
                use std::os::fd::AsRawFd;
                let n = crate::http::sock::send_nonblocking(stream.as_raw_fd(), out)?;
                if n == out.len() {
                    out.clear();
                    return Ok(());
                }
                out.drain(..n);
                let (res, mut b) = stream.write_all(std::mem::take(out)).await;
                b.clear();
                *out = b;
                res.map(|_| ())
            }
            Io::Tls(stream, tls) => {
                tls.encrypt(out)?;
                out.clear();
                tls.flush(stream).await
            }
        }
    }
}

pub(crate) async fn write(stream: &mut Io, out: &mut Vec<u8>) -> std::io::Result<()> {
    stream.write(out).await
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response with a Content-Length body: `status` is the status line's code and reason
/// ("404 Not Found"), `extra` any further header lines, each ending in CRLF.
pub(crate) fn push_response(
    out: &mut Vec<u8>,
    status: &str,
    content_type: &str,
    extra: &str,
    body: &str,
) {
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

/// `Connection: close` when the request asked for it.
pub(crate) fn close_header(close: bool) -> &'static str {
    if close {
        "Connection: close\r\n"
    } else {
        ""
    }
}

/// An OpenAI-style error response.
pub(crate) fn error_response(out: &mut Vec<u8>, code: u16, message: &str, close: bool) {
    let kind = if code >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": null, "code": code}
    })
    .to_string();
    push_response(
        out,
        &format!("{code} {}", reason(code)),
        "application/json",
        close_header(close),
        &body,
    );
}

/// One chunk event; `extra` is appended after `choices` (`,"usage":{…}` and the like). Written
/// straight into `out` from its pieces: no string is built per chunk.
pub(crate) fn push_event(out: &mut Vec<u8>, prefix: &str, delta: &str, finish: &str, extra: &str) {
    push_pieces(
        out,
        &[
            "data: ",
            prefix,
            "\"choices\":[{\"index\":0,\"delta\":",
            delta,
            ",\"logprobs\":null,\"finish_reason\":",
            finish,
            "}]",
            extra,
            "}\n\n",
        ],
    );
}

/// One chunk event of the completions API: `text` (a JSON string) instead of a delta.
pub(crate) fn push_text_event(
    out: &mut Vec<u8>,
    prefix: &str,
    text: &str,
    finish: &str,
    extra: &str,
) {
    push_pieces(
        out,
        &[
            "data: ",
            prefix,
            "\"choices\":[{\"index\":0,\"text\":",
            text,
            ",\"logprobs\":null,\"finish_reason\":",
            finish,
            "}]",
            extra,
            "}\n\n",
        ],
    );
}

/// One HTTP chunk whose data is `pieces`, one after the other.
fn push_pieces(out: &mut Vec<u8>, pieces: &[&str]) {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    push_hex(out, len);
    out.extend_from_slice(b"\r\n");
    for p in pieces {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in lowercase hexadecimal (a chunk's size line), without the formatting
/// machinery: this runs for every chunk the endpoint sends.
fn push_hex(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in decimal: a counter patched into a pre-rendered chunk (the running usage, the
/// send stamp), without the formatting machinery or an allocation.
pub(crate) fn push_u64(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // The digits are ASCII.
    out.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// The SSE text of one chunk event (`prefix` opens the JSON object: id, object, created, model):
/// what [`push_event`] writes, formatted (its test's reference).
#[cfg(test)]
fn event(prefix: &str, delta: &str, finish: &str, extra: &str) -> String {
    format!(
        "data: {prefix}\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{extra}}}\n\n"
    )
}

/// One HTTP chunk.
pub(crate) fn push_chunk(out: &mut Vec<u8>, data: &str) {
    push_pieces(out, &[data]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_sizes_are_written_as_the_formatter_writes_them() {
        for n in [0u64, 1, 9, 10, 15, 16, 255, 4096, 123_456_789, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, n);
            assert_eq!(s, n.to_string());
            let mut h = Vec::new();
            push_hex(&mut h, n as usize);
            assert_eq!(String::from_utf8(h).unwrap(), format!("{n:x}"));
        }
    }

    #[test]
    fn events_written_from_pieces_are_the_formatted_ones() {
        let prefix = "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\",";
        let mut out = Vec::new();
        push_event(
            &mut out,
            prefix,
            "{\"content\":\" The\"}",
            "null",
            ",\"usage\":{}",
        );
        let mut want = Vec::new();
        let e = event(prefix, "{\"content\":\" The\"}", "null", ",\"usage\":{}");
        want.extend_from_slice(format!("{:x}\r\n{e}\r\n", e.len()).as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(want).unwrap()
        );
        let mut text = Vec::new();
        push_text_event(&mut text, prefix, "\" a\"", "\"stop\"", "");
        let t = String::from_utf8(text).unwrap();
        let data = format!(
            "data: {prefix}\"choices\":[{{\"index\":0,\"text\":\" a\",\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n"
        );
        assert_eq!(t, format!("{:x}\r\n{data}\r\n", data.len()));
    }
}
