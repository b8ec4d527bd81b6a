//! ShareGPT dumps: a JSON array of `{"conversations": [{"from": "human"|"gpt"|"system",
//! "value": …}]}`. The turns up to and including the last human turn become the messages (the
//! answer to that turn is what the endpoint generates). Conversations with no human turn, or with
//! a role other than those three, are skipped and counted (real dumps contain both); only a file
//! with no usable conversation is an error.

use serde_json::Value;

use super::{json_array, kind, Message, Sample};
use crate::foundation::error::{Result, UserError};

/// The usable samples and how many conversations were skipped.
pub fn parse(bytes: &[u8], name: &str) -> Result<(Vec<Sample>, u64)> {
    let err = |msg: String| UserError::input(format!("dataset '{name}' (sharegpt): {msg}"));
    let items = json_array(bytes, "conversations").map_err(err)?;
    let total = items.len();
    let mut samples = Vec::with_capacity(total);
    for (i, item) in items.into_iter().enumerate() {
        let Some(turns) = item.get("conversations") else {
            return Err(err(format!("entry {i}: missing \"conversations\"")));
        };
        let Value::Array(turns) = turns else {
            return Err(err(format!(
                "entry {i}: \"conversations\" must be an array, found {}",
                kind(turns)
            )));
        };
        if let Some(s) = conversation(turns) {
            samples.push(s);
        }
    }
    if samples.is_empty() {
        return Err(err(format!(
            "none of its {total} conversations is usable (each needs a human turn, and only the roles human, gpt and system)"
        )));
    }
    let skipped = (total - samples.len()) as u64;
    Ok((samples, skipped))
}

/// The messages up to the last human turn; `None` when the conversation is not usable.
fn conversation(turns: &[Value]) -> Option<Sample> {
    let mut messages = Vec::with_capacity(turns.len());
    for t in turns {
        let role = match t.get("from")?.as_str()? {
            "human" | "user" => "user",
            "gpt" | "assistant" => "assistant",
            "system" => "system",
            _ => return None,
        };
        let content = t.get("value")?.as_str()?.to_string();
        messages.push(Message { role, content });
    }
    let last_human = messages.iter().rposition(|m| m.role == "user")?;
    messages.truncate(last_human + 1);
    Some(Sample {
        messages,
        prompt: None,
        max_tokens: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_up_to_the_last_human_one_and_unusable_ones_are_skipped() {
        let (s, skipped) = parse(
            br#"[
              {"conversations":[{"from":"system","value":"S"},{"from":"human","value":"q1"},
                {"from":"gpt","value":"a1"},{"from":"human","value":"q2"},{"from":"gpt","value":"a2"}]},
              {"conversations":[{"from":"gpt","value":"only an answer"}]},
              {"conversations":[{"from":"bing","value":"?"},{"from":"human","value":"q"}]}
            ]"#,
            "s.json",
        )
        .unwrap();
        assert_eq!(skipped, 2);
        let roles: Vec<_> = s[0]
            .messages
            .iter()
            .map(|m| (m.role, m.content.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                ("system", "S"),
                ("user", "q1"),
                ("assistant", "a1"),
                ("user", "q2")
            ]
        );
        let e = parse(
            br#"[{"conversations":[{"from":"gpt","value":"x"}]}]"#,
            "s.json",
        )
        .unwrap_err();
        assert!(
            e.message.contains("none of its 1 conversations is usable"),
            "{e:?}"
        );
        let e = parse(br#"[{"id":1}]"#, "s.json").unwrap_err();
        assert!(
            e.message
                .contains("dataset 's.json' (sharegpt): entry 0: missing"),
            "{e:?}"
        );
    }
}
