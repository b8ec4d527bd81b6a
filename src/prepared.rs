//! Prepared requests: the complete HTTP/1.1 bytes of each dataset sample, rendered once before
//! the run into one immutable buffer ([`Prepared`]) that every core reads without copying it.
//!
//! Data flow: `dataset` samples + flags → [`render_all`] → the engine's cores, which pick sample
//! `i mod n` for arrival `i` and hand the kernel a [`RequestBuf`] (a view into the buffer).
//!
//! Why not `Bytes`: cloning a `Bytes` for each request bumps an atomic refcount that every core
//! shares, a cross-core write on the send path. Here each core holds its own non-atomic handle
//! (`Rc`) to the shared buffer, taken once per level, so sending touches nothing another core
//! writes. There is still only one copy of the bytes, however large the dataset.

use std::rc::Rc;
use std::sync::Arc;

use serde::Serialize;

use crate::dataset::{Message, Sample};
use crate::error::{Result, UserError};
use crate::http::url::Endpoint;
use crate::secret::{is_secret_name, masked_header};

pub use crate::cli::Api;

/// What every request shares.
#[derive(Debug, Clone)]
pub struct RequestTemplate<'a> {
    pub api: Api,
    /// `--extra-body`: merged into every body, its keys winning ([`parse_extra_body`]).
    pub extra_body: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub endpoint: &'a Endpoint,
    pub api_key: &'a str,
    pub model: &'a str,
    pub max_tokens: u32,
    pub temperature: f64,
    /// Send `stream_options: {"include_usage": true}` so the server reports exact token counts.
    pub include_usage: bool,
    /// With `include_usage`: also ask for `continuous_usage_stats` (vLLM), a running usage
    /// count in every chunk, which tells how many tokens each chunk carries (for ITL).
    pub continuous_usage: bool,
    /// Extra headers (`--header`), validated by [`parse_header`]. An `Authorization` header here
    /// replaces the `Bearer` one.
    pub headers: &'a [(String, String)],
}

/// Parses and validates a `--header 'Name: value'`. Errors never show a secret value.
pub fn parse_header(raw: &str) -> Result<(String, String)> {
    let Some((name, value)) = raw.split_once(':') else {
        return Err(UserError::input(format!(
            "--header '{}': expected 'Name: value'",
            if is_secret_name(raw) { "****" } else { raw }
        )));
    };
    let (name, value) = (name.trim(), value.trim());
    let shown = masked_header(name, value);
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err(UserError::input(format!(
            "--header '{shown}': the name must be a non-empty HTTP token (letters, digits, -, _, …)"
        )));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(UserError::input(format!(
            "--header '{name}: …': the value contains a line break or NUL byte"
        )));
    }
    for reserved in ["host", "content-length", "transfer-encoding", "connection"] {
        if name.eq_ignore_ascii_case(reserved) {
            return Err(UserError::input(format!(
                "--header '{shown}': {name} is set by qpsbench itself"
            )));
        }
    }
    Ok((name.to_string(), value.to_string()))
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    continuous_usage_stats: bool,
}

/// The seed's body, in the seed's key order, plus `stream_options`: `messages` for the chat
/// API, or `prompt` for the completions API.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    max_tokens: u32,
    temperature: f64,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// Every sample's request bytes, back to back in one buffer that never changes after it is built.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    bytes: Vec<u8>,
    /// Where each sample's request ends in `bytes` (it starts where the previous one ends).
    ends: Vec<usize>,
}

