//! What a request to the built-in endpoint asks for: which API (chat, completions, Responses,
//! Messages or embeddings), the model,
//! the answer's length (`max_tokens`, vLLM's `min_tokens` and `ignore_eos`), streaming and usage
//! options, and how many tokens its prompt holds.
//!
//! The endpoint has no tokenizer. It counts the prompt's words: each whitespace-separated word is
//! one token, as common words are in the usual BPE vocabularies, and a run of more than 8 bytes
//! without a space counts one token per 4 bytes (a BPE tokenizer splits such runs), plus 4 per
//! chat message for the chat template.

use serde_json::{Map, Value};

/// Which API a request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `/v1/chat/completions`: `messages` in, `delta.content` out.
    Chat,
    /// `/v1/completions`: `prompt` in, `text` out.
    Completions,
    /// `/v1/responses`: `input` (a string or messages) and `instructions` in, typed
    /// `response.*` events out.
    Responses,
    /// `/v1/messages`: `system` and `messages` in (`max_tokens` required), Anthropic's events
    /// out.
    Messages,
    /// `/v1/embeddings`: `input` (a string or strings) in, one JSON answer out.
    Embeddings,
}

/// What the request asked for.
pub(crate) struct Ask {
    pub api: Api,
    pub model: String,
    pub max_tokens: Option<u64>,
    /// vLLM's `min_tokens`: the answer is at least this long.
    pub min_tokens: Option<u64>,
    /// vLLM's `ignore_eos`: the answer runs to `max_tokens`, past the endpoint's own length.
    pub ignore_eos: bool,
    pub stream: bool,
    pub include_usage: bool,
    /// `stream_options.continuous_usage_stats` (vLLM): a running usage object in every chunk.
    pub continuous_usage: bool,
    pub prompt_tokens: u64,
    /// Embeddings: the inputs to embed (1 for every other API).
    pub inputs: u64,
    /// One hash per prompt token, in order (only when the endpoint keeps a prefix cache).
    pub prompt_hashes: Vec<u64>,
}

impl Ask {
    /// The answer's length in tokens, given the endpoint's own (`--output-tokens`): capped by
    /// `max_tokens`, raised to `min_tokens`, and exactly `max_tokens` with `ignore_eos`.
    pub fn answer_tokens(&self, output_tokens: u64) -> u64 {
        let natural = if self.ignore_eos {
            self.max_tokens.unwrap_or(output_tokens)
        } else {
            output_tokens
        };
        let n = natural.max(self.min_tokens.unwrap_or(0));
        self.max_tokens.map_or(n, |m| n.min(m))
    }
}

/// The tokens of `text` by the rule in this module's comment: each word, or each 4-byte piece
/// of a word over 8 bytes.
fn tokens(text: &str) -> impl Iterator<Item = &[u8]> {
    text.split_whitespace().flat_map(|w| {
        let piece = if w.len() > 8 { 4 } else { w.len() };
        w.as_bytes().chunks(piece.max(1))
    })
}

/// The prompt's token count by the rule in this module's comment.
pub(crate) fn count_tokens(text: &str) -> u64 {
    tokens(text).count() as u64
}

/// Each token of `text`, as a hash, appended to `out`.
fn hash_tokens(text: &str, out: &mut Vec<u64>) {
    out.extend(tokens(text).map(super::prefix_cache::token_hash));
}

/// The prompt's tokens as hashes: a chat message is its 4 template tokens (start, role, end,
/// newline) around its content's, so that `prompt_hashes.len() == prompt_tokens`.
fn prompt_hashes(prompt: &Prompt) -> Vec<u64> {
    let mut out = Vec::new();
    match prompt {
        Prompt::Turns(turns) => {
            for (role, text) in turns {
                out.push(super::prefix_cache::token_hash(b"<|im_start|>"));
                out.push(super::prefix_cache::token_hash(role.as_bytes()));
                hash_tokens(text, &mut out);
                out.push(super::prefix_cache::token_hash(b"<|im_end|>"));
                out.push(super::prefix_cache::token_hash(b"\n"));
            }
        }
        Prompt::Texts(texts) => {
            for p in texts {
                hash_tokens(p, &mut out);
            }
        }
    }
    out
}

/// A request's prompt as the endpoint reads it: chat turns (role, text), or plain texts.
enum Prompt {
    Turns(Vec<(String, String)>),
    Texts(Vec<String>),
}

