//! The spec's dataset format (`--dataset-name seed`): a JSON array of `{"prompt_content", "cut_chat_history"}` samples.
//!
//! Each sample becomes a message list: `prompt_content` as the system message, then the `cut_chat_history`
//! turns in order, skipping turns whose role is `system`. Other fields are ignored. Every error
//! names the file, the sample index (0-based, as in the JSON array) and what was expected.

use serde_json::Value;

use super::{json_array, kind, Message, Sample};
use crate::foundation::error::{Result, UserError};

/// Parses dataset bytes; `name` is used in error messages.
pub fn parse(bytes: &[u8], name: &str) -> Result<Vec<Sample>> {
    let err = |msg: String| UserError::input(format!("dataset '{name}': {msg}"));
    let items = json_array(bytes, "samples").map_err(err)?;
    if items.is_empty() {
        return Err(err(
            "the array is empty; it needs at least one sample".into()
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| sample(item).map_err(|m| err(format!("sample {i}: {m}"))))
        .collect()
}

fn sample(item: Value) -> std::result::Result<Sample, String> {
    let Value::Object(mut obj) = item else {
        return Err(format!("expected an object, found {}", kind(&item)));
    };
    let prompt = match obj.remove("prompt_content") {
        None => return Err("missing \"prompt_content\" (a string: the system prompt)".into()),
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(format!(
                "\"prompt_content\" must be a string, found {}",
                kind(&v)
            ))
        }
    };
    let turns = match obj.remove("cut_chat_history") {
        None => {
            return Err(
                "missing \"cut_chat_history\" (an array of {\"role\", \"content\"} turns)".into(),
            )
        }
        Some(Value::Array(t)) => t,
        Some(v) => {
            return Err(format!(
                "\"cut_chat_history\" must be an array of turns, found {}",
                kind(&v)
            ))
        }
    };
    let mut messages = Vec::with_capacity(turns.len() + 1);
    messages.push(Message {
        role: "system",
        content: prompt,
    });
    for (t, turn) in turns.into_iter().enumerate() {
        let Value::Object(mut turn) = turn else {
            return Err(format!(
                "turn {t} of \"cut_chat_history\": expected an object with \"role\" and \"content\", found {}",
                kind(&turn)
            ));
        };
        let role = match turn.remove("role") {
            Some(Value::String(r)) => match r.as_str() {
                "user" => "user",
                "assistant" => "assistant",
                "system" => "system",
                other => {
                    return Err(format!(
                        "turn {t}: unknown role \"{other}\"; expected \"user\", \"assistant\" or \"system\""
                    ))
                }
            },
            None => return Err(format!("turn {t}: missing \"role\"")),
            Some(v) => return Err(format!("turn {t}: \"role\" must be a string, found {}", kind(&v))),
        };
        let content = match turn.remove("content") {
            Some(Value::String(c)) => c,
            None => return Err(format!("turn {t}: missing \"content\"")),
            Some(v) => {
                return Err(format!(
                    "turn {t}: \"content\" must be a string, found {}",
                    kind(&v)
                ))
            }
        };
        // As the spec reads it: system turns inside the history are skipped; only prompt_content is the
        // system message.
        if role != "system" {
            messages.push(Message { role, content });
        }
    }
    Ok(Sample {
        messages,
        prompt: None,
        max_tokens: None,
    })
}

/// The spec's example conversations, used by `qpsbench demo`.
pub const DEMO_DATASET: &str = include_str!("../../../data/demo_conversations.json");

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> String {
        parse(s.as_bytes(), "d.json").unwrap_err().message
    }

    #[test]
    fn spec_format_conversion() {
        let s = parse(
            br#"[{"prompt_content":"P","turnXp":3,"cut_chat_history":[
                {"role":"user","content":"a"},{"role":"system","content":"skip"},
                {"role":"assistant","content":"b","animation":"x"}]}]"#,
            "d.json",
        )
        .unwrap();
        let roles: Vec<_> = s[0]
            .messages
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            roles,
            vec![("system", "P"), ("user", "a"), ("assistant", "b")]
        );
    }

    #[test]
    fn demo_dataset_is_valid() {
        assert!(parse(DEMO_DATASET.as_bytes(), "demo").unwrap().len() >= 3);
    }

    #[test]
    fn every_error_names_what_and_where() {
        assert!(err("[1,").contains("invalid JSON at line 1 column 3"));
        assert!(err("{}").contains("expected a JSON array of samples, found an object"));
        assert!(err("[]").contains("empty"));
        assert!(
            err(r#"[{"prompt_content":"p","cut_chat_history":[]}, {"cut_chat_history":[]}]"#)
                .contains("sample 1: missing \"prompt_content\"")
        );
        assert!(
            err(r#"[{"prompt_content":"p"}]"#).contains("sample 0: missing \"cut_chat_history\"")
        );
        assert!(err(r#"[{"prompt_content":1,"cut_chat_history":[]}]"#)
            .contains("\"prompt_content\" must be a string, found a number"));
        assert!(err(r#"[{"prompt_content":"p","cut_chat_history":{}}]"#)
            .contains("must be an array of turns"));
        assert!(err(
            r#"[{"prompt_content":"p","cut_chat_history":[{"role":"bot","content":"x"}]}]"#
        )
        .contains("sample 0: turn 0: unknown role \"bot\""));
        assert!(err(
            r#"[{"prompt_content":"p","cut_chat_history":[{"role":"user","content":null}]}]"#
        )
        .contains("turn 0: \"content\" must be a string, found null"));
        assert!(err(r#"[{"prompt_content":"p","cut_chat_history":["hi"]}]"#).contains("turn 0 of"));
        assert!(err("[3]").contains("sample 0: expected an object, found a number"));
        assert!(err("[1,").starts_with("dataset 'd.json'"));
    }
}
