//! The JSON pieces of requests: a body cut where the prompt's text (or a marker before it)
//! goes, so that the text can be sent as views of the shared text and a marker slipped in
//! without rendering any body twice. Synthetic prompts' bodies are the pieces around the whole
//! prompt, one pair per answer length; a dataset row's body is cut where its first user
//! message's text starts.

use super::body::{body, embedding_text, flatten, Prompt};
use super::{Api, RequestTemplate};
use crate::workload::dataset::{Message, Sample};

/// Stands for the prompt while the body is serialized; the JSON is cut where it lands. Control
/// characters are escaped in JSON, so no user text serializes to this.
const PLACEHOLDER: &str = "\u{1}qpsbench-prompt\u{1}";

/// `json` cut where the placeholder was, without it.
fn cut(json: Vec<u8>) -> (Vec<u8>, Vec<u8>) {
    let mark = serde_json::to_string(PLACEHOLDER).expect("a string serializes");
    // Inside the quotes: the prompt's text replaces the placeholder's.
    let inner = &mark.as_bytes()[1..mark.len() - 1];
    let at = json
        .windows(inner.len())
        .position(|w| w == inner)
        .expect("the placeholder is in the body");
    (json[..at].to_vec(), json[at + inner.len()..].to_vec())
}

/// The body's JSON before and after a synthetic prompt's text, for answers of `max_tokens`
/// (for embeddings: before and after a batch's texts, which `level` joins with `","`).
pub fn body_around_prompt(t: &RequestTemplate<'_>, max_tokens: u32) -> (Vec<u8>, Vec<u8>) {
    let json = match t.api {
        Api::Chat | Api::Responses | Api::Messages => {
            let user = [Message {
                role: "user",
                content: PLACEHOLDER.to_string(),
            }];
            body(t, Prompt::Messages(&user), Some(max_tokens))
        }
        Api::Completions => body(t, Prompt::Text(PLACEHOLDER.to_string()), Some(max_tokens)),
        Api::Embeddings => body(t, Prompt::Texts(&[PLACEHOLDER.to_string()]), None),
    };
    cut(json)
}

/// A dataset row's body, cut where its first user message's text starts (the first message's,
/// if none is the user's; a prompt-only row's prompt, for the completions API). For embeddings,
/// the row's input text itself, JSON-escaped, with nothing after it: `level` sets it in the
/// batch's body.
pub fn body_around_row(t: &RequestTemplate<'_>, sample: &Sample) -> (Vec<u8>, Vec<u8>) {
    if t.api == Api::Embeddings {
        let json = serde_json::to_string(&embedding_text(sample)).expect("a string serializes");
        return (json.as_bytes()[1..json.len() - 1].to_vec(), Vec::new());
    }
    let mut messages = sample.messages.clone();
    let first = messages.iter().position(|m| m.role == "user").unwrap_or(0);
    if let Some(m) = messages.get_mut(first) {
        m.content.insert_str(0, PLACEHOLDER);
    }
    // No message to mark: the marker goes first in an empty user message.
    let lone = [Message {
        role: "user",
        content: PLACEHOLDER.to_string(),
    }];
    let json = match t.api {
        Api::Completions => {
            let prompt = match &sample.prompt {
                Some(p) => format!("{PLACEHOLDER}{p}"),
                None if messages.is_empty() => PLACEHOLDER.to_string(),
                None => flatten(&messages),
            };
            body(t, Prompt::Text(prompt), sample.max_tokens)
        }
        _ if messages.is_empty() => body(t, Prompt::Messages(&lone), sample.max_tokens),
        _ => body(t, Prompt::Messages(&messages), sample.max_tokens),
    };
    cut(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::Endpoint;

    #[test]
    fn a_rows_body_is_cut_where_its_first_user_message_starts() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
        let samples = crate::workload::dataset::parse(
            br#"[{"prompt_content":"Be \"brief\"","cut_chat_history":[{"role":"user","content":"Hi\n"}]}]"#,
            "t",
        )
        .unwrap();
        for api in [Api::Chat, Api::Completions, Api::Responses, Api::Messages] {
            let t = RequestTemplate::for_test(&ep, api, false);
            let (a, b) = body_around_row(&t, &samples[0]);
            let whole = [a.clone(), b.clone()].concat();
            // Uncut, it is the row's body as rendered whole.
            let rendered = super::super::render(&t, &samples[0]);
            assert!(rendered.ends_with(&whole));
            // A marker at the cut lands at the start of the user's text.
            let marked = [a, br#" w\n"#.to_vec(), b].concat();
            let v: serde_json::Value = serde_json::from_slice(&marked).unwrap();
            match api {
                Api::Chat => {
                    assert_eq!(v["messages"][0]["content"], "Be \"brief\"");
                    assert_eq!(v["messages"][1]["content"], " w\nHi\n");
                }
                Api::Completions => {
                    assert_eq!(
                        v["prompt"],
                        "System: Be \"brief\"\nUser:  w\nHi\n\nAssistant:"
                    );
                }
                Api::Responses => assert_eq!(v["input"][1]["content"], " w\nHi\n"),
                _ => {
                    assert_eq!(v["system"], "Be \"brief\"");
                    assert_eq!(v["messages"][0]["content"], " w\nHi\n");
                }
            }
            let (x, y) = body_around_prompt(&t, 7);
            let v: serde_json::Value =
                serde_json::from_slice(&[x, b" text".to_vec(), y].concat()).unwrap();
            let length = if api == Api::Responses {
                "max_output_tokens"
            } else {
                "max_tokens"
            };
            assert_eq!(v[length], 7);
        }
    }
}