impl Prompt {
    /// Tokens by the rule in this module's comment, 4 more per chat turn (its template).
    fn tokens(&self) -> u64 {
        match self {
            Prompt::Turns(t) => t.iter().map(|(_, text)| count_tokens(text) + 4).sum(),
            Prompt::Texts(t) => t.iter().map(|text| count_tokens(text)).sum(),
        }
    }
}

/// How the endpoint reads a request's body.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reading {
    /// Refuse `stream_options` keys other than `include_usage`.
    pub strict_stream_options: bool,
    /// Hash the prompt's tokens (for the prefix cache).
    pub hashes: bool,
}

/// Parses the body of a request to `api`; the error is the message of an HTTP 400.
pub(crate) fn parse(body: &[u8], api: Api, reading: Reading) -> Result<Ask, String> {
    let strict_stream_options = reading.strict_stream_options;
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON body: {e}"))?;
    let obj = v
        .as_object()
        .ok_or("The request body must be a JSON object")?;
    let prompt = match api {
        Api::Chat => chat_turns(obj, "messages", None)?,
        Api::Responses => responses_turns(obj)?,
        Api::Messages => {
            if obj.get("max_tokens").and_then(Value::as_u64).is_none() {
                return Err("max_tokens: Field required".into());
            }
            chat_turns(obj, "messages", obj.get("system"))?
        }
        Api::Completions => texts(obj, "prompt")?,
        Api::Embeddings => texts(obj, "input")?,
    };
    let prompt_tokens = prompt.tokens();
    let inputs = match &prompt {
        Prompt::Texts(t) if api == Api::Embeddings => t.len() as u64,
        _ => 1,
    };
    if strict_stream_options {
        if let Some(opts) = obj.get("stream_options").and_then(Value::as_object) {
            if let Some(k) = opts.keys().find(|k| *k != "include_usage") {
                return Err(format!("Unrecognized request argument supplied: {k}"));
            }
        }
    }
    let stream_option = |name: &str| {
        obj.get("stream_options")
            .and_then(|o| o.get(name))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    Ok(Ask {
        api,
        model: obj
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model")
            .to_string(),
        max_tokens: obj
            .get("max_tokens")
            .or_else(|| obj.get("max_completion_tokens"))
            .or_else(|| obj.get("max_output_tokens"))
            .and_then(Value::as_u64),
        min_tokens: obj.get("min_tokens").and_then(Value::as_u64),
        ignore_eos: obj
            .get("ignore_eos")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        stream: obj.get("stream").and_then(Value::as_bool).unwrap_or(false),
        // Responses and Messages always report usage.
        include_usage: stream_option("include_usage")
            || matches!(api, Api::Responses | Api::Messages),
        continuous_usage: stream_option("continuous_usage_stats"),
        prompt_tokens,
        inputs,
        prompt_hashes: if reading.hashes {
            prompt_hashes(&prompt)
        } else {
            Vec::new()
        },
    })
}

/// A message's text: a string, or the `text` of each of its content parts (Responses'
/// `input_text`, Anthropic's `text` blocks).
fn content_text(v: Option<&Value>) -> Result<String, String> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")),
        Some(_) => Err("a message's content must be a string or an array of parts".into()),
    }
}

/// The turns of array `key` (each `{"role", "content"}`), after a `system` prompt if given.
fn chat_turns(
    obj: &Map<String, Value>,
    key: &str,
    system: Option<&Value>,
) -> Result<Prompt, String> {
    let messages = obj
        .get(key)
        .and_then(Value::as_array)
        .ok_or(format!("\"{key}\" must be an array"))?;
    let mut turns = Vec::with_capacity(messages.len() + 1);
    if system.is_some() {
        turns.push(("system".to_string(), content_text(system)?));
    }
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        turns.push((role.to_string(), content_text(m.get("content"))?));
    }
    Ok(Prompt::Turns(turns))
}

/// Responses' prompt: `instructions` as a system turn, then `input`: one user string, or
/// messages.
fn responses_turns(obj: &Map<String, Value>) -> Result<Prompt, String> {
    let system = obj.get("instructions");
    match obj.get("input") {
        Some(Value::String(text)) => {
            let mut turns = Vec::new();
            if system.is_some() {
                turns.push(("system".to_string(), content_text(system)?));
            }
            turns.push(("user".to_string(), text.clone()));
            Ok(Prompt::Turns(turns))
        }
        Some(Value::Array(_)) => chat_turns(obj, "input", system),
        _ => Err("\"input\" must be a string or an array of messages".into()),
    }
}

