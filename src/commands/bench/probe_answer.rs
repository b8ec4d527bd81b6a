//! What one probe request's answer says about the endpoint, and what to tell the user when it
//! does not answer: a pure classification of the error categories (`outcome::ErrorKind`) into
//! "answers", "refuses these fields", "busy" and "broken", and the hint that fits each broken
//! case. Used by the probe stage, before any level runs.

use crate::cli::Api;
use crate::recording::outcome::ErrorKind;

/// What a failed probe request means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// A 4xx (or an error event): the request was refused. Optional fields may be why.
    Refused,
    /// 429 or 5xx: the server is busy or warming up; worth waiting for.
    Busy,
    /// Nothing an API answers with: no connection, no TLS, no HTTP, or an answer in another
    /// API's form. Waiting will not help.
    Broken,
}

/// The class of a failed request's error category.
pub fn classify(kind: &ErrorKind) -> Class {
    match kind {
        ErrorKind::Http(408 | 429) => Class::Busy,
        ErrorKind::Http(500..=599) => Class::Busy,
        ErrorKind::Http(400..=499) | ErrorKind::Stream => Class::Refused,
        // Any other status (a 1xx, 3xx redirect, or an odd code) is not an API's answer.
        _ => Class::Broken,
    }
}

/// What the check knows of the run, for the hint.
pub struct Context<'a> {
    /// The endpoint as shown (secrets masked).
    pub url: &'a str,
    pub api: Api,
    /// Whether `--api` was given (else the API came from the path).
    pub api_given: bool,
    /// Whether a key was sent.
    pub key_sent: bool,
}

/// The path an API's endpoint usually ends in.
pub fn usual_path(api: Api) -> &'static str {
    match api {
        Api::Chat => "/v1/chat/completions",
        Api::Completions => "/v1/completions",
        Api::Responses => "/v1/responses",
        Api::Messages => "/v1/messages",
        Api::Embeddings => "/v1/embeddings",
    }
}

/// A hint the user can act on, for a broken or refusing endpoint (`None`: nothing to add).
pub fn hint(kind: &ErrorKind, sample: Option<&str>, cx: &Context<'_>) -> Option<String> {
    let path_api = crate::workload::prepared::api_of_path(path_of(cx.url));
    let other_api = (cx.api_given && path_api != cx.api).then_some(path_api);
    let https = cx.url.len() >= 8 && cx.url[..8].eq_ignore_ascii_case("https://");
    let sample = sample.unwrap_or("").to_ascii_lowercase();
    Some(match kind {
        ErrorKind::ConnectionRefused => {
            "nothing listens at that address: is the server running, and on this port?".into()
        }
        ErrorKind::Tls(what) if what.contains("certificate") || what.contains("issuer") || what.contains("name") => {
            "the server's certificate is not trusted here: pass --ca-cert FILE (its CA), or --insecure to skip the check".into()
        }
        ErrorKind::Tls(_) if https => {
            "the TLS handshake failed: if the server speaks plain HTTP, use http://".into()
        }
        ErrorKind::Malformed(w) if not_http(w) => {
            "the server does not answer HTTP/1.1 here: check the port; if it serves HTTPS, use https://".into()
        }
        ErrorKind::ConnectionClosed | ErrorKind::ConnectionReset if !https => {
            "the server closed the connection without an answer: check the port; if it serves HTTPS, use https://".into()
        }
        ErrorKind::Malformed(_) | ErrorKind::Truncated | ErrorKind::Stream => match other_api {
            Some(p) => format!(
                "the path is the {p} API's, and --api is {}: pass --api {p}, or use the server's {}",
                cx.api,
                usual_path(cx.api)
            ),
            None => format!(
                "the answer is not in the {} API's form: check --api and the path (it usually ends in {})",
                cx.api,
                usual_path(cx.api)
            ),
        },
        ErrorKind::Http(401) if !cx.key_sent => {
            "401: the server wants a key: pass --api-key (or set QPSBENCH_API_KEY)".into()
        }
        ErrorKind::Http(401 | 403) => "401/403: check --api-key (or QPSBENCH_API_KEY / OPENAI_API_KEY)".into(),
        ErrorKind::Http(404 | 405) => match other_api {
            Some(p) => format!(
                "this path serves the {p} API, and --api is {}: pass --api {p}, or use the server's {}",
                cx.api,
                usual_path(cx.api)
            ),
            None => format!(
                "the path usually ends in {} (for the {} API; --api picks another)",
                usual_path(cx.api),
                cx.api
            ),
        },
        ErrorKind::Http(400 | 415 | 422) => match (other_api, api_named_in(&sample)) {
            (Some(p), _) => format!(
                "this path serves the {p} API, and --api is {}: pass --api {p}, or use the server's {}",
                cx.api,
                usual_path(cx.api)
            ),
            (None, Some(p)) if p != cx.api => format!(
                "this server seems to answer the {p} API here: pass --api {p}, or use its {}",
                usual_path(cx.api)
            ),
            _ if sample.contains("model") => {
                "the server refused the request; its message names the model: check --model".into()
            }
            _ => format!(
                "the server refused a plain {} request: its message above says why (check --model, --api and --extra-body)",
                cx.api
            ),
        },
        ErrorKind::TimeoutConnect | ErrorKind::ConnectionTimedOut => {
            "no answer to the connection: check the host and port, and any firewall".into()
        }
        ErrorKind::TimeoutTotal | ErrorKind::TimeoutFirstToken | ErrorKind::TimeoutIdle => {
            "the server took longer than the time limit to answer one request: raise --timeout, or check that it is not stuck".into()
        }
        _ => return None,
    })
}

