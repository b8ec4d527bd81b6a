//! The built-in endpoint's connection handling: reads HTTP/1.1 requests on a keep-alive
//! connection and answers each with a streamed (or plain JSON) chat completion, or an
//! OpenAI-style error (400 bad JSON, 404 wrong path, 405 wrong method, 503 over capacity).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::net::TcpListener;

use rustls::ServerConnection;

use super::ask::{self, Api, Ask, Reading};
use super::wire::{
    close_header, error_response, push_chunk, push_event, push_response, push_text_event, push_u64,
    write, Io,
};
use super::State;
use crate::http::tls::TlsIo;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 256 << 20;
/// An answer's words: each answer starts at its own word (its id), so that two answers differ,
/// and some words need JSON escapes, so that a client re-sending an answer must decode and
/// escape it right.
const WORDS: [&str; 10] = [
    " The",
    " quick",
    " brown",
    " fox",
    " \"jumps\"",
    " over",
    " a",
    "\n",
    " lazy",
    " dog",
];

/// Word `i` of answer `id`.
fn word(id: u64, i: u64) -> &'static str {
    WORDS[(id.wrapping_add(i) % WORDS.len() as u64) as usize]
}

/// Appends `w` as the inside of a JSON string (only quotes and line breaks occur in [`WORDS`]).
fn push_word(out: &mut String, w: &str) {
    if w.contains(['"', '\n']) {
        out.push_str(&w.replace('"', "\\\"").replace('\n', "\\n"));
    } else {
        out.push_str(w);
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
            Ok(r) => {
                crate::rt::note_work();
                r
            }
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

/// Answers one request; returns whether the connection stays open.
async fn respond(stream: &mut Io, state: &Arc<State>, req: Request, out: &mut Vec<u8>) -> bool {
    if let Some((status, content_type, body)) = listing(state, &req).or_else(|| reset(state, &req))
    {
        push_response(out, status, content_type, close_header(req.close), &body);
        return write(stream, out).await.is_ok() && !req.close;
    }
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
    // With --max-num-seqs, wait for a place in the batch (FIFO); TTFT counts from arrival, and
    // generation from here.
    let _seat = state.scheduler.enter().await;
    let started = Instant::now();
    state.scheduler.add_prompt_tokens(ask.prompt_tokens);
    // Looked up as the request enters the batch, as a server's scheduler does.
    let cached = state
        .prefix_cache
        .as_ref()
        .map(|c| c.lookup_and_store(&ask.prompt_hashes));
    let answer = Answer::new(state, &ask, cached);
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
    if let Some(log) = &state.request_log {
        answer.log(log, &req.body);
    }
    let keep = if ask.stream {
        answer
            .stream(stream, state, &ask, started, req.close, out)
            .await
    } else {
        answer.whole(stream, state, started, req.close, out).await
    };
    keep && !req.close
}

/// The request's path, method and body, checked: what it asks for, or the error to answer.
fn admit(state: &State, req: &Request) -> Result<Ask, (u16, String)> {
    let path = req.path.split('?').next().unwrap_or("");
    let api = match path {
        "/v1/chat/completions" | "/chat/completions" => Api::Chat,
        "/v1/completions" | "/completions" => Api::Completions,
        _ => {
            let use_ = "use /v1/chat/completions or /v1/completions";
            return Err((404, format!("Not found: {path}; {use_}")));
        }
    };
    if req.method != "POST" {
        return Err((405, "Method not allowed; use POST".into()));
    }
    let reading = Reading {
        strict_stream_options: state.cfg.strict_stream_options,
        hashes: state.prefix_cache.is_some(),
    };
    ask::parse(&req.body, api, reading).map_err(|msg| (400, msg))
}

/// `POST /reset_prefix_cache` (vLLM's, with `VLLM_SERVER_DEV_MODE=1`): empties the prefix cache
/// (`--prefix-cache`); a 404 without one, as vLLM answers outside its dev mode.
fn reset(state: &State, req: &Request) -> Option<(&'static str, &'static str, String)> {
    if req.method != "POST" || req.path.split('?').next() != Some("/reset_prefix_cache") {
        return None;
    }
    Some(match &state.prefix_cache {
        Some(c) => {
            c.reset();
            ("200 OK", "application/json", String::new())
        }
        None => (
            "404 Not Found",
            "application/json",
            r#"{"error":{"message":"Not found: the prefix cache is off (serve-mock --prefix-cache)","type":"not_found_error","code":404}}"#.to_string(),
        ),
    })
}

/// `GET /v1/models` (the served model, as vLLM lists it), `GET /health` (an empty 200), which
/// other clients check before they start, and `GET /metrics` (Prometheus text, vLLM's names):
/// (status, content type, body); `None` for anything else.
fn listing(state: &State, req: &Request) -> Option<(&'static str, &'static str, String)> {
    if req.method != "GET" {
        return None;
    }
    const JSON: &str = "application/json";
    match req.path.split('?').next().unwrap_or("") {
        "/health" => Some(("200 OK", JSON, String::new())),
        "/metrics" => Some((
            "200 OK",
            "text/plain; version=0.0.4",
            state
                .scheduler
                .render(&state.cfg.served_model_name, &state.active)
                + &state.lateness.summary().prometheus()
                + &state.prefix_cache.as_ref().map_or(String::new(), |c| {
                    c.render(&super::metrics::label_value(&state.cfg.served_model_name))
                }),
        )),
        "/v1/models" | "/models" => {
            let created = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let body = serde_json::json!({
                "object": "list",
                "data": [{
                    "id": state.cfg.served_model_name,
                    "object": "model",
                    "created": created,
                    "owned_by": "qpsbench",
                    "root": state.cfg.served_model_name,
                }],
            });
            Some(("200 OK", JSON, body.to_string()))
        }
        _ => None,
    }
}

/// One answer's fixed parts: its length, how it ends, and the JSON every chunk starts with.
struct Answer {
    api: Api,
    /// Time to the first token before any slowdown: `--ttft-ms` plus the prompt's prefill, s.
    ttft_s: f64,
    id: u64,
    created: u64,
    model: String,
    n_out: u64,
    /// Reasoning tokens streamed before the answer (`--reasoning-tokens`, chat only).
    n_reason: u64,
    finish: &'static str,
    /// `{"id":…,"object":"chat.completion.chunk","created":…,"model":…,` — each chunk's start.
    prefix: String,
    /// The final `usage` object.
    usage: String,
}

impl Answer {
    /// `cached`: the prompt tokens found in the prefix cache (None: the endpoint keeps none).
    fn new(state: &State, ask: &Ask, cached: Option<u64>) -> Self {
        let cfg = &state.cfg;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let n_out = ask.answer_tokens(cfg.output_tokens);
        let model = serde_json::to_string(&ask.model).unwrap_or_else(|_| "\"mock-model\"".into());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (id_prefix, object) = match ask.api {
            Api::Chat => ("chatcmpl", "chat.completion.chunk"),
            Api::Completions => ("cmpl", "text_completion"),
        };
        let prefix = format!(
            "{{\"id\":\"{id_prefix}-mock-{id}\",\"object\":\"{object}\",\"created\":{created},\"model\":{model},"
        );
        let details = cached.map_or(String::new(), |c| {
            format!(",\"prompt_tokens_details\":{{\"cached_tokens\":{c}}}")
        });
        let n_reason = if ask.api == Api::Chat {
            cfg.reasoning_tokens
        } else {
            0
        };
        let reasoning = if n_reason > 0 {
            format!(",\"completion_tokens_details\":{{\"reasoning_tokens\":{n_reason}}}")
        } else {
            String::new()
        };
        let usage = format!(
            "{{\"prompt_tokens\":{},\"completion_tokens\":{},\"total_tokens\":{}{details}{reasoning}}}",
            ask.prompt_tokens,
            n_reason + n_out,
            ask.prompt_tokens + n_reason + n_out
        );
        // Only the tokens the cache did not hold are prefilled.
        let prefilled = ask.prompt_tokens - cached.unwrap_or(0).min(ask.prompt_tokens);
        let prefill_ms = cfg.prefill_ms_per_1k_tokens * prefilled as f64 / 1000.0;
        Self {
            api: ask.api,
            ttft_s: (cfg.ttft_ms + prefill_ms) / 1000.0,
            id,
            created,
            model,
            n_out,
            n_reason,
            finish: if ask.max_tokens == Some(n_out) {
                "length"
            } else {
                "stop"
            },
            prefix,
            usage,
        }
    }

    /// `--log-requests`: the request's body (JSON as received, or a string if it is not JSON)
    /// and the answer's text, as one line.
    fn log(&self, log: &std::sync::Mutex<std::fs::File>, body: &[u8]) {
        use std::io::Write as _;
        let text: String = (0..self.n_out).map(|i| word(self.id, i)).collect();
        let body: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into());
        let line = serde_json::json!({ "body": body, "answer": text });
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{line}");
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
        let cap = state.capacity;
        let load = || running(state);
        let secs = self.ttft_s * cap.slowdown(load())
            + self.n_out.saturating_sub(1) as f64 * cap.itl_s(load());
        sleep_until(arrived + bounded_secs(secs)).await;
        state.scheduler.add_generation_tokens(self.n_out);
        let text: String = (0..self.n_out).map(|i| word(self.id, i)).collect();
        let text = serde_json::to_string(&text).unwrap_or_default();
        let (id, object, choice) = match self.api {
            Api::Chat => (
                "chatcmpl",
                "chat.completion",
                format!("\"message\":{{\"role\":\"assistant\",\"content\":{text}}}"),
            ),
            Api::Completions => ("cmpl", "text_completion", format!("\"text\":{text}")),
        };
        let body = format!(
            "{{\"id\":\"{id}-mock-{}\",\"object\":\"{object}\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,{choice},\"finish_reason\":\"{}\"}}],\"usage\":{}}}",
            self.id,
            self.created,
            self.model,
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
        let load = || running(state);
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n");
        out.extend_from_slice(close_header(close).as_bytes());
        out.extend_from_slice(b"\r\n");
        // vLLM's `continuous_usage_stats`: every chunk carries the running usage, so a client can
        // tell how many tokens each chunk holds.
        // Rendered once per stream; each chunk patches in only its counters.
        let continuous = ask.include_usage && ask.continuous_usage && !cfg.no_usage;
        let usage_head = format!(
            ",\"usage\":{{\"prompt_tokens\":{},\"completion_tokens\":",
            ask.prompt_tokens
        );
        let running_usage = |extra: &mut String, done: u64| {
            extra.clear();
            if continuous {
                extra.push_str(&usage_head);
                push_u64(extra, done);
                extra.push_str(",\"total_tokens\":");
                push_u64(extra, ask.prompt_tokens + done);
                extra.push('}');
            }
        };
        let mut extra = String::with_capacity(128);
        if cfg.role_chunk && self.api == Api::Chat {
            running_usage(&mut extra, 0);
            let role = "{\"role\":\"assistant\",\"content\":\"\"}";
            push_event(out, &self.prefix, role, "null", &extra);
        }
        if write(stream, out).await.is_err() {
            return false;
        }
        let per_chunk = cfg.tokens_per_chunk.max(1);
        let mut deadline = arrived + bounded_secs(self.ttft_s * cap.slowdown(load()));
        let mut sent = 0u64;
        let mut content = String::with_capacity(64);
        // Reasoning tokens first (`--reasoning-tokens`, chat only), then the answer.
        let total = self.n_reason + self.n_out;
        let chunk_at = |sent: u64| per_chunk.min(self.phase_end(sent) - sent);
        while sent < total {
            let k = chunk_at(sent);
            sleep_until(deadline).await;
            // The piece as the API carries it: a chat delta, or a completion's text.
            let (open, close) = match self.api {
                Api::Chat if sent < self.n_reason => ("{\"reasoning_content\":\"", "\"}"),
                Api::Chat => ("{\"content\":\"", "\"}"),
                Api::Completions => ("\"", "\""),
            };
            content.clear();
            content.push_str(open);
            for i in sent..sent + k {
                push_word(&mut content, word(self.id, i));
            }
            content.push_str(close);
            sent += k;
            state.scheduler.add_generation_tokens(k);
            running_usage(&mut extra, sent);
            if cfg.stamp_chunks {
                // The endpoint's send time on the shared monotonic clock, taken just before the
                // write: the client's read time minus this is the client's added delay.
                extra.push_str(",\"qpsbench_sent_ns\":");
                push_u64(&mut extra, crate::clock::now_ns());
            }
            self.push_piece(out, &content, "null", &extra);
            // Sent now, against its deadline: whether the endpoint kept its own schedule.
            state
                .lateness
                .record(Instant::now().saturating_duration_since(deadline));
            if sent == total {
                running_usage(&mut extra, sent);
                self.finish_stream(out, ask.include_usage && !cfg.no_usage, &extra);
            }
            if write(stream, out).await.is_err() {
                return false;
            }
            crate::rt::note_work();
            // The next chunk carries that many tokens, each taking one inter-token latency.
            let next_k = if sent < total { chunk_at(sent) } else { 0 };
            deadline += bounded_secs(next_k as f64 * cap.itl_s(load()));
        }
        if total == 0 {
            self.finish_stream(out, false, "");
            return write(stream, out).await.is_ok();
        }
        true
    }

    /// Where the phase token `sent` is in ends: the reasoning's end, or the answer's.
    fn phase_end(&self, sent: u64) -> u64 {
        if sent < self.n_reason {
            self.n_reason
        } else {
            self.n_reason + self.n_out
        }
    }

    /// One chunk event carrying `piece` (a chat delta object, or a completion's text string).
    fn push_piece(&self, out: &mut Vec<u8>, piece: &str, finish: &str, extra: &str) {
        match self.api {
            Api::Chat => push_event(out, &self.prefix, piece, finish, extra),
            Api::Completions => push_text_event(out, &self.prefix, piece, finish, extra),
        }
    }

    /// The finish chunk, the usage chunk when asked for, `[DONE]` and the chunked body's end.
    fn finish_stream(&self, out: &mut Vec<u8>, usage: bool, extra: &str) {
        let empty = match self.api {
            Api::Chat => "{}",
            Api::Completions => "\"\"",
        };
        self.push_piece(out, empty, &format!("\"{}\"", self.finish), extra);
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

/// Requests generating now (what the capacity model shares its budget among): with a queue,
/// those in the batch; without, every one admitted.
fn running(state: &State) -> usize {
    state.scheduler.running_waiting(&state.active).0 as usize
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
