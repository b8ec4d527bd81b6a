//! The built-in endpoint's connection handling: reads HTTP/1.1 requests on a keep-alive
//! connection and answers each with a streamed (or plain JSON) chat completion, or an
//! OpenAI-style error (400 bad JSON, 404 wrong path, 405 wrong method, 503 over capacity).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::net::TcpListener;
use serde_json::Value;

use rustls::ServerConnection;

use super::wire::{close_header, error_response, push_chunk, push_event, push_response, write, Io};
use super::State;
use crate::http::tls::TlsIo;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 256 << 20;
const WORDS: [&str; 8] = [
    " The", " quick", " brown", " fox", " jumps", " over", " a", " dog",
];

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
    let ask = match admit(state, &req) {
        Ok(ask) => ask,
        Err((code, message)) => {
            error_response(out, code, &message, req.close);
            return write(stream, out).await.is_ok() && !req.close;
        }
    };
    // Counted in flight from here until the answer ends, however it ends.
    let active = state.active.fetch_add(1, Ordering::Relaxed) + 1;
    let _guard = ActiveGuard(state.clone());
    let cfg = &state.cfg;
    if cfg.max_concurrency > 0 && active > cfg.max_concurrency {
        let message = format!(
            "Server overloaded: more than {} concurrent requests",
            cfg.max_concurrency
        );
        error_response(out, 503, &message, req.close);
        return write(stream, out).await.is_ok() && !req.close;
    }
    let answer = Answer::new(state, &ask);
    if let Some(fault) = super::fault::pick(
        &cfg.faults,
        state.fault_draws.fetch_add(1, Ordering::Relaxed),
    ) {
        let s = super::fault::Stream {
            prefix: &answer.prefix,
            usage: &answer.usage,
            tokens: answer.n_out,
            itl: bounded_secs(cfg.itl_ms / 1000.0),
        };
        return super::fault::serve(fault, stream, &s, out).await && !req.close;
    }
    let keep = if ask.stream {
        answer
            .stream(stream, state, &ask, arrived, req.close, out)
            .await
    } else {
        answer.whole(stream, state, arrived, req.close, out).await
    };
    keep && !req.close
}

/// The request's path, method and body, checked: what it asks for, or the error to answer.
fn admit(state: &State, req: &Request) -> Result<Ask, (u16, String)> {
    let path = req.path.split('?').next().unwrap_or("");
    if path != "/v1/chat/completions" && path != "/chat/completions" {
        return Err((404, format!("Not found: {path}; use /v1/chat/completions")));
    }
    if req.method != "POST" {
        return Err((405, "Method not allowed; use POST".into()));
    }
    parse_ask(&req.body, state.cfg.strict_stream_options).map_err(|msg| (400, msg))
}

/// One answer's fixed parts: its length, how it ends, and the JSON every chunk starts with.
struct Answer {
    id: u64,
    created: u64,
    model: String,
    n_out: u64,
    finish: &'static str,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,` — each chunk's start.
    prefix: String,
    /// The final `usage` object.
    usage: String,
}

impl Answer {
    fn new(state: &State, ask: &Ask) -> Self {
        let cfg = &state.cfg;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let n_out = ask
            .max_tokens
            .map_or(cfg.output_tokens, |m| m.min(cfg.output_tokens));
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
        Self {
            id,
            created,
            model,
            n_out,
            finish: if ask.max_tokens == Some(n_out) {
                "length"
            } else {
                "stop"
            },
            prefix,
            usage,
        }
    }

    /// A non-streamed answer: one JSON object when the whole answer would have been generated.
    async fn whole(
        &self,
        stream: &mut Io,
        state: &State,
        arrived: Instant,
        close: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let (cfg, cap) = (&state.cfg, state.capacity);
        let load = || state.active.load(Ordering::Relaxed);
        let secs = cfg.ttft_ms / 1000.0 * cap.slowdown(load())
            + self.n_out.saturating_sub(1) as f64 * cap.itl_s(load());
        sleep_until(arrived + bounded_secs(secs)).await;
        let text: String = (0..self.n_out)
            .map(|i| WORDS[i as usize % WORDS.len()])
            .collect();
        let body = format!(
            "{{\"id\":\"chatcmpl-mock-{}\",\"object\":\"chat.completion\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"finish_reason\":\"{}\"}}],\"usage\":{}}}",
            self.id,
            self.created,
            self.model,
            serde_json::to_string(&text).unwrap_or_default(),
            self.finish,
            self.usage
        );
        push_response(
            out,
            "200 OK",
            "application/json",
            close_header(close),
            &body,
        );
        write(stream, out).await.is_ok()
    }

