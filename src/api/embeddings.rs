//! Embeddings answers (`POST /v1/embeddings`, not streamed): the check that one JSON answer
//! holds an embedding for every input of its batch, and its `usage.prompt_tokens`.
//!
//! Data flow: `engine::stream` keeps the 200 answer's body as it is read, then calls [`check`]
//! once on its end. The check is one pass over the bytes that tracks strings and nesting, and
//! builds nothing: an answer of thousands of floats is counted, not parsed into values (one byte
//! loop over the numbers, strings skipped by `memchr`).

use super::json_text::{pieces, Piece};

/// What a well-formed answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Objects in the top-level `data` array (one per input).
    pub embeddings: u64,
    /// `usage.prompt_tokens`, when given.
    pub prompt_tokens: Option<u64>,
}

/// Why an answer is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a complete JSON object, or no `data` array, or fewer embeddings than inputs.
    Malformed(String),
    /// An `{"error": …}` object (a 200 answer that failed): its message.
    Error(String),
}

/// Checks an answer to a batch of `inputs` inputs.
pub fn check(body: &[u8], inputs: u64) -> Result<Answer, Refusal> {
    let scan = scan(body).ok_or_else(|| {
        Refusal::Malformed("embeddings answer is not a complete JSON object".into())
    })?;
    if let Some(message) = scan.error {
        return Err(Refusal::Error(message));
    }
    match scan.embeddings {
        None => Err(Refusal::Malformed(
            "embeddings answer has no data array".into(),
        )),
        Some(n) if n < inputs => Err(Refusal::Malformed(format!(
            "embeddings answer has {n} embeddings for {inputs} inputs"
        ))),
        Some(n) => Ok(Answer {
            embeddings: n,
            prompt_tokens: scan.prompt_tokens,
        }),
    }
}

/// What one pass found.
#[derive(Default)]
struct Scan {
    embeddings: Option<u64>,
    prompt_tokens: Option<u64>,
    error: Option<String>,
}

/// Where the scan is: inside which top-level key's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Within {
    Other,
    Data,
    Usage,
    Error,
}

/// One pass over `body`: None unless it is one balanced JSON object (strings, escapes and
/// nesting followed; numbers and literals not checked beyond what the counts need).
fn scan(body: &[u8]) -> Option<Scan> {
    let mut out = Scan::default();
    let mut depth = 0usize;
    // The last string (a key, when a ':' follows it).
    let mut last_str = (0, 0);
    let mut within = Within::Other;
    let mut closed = false;
    for (i, piece) in pieces(body) {
        let b = match piece {
            Piece::String {
                start,
                end,
                closed: true,
            } if depth > 0 && !closed => {
                last_str = (start, end);
                continue;
            }
            Piece::String { .. } => return None,
            Piece::Byte(b) => b,
        };
        // Only blanks stand outside the one top-level object.
        let outside = closed || depth == 0;
        if outside && !b.is_ascii_whitespace() && (closed || b != b'{') {
            return None;
        }
        match b {
            b':' => {
                let name = &body[last_str.0..last_str.1];
                if depth == 1 {
                    within = match name {
                        b"data" => Within::Data,
                        b"usage" => Within::Usage,
                        b"error" => Within::Error,
                        _ => Within::Other,
                    };
                    if within == Within::Data {
                        out.embeddings.get_or_insert(0);
                    }
                }
                if depth == 2 && within == Within::Usage && name == b"prompt_tokens" {
                    out.prompt_tokens = number_at(&body[i + 1..]);
                }
                if within == Within::Error && (depth == 1 || (depth == 2 && name == b"message")) {
                    let value = string_at(&body[i + 1..]);
                    if value.is_some() || out.error.is_none() {
                        out.error = Some(value.unwrap_or_else(|| "unknown error".into()));
                    }
                }
            }
            b'{' | b'[' => {
                if b == b'{' && depth == 2 && within == Within::Data {
                    *out.embeddings.get_or_insert(0) += 1;
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                closed |= depth == 0;
                if depth == 1 {
                    within = Within::Other;
                }
            }
            b',' if depth == 1 => within = Within::Other,
            _ => {}
        }
    }
    closed.then_some(out)
}

/// The unsigned integer at the start of `rest` (after blanks).
fn number_at(rest: &[u8]) -> Option<u64> {
    let rest = trim_start(rest);
    let end = rest
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The JSON string at the start of `rest` (after blanks), decoded.
fn string_at(rest: &[u8]) -> Option<String> {
    let rest = trim_start(rest);
    if rest.first() != Some(&b'"') {
        return None;
    }
    let mut escaped = false;
    let end = rest[1..].iter().position(|&b| {
        let end = !escaped && b == b'"';
        escaped = !escaped && b == b'\\';
        end
    })?;
    serde_json::from_slice(&rest[..end + 2]).ok()
}

fn trim_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &b[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"model":"m","object":"list","usage":{"prompt_tokens":6,"total_tokens":6},"data":[{"embedding":[0.1,-2e-3,{"x":[1]}],"index":0,"object":"embedding"},{"embedding":"AAAA\"}","index":1,"object":"embedding"}]}"#;

    #[test]
    fn counts_the_embeddings_and_reads_the_prompt_tokens() {
        let a = check(OK.as_bytes(), 2).unwrap();
        assert_eq!((a.embeddings, a.prompt_tokens), (2, Some(6)));
        assert!(check(format!("{OK}\n").as_bytes(), 2).is_ok());
    }

    #[test]
    fn a_short_missing_or_cut_answer_is_malformed() {
        let short = check(OK.as_bytes(), 3).unwrap_err();
        assert_eq!(
            short,
            Refusal::Malformed("embeddings answer has 2 embeddings for 3 inputs".into())
        );
        assert!(
            matches!(check(br#"{"object":"list"}"#, 1), Err(Refusal::Malformed(m)) if m.contains("no data"))
        );
        for bad in [
            &OK[..OK.len() - 1],
            "",
            "[1]",
            "{} {}",
            "{\"data\":[{}]",
            "{\"a\":\"}",
        ] {
            assert!(
                matches!(check(bad.as_bytes(), 1), Err(Refusal::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_error_object_is_an_error_with_its_message() {
        let e = check(
            br#"{"error":{"code":500,"message":"pooling \"none\" unsupported"}}"#,
            1,
        );
        assert_eq!(
            e,
            Err(Refusal::Error("pooling \"none\" unsupported".into()))
        );
        assert_eq!(
            check(br#"{"error":"boom"}"#, 1),
            Err(Refusal::Error("boom".into()))
        );
    }

    #[test]
    fn agrees_with_serde_json_on_the_count() {
        let v: serde_json::Value = serde_json::from_str(OK).unwrap();
        let n = v["data"].as_array().unwrap().len() as u64;
        assert_eq!(check(OK.as_bytes(), 1).unwrap().embeddings, n);
    }
}
