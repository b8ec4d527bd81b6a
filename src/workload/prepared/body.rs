//! Request bodies, one shape per API: what a sample (or a synthetic prompt) becomes as JSON,
//! which keys qpsbench owns in it, and which API an endpoint's path implies. Rendered before the
//! run (`synthetic` cuts these bodies where the prompt's text goes); nothing here runs per
//! request.
//!
//! | API | prompt | answer length | streaming |
//! |---|---|---|---|
//! | chat | `messages` | `max_tokens` | `stream`, `stream_options` |
//! | completions | `prompt` (a chat flattened) | `max_tokens` | `stream`, `stream_options` |
//! | responses | `input` (the messages) | `max_output_tokens` | `stream` |
//! | messages | `system` + `messages` | `max_tokens` (always: the API requires it) | `stream` |
//! | embeddings | `input` (texts) | — | not streamed |

use serde::Serialize;

use super::{Api, RequestTemplate};
use crate::foundation::error::{Result, UserError};
use crate::workload::dataset::{Message, Sample};

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    continuous_usage_stats: bool,
}

/// What an API's body carries as its prompt.
#[derive(Serialize)]
#[serde(untagged)]
enum Input<'a> {
    Messages(&'a [Message]),
    Texts(&'a [String]),
}

/// Every API's body, in the spec's key order; each API fills the keys it uses.
#[derive(Serialize, Default)]
struct Body<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<Input<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_eos: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding_format: Option<&'static str>,
}

/// The keys of `api`'s body that qpsbench sets itself: `--extra-body` may not replace them.
pub fn owned_keys(api: Api) -> &'static [&'static str] {
    match api {
        Api::Chat | Api::Completions => {
            &["model", "messages", "prompt", "stream", "stream_options"]
        }
        Api::Responses => &["model", "input", "stream", "stream_options"],
        Api::Messages => &["model", "system", "messages", "stream"],
        Api::Embeddings => &["model", "input", "stream"],
    }
}

/// The key that sets the answer's length (`--extra-body` may set it: it wins).
fn length_key(api: Api) -> &'static str {
    match api {
        Api::Responses => "max_output_tokens",
        _ => "max_tokens",
    }
}