    /// A streamed answer: the head (and a role chunk) at once, then each content chunk at its
    /// own deadline, then the finish chunk, usage and `[DONE]`.
    async fn stream(
        &self,
        stream: &mut Io,
        state: &State,
        ask: &Ask,
        arrived: Instant,
        close: bool,
        out: &mut Vec<u8>,
    ) -> bool {
        let (cfg, cap) = (&state.cfg, state.capacity);
        let load = || state.active.load(Ordering::Relaxed);
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
        out.extend_from_slice(close_header(close).as_bytes());
        out.extend_from_slice(b"\r\n");
        // vLLM's `continuous_usage_stats`: every chunk carries the running usage, so a client can
        // tell how many tokens each chunk holds.
        let continuous = ask.include_usage && ask.continuous_usage && !cfg.no_usage;
        let running_usage = |extra: &mut String, done: u64| {
            extra.clear();
            if continuous {
                extra.push_str(&format!(
                    ",\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":{done},\"total_tokens\":{}}}",
                    ask.prompt_tokens,
                    ask.prompt_tokens + done
                ));
            }
        };
        let mut extra = String::with_capacity(128);
        if cfg.role_chunk {
            running_usage(&mut extra, 0);
            let role = "{\"role\":\"assistant\",\"content\":\"\"}";
            push_event(out, &self.prefix, role, "null", &extra);
        }
        if write(stream, out).await.is_err() {
            return false;
        }
        let per_chunk = cfg.tokens_per_chunk.max(1);
        let mut deadline = arrived + bounded_secs(cfg.ttft_ms / 1000.0 * cap.slowdown(load()));
        let mut sent = 0u64;
        let mut content = String::with_capacity(64);
        while sent < self.n_out {
            let k = per_chunk.min(self.n_out - sent);
            sleep_until(deadline).await;
            content.clear();
            content.push_str("{\"content\":\"");
            for word in sent..sent + k {
                content.push_str(WORDS[word as usize % WORDS.len()]);
            }
            content.push_str("\"}");
            sent += k;
            running_usage(&mut extra, sent);
            if cfg.stamp_chunks {
                // The endpoint's send time on the shared monotonic clock, taken just before the
                // write: the client's read time minus this is the client's added delay.
                extra.push_str(&format!(",\"qpsbench_sent_ns\":{}", crate::clock::now_ns()));
            }
            push_event(out, &self.prefix, &content, "null", &extra);
            if sent == self.n_out {
                running_usage(&mut extra, sent);
                self.finish_stream(out, ask.include_usage && !cfg.no_usage, &extra);
            }
            if write(stream, out).await.is_err() {
                return false;
            }
            // The next chunk carries that many tokens, each taking one inter-token latency.
            let next_k = per_chunk.min(self.n_out - sent);
            deadline += bounded_secs(next_k as f64 * cap.itl_s(load()));
        }
        if self.n_out == 0 {
            self.finish_stream(out, false, "");
            return write(stream, out).await.is_ok();
        }
        true
    }

    /// The finish chunk, the usage chunk when asked for, `[DONE]` and the chunked body's end.
    fn finish_stream(&self, out: &mut Vec<u8>, usage: bool, extra: &str) {
        push_event(
            out,
            &self.prefix,
            "{}",
            &format!("\"{}\"", self.finish),
            extra,
        );
        if usage {
            push_chunk(
                out,
                &format!(
                    "data: {}\"choices\":[],\"usage\":{}}}\n\n",
                    self.prefix, self.usage
                ),
            );
        }
        push_chunk(out, "data: [DONE]\n\n");
        out.extend_from_slice(b"0\r\n\r\n");
    }
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