/// Plain texts: a string, or an array of strings (completions' `prompt`, embeddings' `input`).
fn texts(obj: &Map<String, Value>, key: &str) -> Result<Prompt, String> {
    match obj.get(key) {
        Some(Value::String(p)) => Ok(Prompt::Texts(vec![p.clone()])),
        Some(Value::Array(parts)) if !parts.is_empty() && parts.iter().all(Value::is_string) => {
            Ok(Prompt::Texts(
                parts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ))
        }
        _ => Err(format!(
            "\"{key}\" must be a string or a non-empty array of strings"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(body: &str, api: Api) -> Ask {
        parse(body.as_bytes(), api, Reading::default()).unwrap()
    }

    #[test]
    fn prompts_are_counted_in_words_and_long_runs_in_4_byte_pieces() {
        assert_eq!(count_tokens("the quick brown fox"), 4);
        assert_eq!(count_tokens(&"x".repeat(4000)), 1000);
        let chat = ask(
            r#"{"messages":[{"role":"user","content":"one two three"}]}"#,
            Api::Chat,
        );
        assert_eq!((chat.api, chat.prompt_tokens), (Api::Chat, 3 + 4));
        let text = ask(r#"{"prompt":"one two three four"}"#, Api::Completions);
        assert_eq!(text.prompt_tokens, 4);
        let no = Reading::default();
        assert!(parse(br#"{"prompt":5}"#, Api::Completions, no).is_err());
        assert!(parse(br#"{"prompt":"x"}"#, Api::Chat, no).is_err());
        // Hashed for the prefix cache: one hash per counted token.
        let hashed = Reading { hashes: true, ..no };
        let body = format!(
            r#"{{"messages":[{{"role":"system","content":"be brief"}},{{"role":"user","content":"one {}"}}]}}"#,
            "x".repeat(20)
        );
        let a = parse(body.as_bytes(), Api::Chat, hashed).unwrap();
        assert_eq!(a.prompt_hashes.len() as u64, a.prompt_tokens);
        assert_eq!(a.prompt_tokens, 2 + 1 + 5 + 8);
        let t = parse(br#"{"prompt":"a b c"}"#, Api::Completions, hashed).unwrap();
        assert_eq!(t.prompt_hashes.len(), 3);
    }

    #[test]
    fn every_api_reads_its_own_prompt() {
        let r = ask(
            r#"{"instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"one two"}]}],"max_output_tokens":3}"#,
            Api::Responses,
        );
        assert_eq!(
            (r.prompt_tokens, r.max_tokens, r.include_usage),
            (2 + 4 + 2 + 4, Some(3), true)
        );
        assert_eq!(
            ask(r#"{"input":"one two"}"#, Api::Responses).prompt_tokens,
            2 + 4
        );
        let m = ask(
            r#"{"system":"be brief","messages":[{"role":"user","content":"one two"}],"max_tokens":5}"#,
            Api::Messages,
        );
        assert_eq!((m.prompt_tokens, m.max_tokens), (2 + 4 + 2 + 4, Some(5)));
        let no = Reading::default();
        let e = parse(br#"{"messages":[]}"#, Api::Messages, no)
            .err()
            .unwrap();
        assert!(e.contains("max_tokens"), "{e}");
        let e = ask(r#"{"input":["a b","c"]}"#, Api::Embeddings);
        assert_eq!((e.prompt_tokens, e.inputs), (3, 2));
        assert!(parse(br#"{"input":[]}"#, Api::Embeddings, no).is_err());
        assert!(parse(br#"{"input":[1]}"#, Api::Embeddings, no).is_err());
    }

    #[test]
    fn answer_length_follows_max_min_and_ignore_eos() {
        let a = |extra: &str| ask(&format!(r#"{{"prompt":"x"{extra}}}"#), Api::Completions);
        // The endpoint's own length (8), capped by max_tokens.
        assert_eq!(a("").answer_tokens(8), 8);
        assert_eq!(a(r#","max_tokens":5"#).answer_tokens(8), 5);
        assert_eq!(a(r#","max_tokens":30"#).answer_tokens(8), 8);
        // ignore_eos runs to max_tokens, past the endpoint's length; min_tokens raises it.
        assert_eq!(
            a(r#","max_tokens":30,"ignore_eos":true"#).answer_tokens(8),
            30
        );
        assert_eq!(
            a(r#","max_tokens":30,"min_tokens":30"#).answer_tokens(8),
            30
        );
        assert_eq!(
            a(r#","max_tokens":30,"min_tokens":12"#).answer_tokens(8),
            12
        );
    }
}
