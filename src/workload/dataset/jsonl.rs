//! JSONL datasets: one OpenAI-style object per line, with `messages` (a chat) or `prompt` (a
//! completions prompt, sent as one user message to the chat API), and an optional `max_tokens`
//! that overrides `--max-tokens` for that line. Blank lines are ignored; every error names the
//! line (from 1) and the field.

use serde_json::Value;

use super::{kind, strip_position, Message, Sample};
use crate::foundation::error::{Result, UserError};

pub fn parse(bytes: &[u8], name: &str) -> Result<Vec<Sample>> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| UserError::input(format!("dataset '{name}' (jsonl): not UTF-8 ({e})")))?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| {
            UserError::input(format!("dataset '{name}' (jsonl): line {}: {msg}", i + 1))
        };
        let v: Value = serde_json::from_str(line).map_err(|e| {
            at(format!(
                "invalid JSON at column {}: {}",
                e.column(),
                strip_position(&e.to_string())
            ))
        })?;
        samples.push(sample(&v).map_err(at)?);
    }
    if samples.is_empty() {
        return Err(UserError::input(format!(
            "dataset '{name}' (jsonl): no line holds a sample"
        )));
    }
    Ok(samples)
}

fn sample(v: &Value) -> std::result::Result<Sample, String> {
    let Value::Object(obj) = v else {
        return Err(format!("expected an object, found {}", kind(v)));
    };
    let max_tokens = match obj.get("max_tokens") {
        None => None,
        Some(m) => Some(
            m.as_u64()
                .filter(|&n| (1..=u64::from(u32::MAX)).contains(&n))
                .ok_or_else(|| format!("\"max_tokens\" must be a whole number from 1, found {m}"))?
                as u32,
        ),
    };
    let (messages, prompt) = match (obj.get("messages"), obj.get("prompt")) {
        (Some(m), _) => (messages(m)?, None),
        (None, Some(Value::String(p))) => (
            vec![Message {
                role: "user",
                content: p.clone(),
            }],
            Some(p.clone()),
        ),
        (None, Some(p)) => return Err(format!("\"prompt\" must be a string, found {}", kind(p))),
        (None, None) => {
            return Err("expected \"messages\" (a chat) or \"prompt\" (a string)".into())
        }
    };
    Ok(Sample {
        messages,
        prompt,
        max_tokens,
    })
}

fn messages(v: &Value) -> std::result::Result<Vec<Message>, String> {
    let Value::Array(items) = v else {
        return Err(format!("\"messages\" must be an array, found {}", kind(v)));
    };
    let mut out = Vec::with_capacity(items.len());
    for (j, m) in items.iter().enumerate() {
        let role = match m.get("role").and_then(Value::as_str) {
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some("system") => "system",
            Some(other) => {
                return Err(format!(
                    "messages[{j}].role \"{other}\": expected \"user\", \"assistant\" or \"system\""
                ))
            }
            None => return Err(format!("messages[{j}]: missing \"role\" (a string)")),
        };
        let Some(content) = m.get("content").and_then(Value::as_str) else {
            return Err(format!("messages[{j}]: missing \"content\" (a string)"));
        };
        out.push(Message {
            role,
            content: content.to_string(),
        });
    }
    if out.is_empty() {
        return Err("\"messages\" is empty".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chats_prompts_and_their_lengths() {
        let s = parse(
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":9}\n\n{\"prompt\":\"Once upon\"}\n",
            "d.jsonl",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].messages[0].role, s[0].max_tokens), ("user", Some(9)));
        assert_eq!(s[1].prompt.as_deref(), Some("Once upon"));
        assert_eq!(s[1].messages[0].content, "Once upon");
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let e = |t: &str| parse(t.as_bytes(), "d.jsonl").unwrap_err().message;
        assert!(e("{\"prompt\":\"a\"}\n{oops\n").contains("line 2: invalid JSON"));
        assert!(e("{\"prompt\":1}").contains("line 1: \"prompt\" must be a string"));
        assert!(e("{\"x\":1}").contains("line 1: expected \"messages\""));
        assert!(e("{\"prompt\":\"a\",\"max_tokens\":0}").contains("\"max_tokens\" must be"));
        assert!(e("{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}")
            .contains("messages[0].role \"bot\""));
        assert!(e("\n\n").contains("no line holds a sample"));
    }
}