impl Prepared {
    /// Appends one rendered request.
    pub fn push(&mut self, request: &[u8]) {
        self.bytes.extend_from_slice(request);
        self.ends.push(self.bytes.len());
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn range(&self, sample: usize) -> (usize, usize) {
        let start = if sample == 0 {
            0
        } else {
            self.ends[sample - 1]
        };
        (start, self.ends[sample])
    }

    /// Sample `sample`'s request.
    pub fn get(&self, sample: usize) -> &[u8] {
        let (start, end) = self.range(sample);
        &self.bytes[start..end]
    }
}

/// One core's handle on the shared [`Prepared`] buffer: cloned per request without any atomic
/// operation (the `Rc` never leaves its core).
pub type CoreRequests = Rc<Arc<Prepared>>;

/// One request's bytes as an owned buffer the kernel can write from (io_uring needs the buffer
/// to outlive the operation): a view into the core's handle on the shared buffer.
#[derive(Debug, Clone)]
pub struct RequestBuf {
    arena: CoreRequests,
    start: usize,
    end: usize,
}

impl RequestBuf {
    pub fn new(arena: &CoreRequests, sample: usize) -> Self {
        let (start, end) = arena.range(sample);
        Self {
            arena: arena.clone(),
            start,
            end,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.arena.bytes[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl AsRef<[u8]> for RequestBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

// SAFETY: the pointer is into `Prepared::bytes`, which is never mutated or reallocated after the
// `Prepared` is built (it sits behind an `Arc` with no mutable access), and `self` keeps it alive
// through its `Rc<Arc<_>>` for as long as the runtime holds this buffer. `bytes_init` is the
// length of the view, which lies within `bytes`.
unsafe impl monoio::buf::IoBuf for RequestBuf {
    fn read_ptr(&self) -> *const u8 {
        self.as_slice().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len()
    }
}

/// Renders every sample. Fails (without echoing the key) if the key could break the header.
pub fn render_all(t: &RequestTemplate<'_>, samples: &[Sample]) -> Result<Prepared> {
    if t.api_key
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(UserError::input(
            "--api-key contains a line break or NUL byte; it cannot be sent in a header",
        ));
    }
    let mut prepared = Prepared::default();
    for s in samples {
        prepared.push(&render(t, s));
    }
    Ok(prepared)
}

/// The keys of a request body that qpsbench sets itself: `--extra-body` may not replace them.
const OWNED_KEYS: [&str; 5] = ["model", "messages", "prompt", "stream", "stream_options"];

/// Parses `--extra-body`: a JSON object without the keys qpsbench owns.
pub fn parse_extra_body(raw: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| UserError::input(format!("--extra-body: not valid JSON ({e})")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(UserError::input(
            "--extra-body: expected a JSON object, e.g. '{\"top_p\": 0.9}'",
        ));
    };
    if let Some(k) = map.keys().find(|k| OWNED_KEYS.contains(&k.as_str())) {
        return Err(UserError::input(format!(
            "--extra-body: \"{k}\" is set by qpsbench itself (it owns {})",
            OWNED_KEYS.join(", ")
        )));
    }
    Ok(map)
}

/// A chat sample as one completions prompt: each message on its own line after its role's label
/// (`System:`, `User:`, `Assistant:`), and an `Assistant:` line to answer on.
pub fn flatten(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        let mut role = m.role.to_string();
        if let Some(first) = role.get_mut(..1) {
            first.make_ascii_uppercase();
        }
        out.push_str(&format!("{role}: {}\n", m.content));
    }
    out.push_str("Assistant:");
    out
}

/// The API an endpoint's path implies: `…/completions` but not `…/chat/completions` is the
/// completions API.
pub fn api_of_path(path: &str) -> Api {
    let path = path.split('?').next().unwrap_or(path);
    if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
        Api::Completions
    } else {
        Api::Chat
    }
}

/// The HTTP/1.1 request for one sample.
pub fn render(t: &RequestTemplate<'_>, sample: &Sample) -> Vec<u8> {
    let (messages, prompt) = match t.api {
        Api::Chat => (Some(sample.messages.as_slice()), None),
        // A prompt-only sample is sent as is; a chat is flattened.
        Api::Completions => (
            None,
            Some(
                sample
                    .prompt
                    .clone()
                    .unwrap_or_else(|| flatten(&sample.messages)),
            ),
        ),
    };
    let body = Body {
        model: t.model,
        messages,
        prompt,
        max_tokens: sample.max_tokens.unwrap_or(t.max_tokens),
        temperature: t.temperature,
        stream: true,
        stream_options: t.include_usage.then_some(StreamOptions {
            include_usage: true,
            continuous_usage_stats: t.continuous_usage,
        }),
    };
    let body = match t.extra_body {
        None => serde_json::to_vec(&body),
        Some(extra) => {
            // Merged after the defaults, so the user's keys win; key order stays the seed's.
            let mut v = serde_json::to_value(&body).expect("a body of strings and numbers");
            if let Some(obj) = v.as_object_mut() {
                obj.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            serde_json::to_vec(&v)
        }
    }
    .expect("serializing strings and numbers cannot fail");
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n",
        t.endpoint.target, t.endpoint.authority
    );
    if !t
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
    {
        head.push_str(&format!("Authorization: Bearer {}\r\n", t.api_key));
    }
    for (name, value) in t.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Type: application/json\r\nAccept: text/event-stream\r\nUser-Agent: qpsbench/{}\r\nContent-Length: {}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    ));
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_seed_body_with_usage_option() {
        let ep = Endpoint::parse("http://[::1]:8000/v1/chat/completions").unwrap();
        let samples = crate::dataset::parse(
            br#"[{"prompt_content":"Be \"brief\"","cut_chat_history":[{"role":"user","content":"Hi\n"}]}]"#,
            "t",
        )
        .unwrap();
        let mut t = RequestTemplate {
            api: Api::Chat,
            extra_body: None,
            endpoint: &ep,
            api_key: "sk-test",
            model: "m",
            max_tokens: 512,
            temperature: 0.7,
            include_usage: true,
            continuous_usage: false,
            headers: &[],
        };
        let all = render_all(&t, &samples).unwrap();
        let text = std::str::from_utf8(all.get(0)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1\r\nHost: [::1]:8000\r\n"));
        assert!(head.contains("Authorization: Bearer sk-test"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            r#"{"model":"m","messages":[{"role":"system","content":"Be \"brief\""},{"role":"user","content":"Hi\n"}],"max_tokens":512,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}"#
        );
        t.continuous_usage = true;
        let r = render(&t, &samples[0]);
        assert!(std::str::from_utf8(&r).unwrap().ends_with(
            r#""stream_options":{"include_usage":true,"continuous_usage_stats":true}}"#
        ));
        t.include_usage = false;
        let r = render(&t, &samples[0]);
        assert!(!std::str::from_utf8(&r).unwrap().contains("stream_options"));
        t.api_key = "a\r\nX-Evil: 1";
        let e = render_all(&t, &samples).unwrap_err();
        assert!(!e.message.contains("Evil"));
    }

    #[test]
    fn completions_requests_carry_one_flattened_prompt() {
        assert_eq!(api_of_path("/v1/completions"), Api::Completions);
        assert_eq!(api_of_path("/v1/completions?x=1"), Api::Completions);
        assert_eq!(api_of_path("/v1/chat/completions"), Api::Chat);
        assert_eq!(api_of_path("/generate"), Api::Chat);
        let ep = Endpoint::parse("http://127.0.0.1:8000/v1/completions").unwrap();
        let samples = crate::dataset::parse(
            br#"[{"prompt_content":"Be brief","cut_chat_history":[{"role":"user","content":"Hi"}]}]"#,
            "t",
        )
        .unwrap();
        let t = RequestTemplate {
            api: Api::Completions,
            extra_body: None,
            endpoint: &ep,
            api_key: "k",
            model: "m",
            max_tokens: 8,
            temperature: 0.0,
            include_usage: true,
            continuous_usage: false,
            headers: &[],
        };
        let r = render(&t, &samples[0]);
        let text = std::str::from_utf8(&r).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["prompt"], "System: Be brief\nUser: Hi\nAssistant:");
        assert!(v.get("messages").is_none());
        assert_eq!(v["stream"], true);
    }

    #[test]
    fn prepared_views_are_the_rendered_requests() {
        let mut p = Prepared::default();
        for r in [&b"first"[..], b"", b"third one"] {
            p.push(r);
        }
        assert_eq!(p.len(), 3);
        assert_eq!(p.get(0), b"first");
        assert_eq!(p.get(1), b"");
        let core: CoreRequests = Rc::new(Arc::new(p));
        let buf = RequestBuf::new(&core, 2);
        assert_eq!(buf.as_slice(), b"third one");
        use monoio::buf::IoBuf;
        assert_eq!(buf.bytes_init(), 9);
        // SAFETY (test): read_ptr points at bytes_init initialized bytes.
        let seen = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        assert_eq!(seen, b"third one");
        assert!(RequestBuf::new(&core, 1).is_empty());
    }
}

#[cfg(test)]
mod header_tests {
    use super::*;

