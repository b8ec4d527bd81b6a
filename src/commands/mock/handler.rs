//! The built-in endpoint's connection handling: reads HTTP/1.1 requests (`request`) on a keep-alive
//! connection and answers each with a streamed (or plain JSON) answer in its API's dialect
//! (`events`), an embeddings answer, or an OpenAI-style error (400 bad JSON, 404 wrong path,
//! 405 wrong method, 503 over capacity).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use monoio::net::TcpListener;

use rustls::ServerConnection;

use super::ask::{Api, Ask};
use super::events::{Counts, Events};
use super::request::{admit, authorize, listing, read_request, reset, ReadError, Request};
use super::wire::{close_header, error_response, push_response, push_u64, write, Io};
use super::State;
use crate::http::tls::TlsIo;

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
    let ask = match authorize(state, &req).and_then(|()| admit(state, &req)) {
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
            events: &answer.events,
            tokens: answer.n_out,
            itl: bounded_secs(cfg.itl_ms / 1000.0),
        };
        return super::fault::serve(fault, stream, &s, out).await && !req.close;
    }
    if let Some(log) = &state.request_log {
        answer.log(log, &req.body);
    }
    let keep = if ask.stream && ask.api != Api::Embeddings {
        answer
            .stream(stream, state, &ask, started, req.close, out)
            .await
    } else {
        answer.whole(stream, state, started, req.close, out).await
    };
    keep && !req.close
}

/// One answer's fixed parts: its length, how it ends, and its events.
struct Answer {
    api: Api,
    /// Time to the first token before any slowdown: `--ttft-ms` plus the prompt's prefill, s.
    ttft_s: f64,
    id: u64,
    created: u64,
    model: String,
    n_out: u64,
    /// Reasoning tokens streamed before the answer (`--reasoning-tokens`).
    n_reason: u64,
    /// Embeddings: the inputs embedded.
    inputs: u64,
    events: Events,
}

impl Answer {
    /// `cached`: the prompt tokens found in the prefix cache (None: the endpoint keeps none).
    fn new(state: &State, ask: &Ask, cached: Option<u64>) -> Self {
        let cfg = &state.cfg;
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        let embeds = ask.api == Api::Embeddings;
        let n_out = if embeds {
            0
        } else {
            ask.answer_tokens(cfg.output_tokens)
        };
        let model = serde_json::to_string(&ask.model).unwrap_or_else(|_| "\"mock-model\"".into());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let n_reason = match ask.api {
            Api::Chat | Api::Responses | Api::Messages => cfg.reasoning_tokens,
            Api::Completions | Api::Embeddings => 0,
        };
        let counts = Counts {
            prompt: ask.prompt_tokens,
            cached,
            reasoning: n_reason,
            answer: n_out,
        };
        let cut = ask.max_tokens == Some(n_out);
        // Only the tokens the cache did not hold are prefilled.
        let prefilled = ask.prompt_tokens - cached.unwrap_or(0).min(ask.prompt_tokens);
        let prefill_ms = cfg.prefill_ms_per_1k_tokens * prefilled as f64 / 1000.0;
        Self {
            api: ask.api,
            ttft_s: (cfg.ttft_ms + prefill_ms) / 1000.0,
            id,
            created,
            events: Events::new(ask.api, id, created, model.clone(), counts, cut),
            model,
            n_out,
            n_reason,
            inputs: ask.inputs,
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
        let body = self.whole_body();
        push_response(
            out,
            "200 OK",
            "application/json",
            close_header(close),
            &body,
        );
        write(stream, out).await.is_ok()
    }

    /// A non-streamed answer's JSON: an embeddings list, or a chat or text completion (other
    /// APIs are answered in chat's shape: the endpoint streams them).
    fn whole_body(&self) -> String {
        if self.api == Api::Embeddings {
            return embeddings_body(self.id, self.inputs, &self.model, self.events.counts.prompt);
        }
        let text: String = (0..self.n_out).map(|i| word(self.id, i)).collect();
        let text = serde_json::to_string(&text).unwrap_or_default();
        let (id, object, choice) = match self.api {
            Api::Completions => ("cmpl", "text_completion", format!("\"text\":{text}")),
            _ => (
                "chatcmpl",
                "chat.completion",
                format!("\"message\":{{\"role\":\"assistant\",\"content\":{text}}}"),
            ),
        };
        let finish = if self.events.cut() { "length" } else { "stop" };
        format!(
            "{{\"id\":\"{id}-mock-{}\",\"object\":\"{object}\",\"created\":{},\"model\":{},\"choices\":[{{\"index\":0,{choice},\"finish_reason\":\"{finish}\"}}],\"usage\":{}}}",
            self.id, self.created, self.model, self.events.usage
        )
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
        running_usage(&mut extra, 0);
        self.events.start(out, cfg.role_chunk, &extra);
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
            content.clear();
            for i in sent..sent + k {
                push_word(&mut content, word(self.id, i));
            }
            let before = sent;
            sent += k;
            state.scheduler.add_generation_tokens(k);
            running_usage(&mut extra, sent);
            if cfg.stamp_chunks {
                // The endpoint's send time on the shared monotonic clock, taken just before the
                // write: the client's read time minus this is the client's added delay.
                extra.push_str(",\"qpsbench_sent_ns\":");
                push_u64(&mut extra, crate::foundation::clock::now_ns());
            }
            self.events.piece(out, &content, before, &extra);
            // Sent now, against its deadline: whether the endpoint kept its own schedule.
            state
                .lateness
                .record(Instant::now().saturating_duration_since(deadline));
            if sent == total {
                running_usage(&mut extra, sent);
                self.events
                    .finish(out, ask.include_usage && !cfg.no_usage, &extra);
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
            self.events.finish(out, false, "");
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
}

/// An embeddings answer: a vector of 8 floats per input, drawn from the answer's id, and the
/// inputs' prompt tokens in `usage`.
fn embeddings_body(id: u64, inputs: u64, model: &str, prompt_tokens: u64) -> String {
    let mut data = String::with_capacity(inputs as usize * 96);
    for i in 0..inputs {
        if i > 0 {
            data.push(',');
        }
        data.push_str("{\"object\":\"embedding\",\"index\":");
        push_u64(&mut data, i);
        data.push_str(",\"embedding\":[");
        for d in 0..8u64 {
            let x = ((id.wrapping_mul(31).wrapping_add(i * 8 + d) % 2000) as f64 - 1000.0) / 1000.0;
            if d > 0 {
                data.push(',');
            }
            data.push_str(&format!("{x:.3}"));
        }
        data.push_str("]}");
    }
    format!(
        "{{\"object\":\"list\",\"data\":[{data}],\"model\":{model},\"usage\":{{\"prompt_tokens\":{prompt_tokens},\"total_tokens\":{prompt_tokens}}}}}"
    )
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
