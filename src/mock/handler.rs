//! The built-in endpoint's connection handling: reads HTTP/1.1 requests on a keep-alive
//! connection and answers each with a streamed (or plain JSON) chat completion, or an
//! OpenAI-style error (400 bad JSON, 404 wrong path, 405 wrong method, 503 over capacity).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};
use serde_json::Value;

use rustls::ServerConnection;

use super::State;
use crate::http::sock::read_append;
use crate::http::tls::TlsIo;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 256 << 20;
const WORDS: [&str; 8] = [
    " The", " quick", " brown", " fox", " jumps", " over", " a", " dog",
];

/// A connection's byte stream: plain TCP, or TCP with the endpoint's TLS.
pub(crate) enum Io {
    Plain(TcpStream),
    Tls(TcpStream, Box<TlsIo<ServerConnection>>),
}

impl Io {
    /// Appends what the next read brings to `buf`; 0 means the peer closed.
    async fn read_more(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
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

pub(crate) async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                monoio::spawn(async move {
                    let io = match &state.tls {
                        None => Io::Plain(stream),
                        Some(config) => {
                            let mut stream = stream;
                            let Ok(conn) = ServerConnection::new(config.clone()) else {
                                return;
                            };
                            let mut tls = Box::new(TlsIo::new(conn));
                            // A failed handshake (untrusting client, plain HTTP) just ends here.
                            if tls.handshake(&mut stream).await.is_err() {
                                return;
                            }
                            Io::Tls(stream, tls)
                        }
                    };
                    serve_connection(io, state).await
                });
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// A parsed request.
struct Request {
    method: String,
    path: String,
    close: bool,
    body: Vec<u8>,
}

enum ReadError {
    /// Clean close between requests, or a socket error: just drop the connection.
    Gone,
    /// Answer with this status and message, then close.
    Bad(u16, &'static str),
}

async fn serve_connection(mut stream: Io, state: Arc<State>) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(r) => r,
            Err(ReadError::Gone) => return,
            Err(ReadError::Bad(code, msg)) => {
                error_response(&mut out, code, msg, true);
                let _ = write(&mut stream, &mut out).await;
                return;
            }
        };
        let keep = respond(&mut stream, &state, req, &mut out).await;
        if !keep {
            return;
        }
    }
}

async fn read_request(stream: &mut Io, buf: &mut Vec<u8>) -> Result<Request, ReadError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("/").to_string();
                let http10 = req.version == Some(0);
                let mut close = http10;
                let mut length = 0usize;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or(ReadError::Bad(400, "invalid Content-Length"))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(ReadError::Bad(411, "send the body with a Content-Length"));
                    } else if h.name.eq_ignore_ascii_case("connection") {
                        let v = h.value.to_ascii_lowercase();
                        close = v.windows(5).any(|w| w == b"close")
                            || (http10 && !v.windows(10).any(|w| w == b"keep-alive"));
                    }
                }
                if length > MAX_BODY {
                    return Err(ReadError::Bad(413, "request body too large"));
                }
                while buf.len() < head_len + length {
                    match stream.read_more(buf).await {
                        Ok(0) | Err(_) => return Err(ReadError::Gone),
                        Ok(_) => {}
                    }
                }
                let body = buf[head_len..head_len + length].to_vec();
                buf.drain(..head_len + length);
                return Ok(Request {
                    method,
                    path,
                    close,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(ReadError::Bad(431, "request head too large"));
                }
            }
            Err(_) => return Err(ReadError::Bad(400, "malformed HTTP request")),
        }
        match stream.read_more(buf).await {
            Ok(0) | Err(_) => return Err(ReadError::Gone),
            Ok(_) => {}
        }
    }
}

async fn write(stream: &mut Io, out: &mut Vec<u8>) -> std::io::Result<()> {
    stream.write(out).await
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
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
fn close_header(close: bool) -> &'static str {
    if close {
        "Connection: close\r\n"
    } else {
        ""
    }
}