/// Whether a malformed answer was not HTTP at all (rather than HTTP in another API's form).
fn not_http(why: &str) -> bool {
    why.contains("HTTP") || why.contains("head")
}

/// The API a server's error message names by its fields, when it names one clearly.
fn api_named_in(message: &str) -> Option<Api> {
    if message.contains("max_tokens")
        && message.contains("messages")
        && message.contains("anthropic")
    {
        return Some(Api::Messages);
    }
    None
}

/// The path of a URL (`/` when it has none).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split('?').next().unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(url: &str, api: Api, given: bool) -> Context<'_> {
        Context {
            url,
            api,
            api_given: given,
            key_sent: false,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&ErrorKind::Http(503)), Class::Busy);
        assert_eq!(classify(&ErrorKind::Http(429)), Class::Busy);
        assert_eq!(classify(&ErrorKind::Http(404)), Class::Refused);
        assert_eq!(classify(&ErrorKind::Http(302)), Class::Broken);
        assert_eq!(classify(&ErrorKind::ConnectionRefused), Class::Broken);
        assert_eq!(classify(&ErrorKind::Tls("x".into())), Class::Broken);
    }

    #[test]
    fn hints_name_what_to_change() {
        let h = |k: ErrorKind, c: &Context| hint(&k, None, c).unwrap();
        let chat = cx("http://127.0.0.1:1/", Api::Chat, false);
        assert!(h(ErrorKind::Http(404), &chat).contains("/v1/chat/completions"));
        assert!(h(ErrorKind::Http(401), &chat).contains("--api-key"));
        assert!(h(ErrorKind::ConnectionRefused, &chat).contains("is the server running"));
        let tls = cx("https://127.0.0.1:1/v1/chat/completions", Api::Chat, false);
        assert!(h(ErrorKind::Tls("corrupt message".into()), &tls).contains("use http://"));
        let garbage = ErrorKind::Malformed("invalid response head (not HTTP/1.x)".into());
        assert!(h(garbage, &chat).contains("does not answer HTTP/1.1"));
        let json = ErrorKind::Malformed("not an event stream (no data: events)".into());
        assert!(h(json, &chat).contains("not in the chat API's form"));
        let wrong = cx("http://h/v1/embeddings", Api::Chat, true);
        let said = h(ErrorKind::Http(400), &wrong);
        assert!(
            said.contains("embeddings API") && said.contains("--api embeddings"),
            "{said}"
        );
        assert_eq!(path_of("http://h:1/v1/x?key=1"), "/v1/x");
        assert_eq!(path_of("http://h:1"), "/");
    }
}
