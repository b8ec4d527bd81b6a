//! Prepared requests: the complete HTTP/1.1 bytes of each dataset sample, rendered once before
//! the run so that sending is a single write of shared bytes (`Bytes` clones are a refcount).
//!
//! Data flow: `dataset` samples + flags → [`render_all`] → the engine's cores, which pick sample
//! `i mod n` for arrival `i`.

use bytes::Bytes;
use serde::Serialize;

use crate::dataset::{Message, Sample};
use crate::error::{Result, UserError};
use crate::http::url::Endpoint;

/// What every request shares.
#[derive(Debug, Clone)]
pub struct RequestTemplate<'a> {
    pub endpoint: &'a Endpoint,
    pub api_key: &'a str,
    pub model: &'a str,
    pub max_tokens: u32,
    pub temperature: f64,
    /// Send `stream_options: {"include_usage": true}` so the server reports exact token counts.
    pub include_usage: bool,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// The seed's body, in the seed's key order, plus `stream_options`.
#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: &'a [Message],
    max_tokens: u32,
    temperature: f64,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// Renders every sample. Fails (without echoing the key) if the key could break the header.
pub fn render_all(t: &RequestTemplate<'_>, samples: &[Sample]) -> Result<Vec<Bytes>> {
    if t.api_key
        .bytes()
        .any(|b| b == b'\r' || b == b'\n' || b == 0)
    {
        return Err(UserError::input(
            "--api-key contains a line break or NUL byte; it cannot be sent in a header",
        ));
    }
    Ok(samples.iter().map(|s| render(t, s)).collect())
}

/// The HTTP/1.1 request for one sample.
pub fn render(t: &RequestTemplate<'_>, sample: &Sample) -> Bytes {
    let body = serde_json::to_vec(&Body {
        model: t.model,
        messages: &sample.messages,
        max_tokens: t.max_tokens,
        temperature: t.temperature,
        stream: true,
        stream_options: t.include_usage.then_some(StreamOptions {
            include_usage: true,
        }),
    })
    .expect("serializing strings and numbers cannot fail");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\nUser-Agent: qpsbench/{}\r\nContent-Length: {}\r\n\r\n",
        t.endpoint.target,
        t.endpoint.authority,
        t.api_key,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(&body);
    Bytes::from(out)
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
            endpoint: &ep,
            api_key: "sk-test",
            model: "m",
            max_tokens: 512,
            temperature: 0.7,
            include_usage: true,
        };
        let r = render_all(&t, &samples).unwrap().remove(0);
        let text = std::str::from_utf8(&r).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("POST /v1/chat/completions HTTP/1.1\r\nHost: [::1]:8000\r\n"));
        assert!(head.contains("Authorization: Bearer sk-test"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert_eq!(
            body,
            r#"{"model":"m","messages":[{"role":"system","content":"Be \"brief\""},{"role":"user","content":"Hi\n"}],"max_tokens":512,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}"#
        );
        t.include_usage = false;
        let r = render(&t, &samples[0]);
        assert!(!std::str::from_utf8(&r).unwrap().contains("stream_options"));
        t.api_key = "a\r\nX-Evil: 1";
        let e = render_all(&t, &samples).unwrap_err();
        assert!(!e.message.contains("Evil"));
    }
}