/// An OpenAI-style error response.
fn error_response(out: &mut Vec<u8>, code: u16, message: &str, close: bool) {
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

/// Decrements the in-flight count when the response ends, however it ends.
struct ActiveGuard(Arc<State>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the request asked for.
struct Ask {
    model: String,
    max_tokens: Option<u64>,
    stream: bool,
    include_usage: bool,
    /// `stream_options.continuous_usage_stats` (vLLM): a running usage object in every chunk.
    continuous_usage: bool,
    prompt_tokens: u64,
}

fn parse_ask(body: &[u8], strict_stream_options: bool) -> Result<Ask, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("The request body must be a JSON object")?;
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("\"messages\" must be an array")?;
    // A rough tokenizer: ~4 characters per token plus a few per message, like real chat templates.
    let chars: usize = messages
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_str))
        .map(str::len)
        .sum();
    if strict_stream_options {
        if let Some(opts) = obj.get("stream_options").and_then(Value::as_object) {
            if let Some(k) = opts.keys().find(|k| *k != "include_usage") {
                return Err(format!("Unrecognized request argument supplied: {k}"));
            }
        }
    }
    let stream_option = |name: &str| {
        obj.get("stream_options")
            .and_then(|o| o.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Ok(Ask {
        model: obj
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model")
            .to_string(),
        max_tokens: obj
            .get("max_tokens")
            .or_else(|| obj.get("max_completion_tokens"))
            .and_then(Value::as_u64),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        include_usage: stream_option("include_usage"),
        continuous_usage: stream_option("continuous_usage_stats"),
        prompt_tokens: (chars as u64).div_ceil(4) + 4 * messages.len() as u64,
    })
}

/// Answers one request; returns whether the connection stays open.
async fn respond(stream: &mut Io, state: &Arc<State>, req: Request, out: &mut Vec<u8>) -> bool {
    let arrived = Instant::now();
    let path = req.path.split('?').next().unwrap_or("");
    if path != "/v1/chat/completions" && path != "/chat/completions" {
        error_response(
            out,
            404,
            &format!("Not found: {path}; use /v1/chat/completions"),
            req.close,
        );
        return write(stream, out).await.is_ok() && !req.close;
    }
    if req.method != "POST" {
        error_response(out, 405, "Method not allowed; use POST", req.close);
        return write(stream, out).await.is_ok() && !req.close;
    }
    let ask = match parse_ask(&req.body, state.cfg.strict_stream_options) {
        Ok(a) => a,
        Err(msg) => {
            error_response(out, 400, &msg, req.close);
            return write(stream, out).await.is_ok() && !req.close;
        }
    };
    let cfg = &state.cfg;
    let active = state.active.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ActiveGuard(state.clone());
    if cfg.max_concurrency > 0 && active > cfg.max_concurrency {
        error_response(
            out,
            503,
            &format!(
                "Server overloaded: more than {} concurrent requests",
                cfg.max_concurrency
            ),
            req.close,
        );
        return write(stream, out).await.is_ok() && !req.close;
    }
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    let n_out = ask
        .max_tokens
        .map_or(cfg.output_tokens, |m| m.min(cfg.output_tokens));
    let finish = if ask.max_tokens == Some(n_out) {
        "length"
    } else {
        "stop"
    };
    let model = serde_json::to_string(&ask.model).unwrap_or_else(|_| "\"mock-model\"".into());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let prefix = format!(
        "{{\"id\":\"chatcmpl-mock-{id}\",\"object\":\"chat.completion.chunk\",\"created\":{created},\"model\":{model},"
    );
    let usage = format!(
        "{{\"prompt_tokens\":{},\"completion_tokens\":{n_out},\"total_tokens\":{}}}",
        ask.prompt_tokens,
        ask.prompt_tokens + n_out
    );
    if let Some(fault) = super::fault::pick(
        &cfg.faults,
        state.fault_draws.fetch_add(1, Ordering::Relaxed),
    ) {
        let s = super::fault::Stream {
            prefix: &prefix,
            usage: &usage,
            tokens: n_out,
            itl: bounded_secs(cfg.itl_ms / 1000.0),
        };
        return super::fault::serve(fault, stream, &s, out).await && !req.close;
    }
    let cap = state.capacity;
    let load = || state.active.load(Ordering::Relaxed);

    if !ask.stream {
        let secs = cfg.ttft_ms / 1000.0 * cap.slowdown(load())
            + n_out.saturating_sub(1) as f64 * cap.itl_s(load());
        sleep_until(arrived + bounded_secs(secs)).await;
        let text: String = (0..n_out)
            .map(|i| WORDS[i as usize % WORDS.len()])
            .collect();
        let body = format!(
            "{{\"id\":\"chatcmpl-mock-{id}\",\"object\":\"chat.completion\",\"created\":{created},\"model\":{model},\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"finish_reason\":\"{finish}\"}}],\"usage\":{usage}}}",
            serde_json::to_string(&text).unwrap_or_default()
        );
        push_response(
            out,
            "200 OK",
            "application/json",
            close_header(req.close),
            &body,
        );
        return write(stream, out).await.is_ok() && !req.close;
    }

    out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
    if req.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    // vLLM's `continuous_usage_stats`: every chunk carries the running usage, so a client can
    // tell how many tokens each chunk holds.
    let continuous = ask.include_usage && ask.continuous_usage && !cfg.no_usage;
    let mut extra = String::with_capacity(128);
    let running_usage = |extra: &mut String, done: u64| {
        if continuous {
            extra.push_str(&format!(
                ",\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{done},\"total_tokens\":{}}}",
                ask.prompt_tokens,
                ask.prompt_tokens + done
            ));
        }
    };
    if cfg.role_chunk {
        running_usage(&mut extra, 0);
        push_event(
            out,
            &prefix,
            "{\"role\":\"assistant\",\"content\":\"\"}",
            "null",
            &extra,
        );
    }
    if write(stream, out).await.is_err() {
        return false;
    }
    let per_chunk = cfg.tokens_per_chunk.max(1);
    let mut deadline = arrived + bounded_secs(cfg.ttft_ms / 1000.0 * cap.slowdown(load()));
    let mut sent = 0u64;
    let mut word = 0usize;
    let mut content = String::with_capacity(64);
    while sent < n_out {
        let k = per_chunk.min(n_out - sent);
        sleep_until(deadline).await;
        content.clear();
        content.push_str("{\"content\":\"");
        for _ in 0..k {
            content.push_str(WORDS[word % WORDS.len()]);
            word += 1;
        }
        content.push_str("\"}");
        sent += k;
        extra.clear();
        running_usage(&mut extra, sent);
        if cfg.stamp_chunks {
            // The endpoint's send time on the shared monotonic clock, taken just before the
            // write: the client's read time minus this is the client's added delay (selftest).
            extra.push_str(&format!(",\"qpsbench_sent_ns\":{}", crate::clock::now_ns()));
        }
        push_event(out, &prefix, &content, "null", &extra);
        if sent == n_out {
            extra.clear();
            running_usage(&mut extra, sent);
            push_event(out, &prefix, "{}", &format!("\"{finish}\""), &extra);
            if ask.include_usage && !cfg.no_usage {
                push_chunk(
                    out,
                    &format!("data: {prefix}\"choices\":[],\"usage\":{usage}}}\n\n"),
                );
            }
            push_chunk(out, "data: [DONE]\n\n");
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if write(stream, out).await.is_err() {
            return false;
        }
        // The next chunk carries `next_k` tokens, each taking one inter-token latency.
        let next_k = per_chunk.min(n_out - sent);
        deadline += bounded_secs(next_k as f64 * cap.itl_s(load()));
    }
    if n_out == 0 {
        push_event(out, &prefix, "{}", &format!("\"{finish}\""), "");
        push_chunk(out, "data: [DONE]\n\n");
        out.extend_from_slice(b"0\r\n\r\n");
        if write(stream, out).await.is_err() {
            return false;
        }
    }
    !req.close
}

/// One chunk event; `extra` is appended after `choices` (`,"usage":{…}` and the like).
fn push_event(out: &mut Vec<u8>, prefix: &str, delta: &str, finish: &str, extra: &str) {
    push_chunk(
        out,
        &format!(
            "data: {prefix}\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}]{extra}}}\n\n"
        ),
    );
}

/// One HTTP chunk.
fn push_chunk(out: &mut Vec<u8>, data: &str) {
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Each chunk leaves at its own deadline, to the µs on io_uring ([`crate::rt::timer`]): monoio's
/// 1 ms wheel would send every chunk due within a millisecond in one burst.
async fn sleep_until(deadline: Instant) {
    crate::rt::timer::sleep_until(deadline).await
}

/// A delay of `secs` seconds, capped at a year: the capacity model can stretch a delay without
/// bound under absurd load, and a `Duration` (or an `Instant` plus it) must never overflow.
fn bounded_secs(secs: f64) -> Duration {
    Duration::from_secs_f64(if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, 365.0 * 86_400.0)
    })
}