    #[test]
    fn headers_are_validated_and_secrets_masked() {
        assert_eq!(
            parse_header("X-Tenant: acme").unwrap(),
            ("X-Tenant".into(), "acme".into())
        );
        let e = parse_header("X-Api-Key: s3cr3t\r\nX-Evil: 1")
            .unwrap_err()
            .message;
        assert!(!e.contains("s3cr3t") && !e.contains("Evil"), "{e}");
        let e = parse_header("Bad Name: s3cr3t-token").unwrap_err().message;
        assert!(e.contains("HTTP token"), "{e}");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Content-Length: 5").is_err());
        assert_eq!(
            masked_header("Authorization", "Bearer x"),
            "Authorization: ****"
        );
        assert_eq!(masked_header("X-Auth-Token", "x"), "X-Auth-Token: ****");
        assert_eq!(masked_header("X-Tenant", "acme"), "X-Tenant: acme");
        assert_eq!(
            crate::secret::mask_url("https://h/v1?api-version=1&api-key=s3cr3t"),
            "https://h/v1?api-version=1&api-key=****"
        );
    }

    #[test]
    fn custom_authorization_replaces_bearer() {
        let ep = crate::http::url::Endpoint::parse("http://h/v1").unwrap();
        let samples =
            crate::dataset::parse(br#"[{"prompt_content":"p","cut_chat_history":[]}]"#, "t")
                .unwrap();
        let headers = vec![
            ("Authorization".to_string(), "Basic abc".to_string()),
            ("X-Tenant".to_string(), "acme".to_string()),
        ];
        let t = RequestTemplate {
            api: Api::Chat,
            extra_body: None,
            endpoint: &ep,
            api_key: "k",
            model: "m",
            max_tokens: 1,
            temperature: 0.0,
            include_usage: false,
            continuous_usage: false,
            headers: &headers,
        };
        let r = render(&t, &samples[0]);
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.contains("Authorization: Basic abc\r\n") && !text.contains("Bearer"));
        assert!(text.contains("X-Tenant: acme\r\n"));
    }
}
