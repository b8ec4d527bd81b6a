//! Prepared requests: the HTTP/1.1 bytes every prompt of a run sends, rendered before each level
//! into one immutable arena ([`Prepared`], in `arena`) that every core reads without copying it.
//!
//! Data flow: `dataset` rows + flags → [`RunRequests`] (in `level`: the run's shared bytes, once:
//! heads, each row's body, the synthetic text) → before each level, [`RunRequests::level`]
//! renders the level's prompts (`unique`: which row each prompt sends, and what keeps a repeat
//! apart) as parts of that → the engine's cores, which hand the kernel a [`RequestBuf`] (a view
//! into the arena). A row's body is cut where a marker may go (`synthetic`), and a synthetic
//! prompt is its body's pieces around views of the shared text, so no prompt is ever rendered
//! whole.

mod arena;
mod body;
mod level;
mod synthetic;
pub mod unique;

use crate::foundation::error::{Result, UserError};
use crate::foundation::secret::{is_secret_name, masked_header};
use crate::http::url::Endpoint;
use crate::workload::dataset::Sample;

pub use crate::cli::Api;
pub use arena::{CoreRequests, Part, PartBuf, Prepared, RequestBuf, MAX_ARENA_BYTES};
pub use body::{api_of_path, embedding_text, flatten, owned_keys, parse_extra_body};
pub use level::{LevelRequests, RunRequests};

use body::sample_body;

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
    /// Add vLLM's `ignore_eos: true` and `min_tokens` = `max_tokens` (exact answer lengths).
    pub ignore_eos: bool,
    /// `--embedding-batch`: inputs per embeddings request (other APIs send one prompt).
    pub batch: u32,
}

impl<'a> RequestTemplate<'a> {
    /// A template for `model` at `endpoint`: `max_tokens` per answer, temperature 0, usage asked
    /// for (without continuous stats), no extra body or headers, one prompt per request. Callers
    /// change the rest with struct update syntax (`..RequestTemplate::new(…)`).
    pub fn new(
        api: Api,
        endpoint: &'a Endpoint,
        model: &'a str,
        api_key: &'a str,
        max_tokens: u32,
    ) -> Self {
        Self {
            api,
            extra_body: None,
            endpoint,
            api_key,
            model,
            max_tokens,
            temperature: 0.0,
            include_usage: true,
            continuous_usage: false,
            headers: &[],
            ignore_eos: false,
            batch: 1,
        }
    }

    /// A template for tests: key `k`, model `m`, 512 tokens, usage asked, no extras.
    #[cfg(test)]
    pub(crate) fn for_test(endpoint: &'a Endpoint, api: Api, ignore_eos: bool) -> Self {
        Self {
            ignore_eos,
            ..Self::new(api, endpoint, "m", "k", 512)
        }
    }
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

/// Fails (without echoing the key) if the key could break the request's header.
pub fn check_api_key(key: &str) -> Result<()> {
    if key.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(UserError::input(
            "--api-key contains a line break or NUL byte; it cannot be sent in a header",
        ));
    }
    Ok(())
}

/// The error for an arena past its limit.
fn too_large() -> UserError {
    UserError::input(format!(
        "the dataset's requests need more than {MAX_ARENA_BYTES} bytes; use fewer or shorter samples"
    ))
}

/// Every sample as one whole request each, in order (for `selftest`, and tests).
pub fn render_samples(t: &RequestTemplate<'_>, samples: &[Sample]) -> Result<Prepared> {
    check_api_key(t.api_key)?;
    let mut prepared = Prepared::default();
    for s in samples {
        prepared.push(&render(t, s)).ok_or_else(too_large)?;
    }
    Ok(prepared)
}

/// The HTTP/1.1 request for one sample.
pub fn render(t: &RequestTemplate<'_>, sample: &Sample) -> Vec<u8> {
    let body = sample_body(t, sample);
    let mut out = head_before_length(t).into_bytes();
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    out
}

/// The header lines every request to the server carries besides its own: `Authorization:
/// Bearer KEY` (unless a `--header` sets `Authorization`, or no key was given: a local server
/// without auth gets no auth header), then each `--header`, each line ending in CRLF. (Also the
/// cache reset's, `bench::reset`.)
pub fn credential_lines(api_key: &str, headers: &[(String, String)]) -> String {
    credential_lines_for(Api::Chat, api_key, headers)
}

/// [`credential_lines`] as `api` wants them: Anthropic's Messages API takes the key in
/// `x-api-key` and needs an `anthropic-version` (2023-06-01 unless a `--header` gives one).
fn credential_lines_for(api: Api, api_key: &str, headers: &[(String, String)]) -> String {
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut lines = String::new();
    let keyed = !api_key.is_empty();
    if api == Api::Messages {
        if keyed && !given("x-api-key") && !given("authorization") {
            lines.push_str(&format!("x-api-key: {api_key}\r\n"));
        }
        if !given("anthropic-version") {
            lines.push_str("anthropic-version: 2023-06-01\r\n");
        }
    } else if keyed && !given("authorization") {
        lines.push_str(&format!("Authorization: Bearer {api_key}\r\n"));
    }
    for (name, value) in headers {
        lines.push_str(&format!("{name}: {value}\r\n"));
    }
    lines
}