/// Parses `--extra-body`: a JSON object without the keys qpsbench owns for `api`.
pub fn parse_extra_body(raw: &str, api: Api) -> Result<serde_json::Map<String, serde_json::Value>> {
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| UserError::input(format!("--extra-body: not valid JSON ({e})")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(UserError::input(
            "--extra-body: expected a JSON object, e.g. '{\"top_p\": 0.9}'",
        ));
    };
    let owned = owned_keys(api);
    if let Some(k) = map.keys().find(|k| owned.contains(&k.as_str())) {
        return Err(UserError::input(format!(
            "--extra-body: \"{k}\" is set by qpsbench itself (with --api {api}, it owns {})",
            owned.join(", ")
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

/// A sample as one embedding input: its prompt, else its messages' texts, a line each.
pub fn embedding_text(sample: &Sample) -> String {
    match &sample.prompt {
        Some(p) => p.clone(),
        None => {
            let texts: Vec<&str> = sample.messages.iter().map(|m| m.content.as_str()).collect();
            texts.join("\n")
        }
    }
}

/// The API an endpoint's path implies, by its last segment: `…/completions` but not
/// `…/chat/completions` is completions; `…/responses`, `…/messages`, `…/embeddings` name theirs;
/// anything else is chat.
pub fn api_of_path(path: &str) -> Api {
    let path = path.split('?').next().unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.ends_with("/chat/completions") {
        Api::Chat
    } else if path.ends_with("/completions") {
        Api::Completions
    } else if path.ends_with("/responses") {
        Api::Responses
    } else if path.ends_with("/messages") {
        Api::Messages
    } else if path.ends_with("/embeddings") {
        Api::Embeddings
    } else {
        Api::Chat
    }
}

/// What a body is built from: messages (chat, responses, messages), one prompt (completions) or
/// texts (embeddings).
pub enum Prompt<'a> {
    Messages(&'a [Message]),
    Text(String),
    Texts(&'a [String]),
}

/// The JSON body for `api`, with the row's own `max_tokens` (else `--max-tokens`), and
/// `--extra-body` merged last.
pub fn body(t: &RequestTemplate<'_>, prompt: Prompt<'_>, own_max_tokens: Option<u32>) -> Vec<u8> {
    let max_tokens = own_max_tokens.unwrap_or(t.max_tokens);
    // min_tokens follows the length the server will see, --extra-body's if it sets one.
    let effective_max = t
        .extra_body
        .and_then(|e| e.get(length_key(t.api)))
        .and_then(serde_json::Value::as_u64)
        .map_or(max_tokens, |m| m.min(u64::from(u32::MAX)) as u32);
    let mut b = Body {
        model: t.model,
        ..Body::default()
    };
    if t.api.generates() {
        b.min_tokens = t.ignore_eos.then_some(effective_max);
        b.ignore_eos = t.ignore_eos.then_some(true);
        b.temperature = Some(t.temperature);
        b.stream = Some(true);
    }
    if matches!(t.api, Api::Chat | Api::Completions) {
        b.stream_options = t.include_usage.then_some(StreamOptions {
            include_usage: true,
            continuous_usage_stats: t.continuous_usage,
        });
    }
    // Anthropic takes the system prompt apart from the turns.
    let turns: Vec<Message>;
    match (t.api, prompt) {
        (Api::Chat, Prompt::Messages(m)) => b.messages = Some(m),
        (Api::Responses, Prompt::Messages(m)) => b.input = Some(Input::Messages(m)),
        (Api::Messages, Prompt::Messages(m)) => {
            let system: Vec<&str> = m
                .iter()
                .filter(|m| m.role == "system")
                .map(|m| m.content.as_str())
                .collect();
            b.system = (!system.is_empty()).then(|| system.join("\n"));
            turns = m.iter().filter(|m| m.role != "system").cloned().collect();
            b.messages = Some(&turns);
        }
        (Api::Completions, Prompt::Text(p)) => b.prompt = Some(p),
        (Api::Embeddings, Prompt::Texts(texts)) => {
            b.input = Some(Input::Texts(texts));
            b.encoding_format = Some("float");
        }
        (api, _) => unreachable!("{api:?} is rendered from its own kind of prompt"),
    }
    match t.api {
        Api::Responses => b.max_output_tokens = Some(max_tokens),
        Api::Chat | Api::Completions | Api::Messages => b.max_tokens = Some(max_tokens),
        Api::Embeddings => {}
    }
    match t.extra_body {
        None => serde_json::to_vec(&b),
        Some(extra) => {
            // Merged after the defaults, so the user's keys win.
            let mut v = serde_json::to_value(&b).expect("a body of strings and numbers");
            if let Some(obj) = v.as_object_mut() {
                obj.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            serde_json::to_vec(&v)
        }
    }
    .expect("serializing strings and numbers cannot fail")
}

/// The body of one whole sample (`render`): the sample's own kind of prompt for `t.api`.
pub fn sample_body(t: &RequestTemplate<'_>, sample: &Sample) -> Vec<u8> {
    match t.api {
        Api::Chat | Api::Responses | Api::Messages => {
            body(t, Prompt::Messages(&sample.messages), sample.max_tokens)
        }
        // A prompt-only sample is sent as is; a chat is flattened.
        Api::Completions => {
            let p = sample
                .prompt
                .clone()
                .unwrap_or_else(|| flatten(&sample.messages));
            body(t, Prompt::Text(p), sample.max_tokens)
        }
        Api::Embeddings => body(t, Prompt::Texts(&[embedding_text(sample)]), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::Endpoint;

    fn json(t: &RequestTemplate<'_>, sample: &Sample) -> serde_json::Value {
        serde_json::from_slice(&sample_body(t, sample)).unwrap()
    }

    fn sample() -> Sample {
        crate::workload::dataset::parse(
            br#"[{"prompt_content":"Be brief","cut_chat_history":[{"role":"user","content":"Hi"}]}]"#,
            "t",
        )
        .unwrap()
        .remove(0)
    }

    #[test]
    fn the_api_follows_the_paths_last_segment() {
        for (path, api) in [
            ("/v1/chat/completions", Api::Chat),
            ("/v1/completions?x=1", Api::Completions),
            ("/v1/responses", Api::Responses),
            ("/v1/messages/", Api::Messages),
            ("/v1/embeddings", Api::Embeddings),
            ("/generate", Api::Chat),
        ] {
            assert_eq!(api_of_path(path), api, "{path}");
        }
    }

    #[test]
    fn each_api_has_its_own_body() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/x").unwrap();
        let s = sample();
        let mut t = RequestTemplate::for_test(&ep, Api::Responses, false);
        let v = json(&t, &s);
        assert_eq!(v["input"][1]["content"], "Hi");
        assert_eq!(
            (v["max_output_tokens"].as_u64(), v["stream"].as_bool()),
            (Some(512), Some(true))
        );
        assert!(v.get("stream_options").is_none() && v.get("max_tokens").is_none());
        t.api = Api::Messages;
        let v = json(&t, &s);
        assert_eq!(v["system"], "Be brief");
        assert_eq!(v["messages"].as_array().unwrap().len(), 1);
        assert_eq!(v["messages"][0]["role"], "user");
        assert_eq!(v["max_tokens"], 512);
        assert!(v.get("stream_options").is_none());
        t.api = Api::Embeddings;
        let v = json(&t, &s);
        assert_eq!(v["input"], serde_json::json!(["Be brief\nHi"]));
        assert_eq!(v["encoding_format"], "float");
        for absent in ["stream", "max_tokens", "temperature", "stream_options"] {
            assert!(v.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn extra_body_may_not_replace_what_the_api_owns() {
        assert!(parse_extra_body(r#"{"max_output_tokens":4}"#, Api::Responses).is_ok());
        let e = parse_extra_body(r#"{"input":"x"}"#, Api::Responses).unwrap_err();
        assert!(e.message.contains("--api responses"), "{}", e.message);
        assert!(parse_extra_body(r#"{"system":"x"}"#, Api::Messages).is_err());
        assert!(parse_extra_body(r#"{"system":"x"}"#, Api::Chat).is_ok());
        assert!(parse_extra_body(r#"{"dimensions":64}"#, Api::Embeddings).is_ok());
    }

    #[test]
    fn ignore_eos_follows_the_length_the_server_sees() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/responses").unwrap();
        let extra = parse_extra_body(r#"{"max_output_tokens":7}"#, Api::Responses).unwrap();
        let mut t = RequestTemplate::for_test(&ep, Api::Responses, true);
        t.extra_body = Some(&extra);
        let v = json(&t, &sample());
        assert_eq!(
            (v["min_tokens"].as_u64(), v["max_output_tokens"].as_u64()),
            (Some(7), Some(7))
        );
    }
}
