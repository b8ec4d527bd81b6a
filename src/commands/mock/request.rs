//! The built-in endpoint's requests: one HTTP/1.1 request read off a keep-alive connection
//! (head and Content-Length body), and what it is routed to: the side paths (`/health`,
//! `/metrics`, `/v1/models`, the prefix-cache reset), the checks a hosted API makes
//! (`--require-key`, a loading server's `--fail-first`), and the API a path serves with what the
//! body asks (`ask`). `handler` answers it.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use super::ask::{self, Api, Ask, Reading};
use super::wire::Io;
use super::State;

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 256 << 20;

/// A parsed request.
pub(super) struct Request {
    pub method: String,
    pub path: String,
    pub close: bool,
    pub body: Vec<u8>,
    /// The key it carried (`Authorization: Bearer KEY` or `x-api-key: KEY`), for
    /// `--require-key`.
    pub key: Option<String>,
}

pub(super) enum ReadError {
    /// Clean close between requests, or a socket error: just drop the connection.
    Gone,
    /// Answer with this status and message, then close.
    Bad(u16, &'static str),
}

pub(super) async fn read_request(stream: &mut Io, buf: &mut Vec<u8>) -> Result<Request, ReadError> {
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
                let mut key = None;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("authorization") {
                        let v = String::from_utf8_lossy(h.value);
                        key = v.strip_prefix("Bearer ").map(str::to_string);
                    } else if h.name.eq_ignore_ascii_case("x-api-key") {
                        key = Some(String::from_utf8_lossy(h.value).into_owned());
                    }
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
                    key,
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

/// `--require-key` and `--fail-first`: a missing key is a 401 (as hosted APIs answer), and the
/// first requests a 503 (as a server still loading its model answers).
pub(super) fn authorize(state: &State, req: &Request) -> Result<(), (u16, String)> {
    if let Some(want) = &state.cfg.require_key {
        if req.key.as_deref() != Some(want.as_str()) {
            let why = if req.key.is_some() {
                "Incorrect API key provided"
            } else {
                "Missing API key"
            };
            return Err((401, format!("{why}: send Authorization: Bearer KEY")));
        }
    }
    if state.cfg.fail_first > 0
        && state.admitted.fetch_add(1, Ordering::Relaxed) < state.cfg.fail_first
    {
        return Err((503, "Service unavailable: the model is loading".into()));
    }
    Ok(())
}

/// The request's path, method and body, checked: what it asks for, or the error to answer.
pub(super) fn admit(state: &State, req: &Request) -> Result<Ask, (u16, String)> {
    let path = req.path.split('?').next().unwrap_or("");
    let api = match path {
        "/v1/chat/completions" | "/chat/completions" => Api::Chat,
        "/v1/completions" | "/completions" => Api::Completions,
        "/v1/responses" | "/responses" => Api::Responses,
        "/v1/messages" | "/messages" => Api::Messages,
        "/v1/embeddings" | "/embeddings" => Api::Embeddings,
        _ => {
            let use_ = "use /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages or /v1/embeddings";
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
pub(super) fn reset(state: &State, req: &Request) -> Option<(&'static str, &'static str, String)> {
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
pub(super) fn listing(
    state: &State,
    req: &Request,
) -> Option<(&'static str, &'static str, String)> {
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