/// The request head up to its last line, `Content-Length` (the same for every request).
fn head_before_length(t: &RequestTemplate<'_>) -> String {
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n",
        t.endpoint.target, t.endpoint.authority
    );
    head.push_str(&credential_lines_for(t.api, t.api_key, t.headers));
    let accept = if t.api.generates() {
        "text/event-stream"
    } else {
        "application/json"
    };
    head.push_str(&format!(
        "Content-Type: application/json\r\nAccept: {accept}\r\nUser-Agent: qpsbench/{}\r\n",
        env!("CARGO_PKG_VERSION"),
    ));
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_spec_body_with_usage_option() {
        let ep = Endpoint::parse("http://[::1]:8000/v1/chat/completions").unwrap();
        let samples = crate::workload::dataset::parse(
            br#"[{"prompt_content":"Be \"brief\"","cut_chat_history":[{"role":"user","content":"Hi\n"}]}]"#,
            "t",
        )
        .unwrap();
        let mut t = RequestTemplate {
            temperature: 0.7,
            ..RequestTemplate::new(Api::Chat, &ep, "m", "sk-test", 512)
        };
        let all = render_samples(&t, &samples).unwrap();
        let req = all.get(0);
        let text = std::str::from_utf8(&req).unwrap();
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
        let e = render_samples(&t, &samples).unwrap_err();
        assert!(!e.message.contains("Evil"));
    }

    #[test]
    fn completions_requests_carry_one_flattened_prompt() {
        assert_eq!(api_of_path("/v1/completions"), Api::Completions);
        assert_eq!(api_of_path("/v1/completions?x=1"), Api::Completions);
        assert_eq!(api_of_path("/v1/chat/completions"), Api::Chat);
        assert_eq!(api_of_path("/generate"), Api::Chat);
        let ep = Endpoint::parse("http://127.0.0.1:8000/v1/completions").unwrap();
        let samples = crate::workload::dataset::parse(
            br#"[{"prompt_content":"Be brief","cut_chat_history":[{"role":"user","content":"Hi"}]}]"#,
            "t",
        )
        .unwrap();
        let t = RequestTemplate::new(Api::Completions, &ep, "m", "k", 8);
        let r = render(&t, &samples[0]);
        let text = std::str::from_utf8(&r).unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["prompt"], "System: Be brief\nUser: Hi\nAssistant:");
        assert!(v.get("messages").is_none());
        assert_eq!(v["stream"], true);
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
            crate::foundation::secret::mask_url("https://h/v1?api-version=1&api-key=s3cr3t"),
            "https://h/v1?api-version=1&api-key=****"
        );
    }

    #[test]
    fn custom_authorization_replaces_bearer() {
        let ep = crate::http::url::Endpoint::parse("http://h/v1").unwrap();
        let samples = crate::workload::dataset::parse(
            br#"[{"prompt_content":"p","cut_chat_history":[]}]"#,
            "t",
        )
        .unwrap();
        let headers = vec![
            ("Authorization".to_string(), "Basic abc".to_string()),
            ("X-Tenant".to_string(), "acme".to_string()),
        ];
        let t = RequestTemplate {
            include_usage: false,
            headers: &headers,
            ..RequestTemplate::new(Api::Chat, &ep, "m", "k", 1)
        };
        let r = render(&t, &samples[0]);
        let text = std::str::from_utf8(&r).unwrap();
        assert!(text.contains("Authorization: Basic abc\r\n") && !text.contains("Bearer"));
        assert!(text.contains("X-Tenant: acme\r\n"));
    }

    #[test]
    fn no_key_sends_no_auth_header() {
        for api in [Api::Chat, Api::Messages] {
            let lines = credential_lines_for(api, "", &[]);
            assert!(
                !lines.contains("Authorization") && !lines.contains("x-api-key"),
                "{lines}"
            );
        }
    }

    #[test]
    fn messages_take_the_key_in_x_api_key_and_a_version_a_header_may_replace() {
        let ep = crate::http::url::Endpoint::parse("http://h/v1/messages").unwrap();
        let samples = crate::workload::dataset::parse(
            br#"[{"prompt_content":"p","cut_chat_history":[]}]"#,
            "t",
        )
        .unwrap();
        let mut t = RequestTemplate::for_test(&ep, Api::Messages, false);
        t.api_key = "sk-ant";
        let head = |t: &RequestTemplate<'_>| {
            let r = render(t, &samples[0]);
            let text = String::from_utf8(r).unwrap();
            text.split_once("\r\n\r\n").unwrap().0.to_string()
        };
        let h = head(&t);
        assert!(
            h.contains("x-api-key: sk-ant\r\n") && !h.contains("Bearer"),
            "{h}"
        );
        assert!(h.contains("anthropic-version: 2023-06-01\r\n"), "{h}");
        let headers = vec![("Anthropic-Version".to_string(), "2024-01-01".to_string())];
        t.headers = &headers;
        let h = head(&t);
        assert!(
            !h.contains("2023-06-01") && h.contains("Anthropic-Version: 2024-01-01"),
            "{h}"
        );
        t.api = Api::Embeddings;
        assert!(head(&t).contains("Accept: application/json"));
    }
}
