//! Synthetic rows as requests: each is the head every request shares, its own `Content-Length`
//! line, the body's JSON up to the prompt, the prompt's spans as views of the shared text, and
//! the rest of the body. Only the shared text, one head, and one copy of each distinct length
//! line and body piece are stored, so a million rows take parts, not prompts.

use std::collections::HashMap;

use super::arena::{Part, Prepared};
use super::{body, head_before_length, too_large, Api, RequestTemplate};
use crate::dataset::{Message, Synthetic};
use crate::error::Result;

/// Stands for the prompt while the body is serialized; the JSON is cut where it lands. Control
/// characters are escaped in JSON, so no user text serializes to this.
const PLACEHOLDER: &str = "\u{1}qpsbench-prompt\u{1}";

/// The body's JSON before and after the prompt's text, for answers of `max_tokens`.
fn body_around_prompt(t: &RequestTemplate<'_>, max_tokens: u32) -> (Vec<u8>, Vec<u8>) {
    let json = match t.api {
        Api::Chat => {
            let user = [Message {
                role: "user",
                content: PLACEHOLDER.to_string(),
            }];
            body(t, Some(&user), None, Some(max_tokens))
        }
        Api::Completions => body(t, None, Some(PLACEHOLDER.to_string()), Some(max_tokens)),
    };
    let mark = serde_json::to_string(PLACEHOLDER).expect("a string serializes");
    // Inside the quotes: the prompt's text replaces the placeholder's.
    let inner = &mark.as_bytes()[1..mark.len() - 1];
    let at = json
        .windows(inner.len())
        .position(|w| w == inner)
        .expect("the placeholder is in the body");
    (json[..at].to_vec(), json[at + inner.len()..].to_vec())
}

/// Appends every row of `set` to `out`.
pub fn render(t: &RequestTemplate<'_>, set: &Synthetic, out: &mut Prepared) -> Result<()> {
    let text = out.store(set.text.bytes()).ok_or_else(too_large)?;
    let head = out
        .store(head_before_length(t).as_bytes())
        .ok_or_else(too_large)?;
    let mut bodies: HashMap<u32, (Part, Part)> = HashMap::new();
    let mut lengths: HashMap<usize, Part> = HashMap::new();
    let mut parts: Vec<Part> = Vec::new();
    for i in 0..set.len() {
        let (spans, max_tokens) = set.row(i);
        let (before, after) = match bodies.get(&max_tokens) {
            Some(&b) => b,
            None => {
                let (a, b) = body_around_prompt(t, max_tokens);
                let pair = (
                    out.store(&a).ok_or_else(too_large)?,
                    out.store(&b).ok_or_else(too_large)?,
                );
                bodies.insert(max_tokens, pair);
                pair
            }
        };
        parts.clear();
        parts.extend([head, head, before]);
        for &span in spans {
            for (a, b) in set.text.ranges(span).into_iter().flatten() {
                parts.push(Prepared::part_at(text, a, b));
            }
        }
        parts.push(after);
        let content_length: usize = parts[2..].iter().map(Part::len).sum();
        parts[1] = match lengths.get(&content_length) {
            Some(&p) => p,
            None => {
                let line = format!("Content-Length: {content_length}\r\n\r\n");
                let p = out.store(line.as_bytes()).ok_or_else(too_large)?;
                lengths.insert(content_length, p);
                p
            }
        };
        out.push_request(parts.iter().copied());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::text::Text;
    use crate::http::url::Endpoint;

    #[test]
    fn a_synthetic_request_is_its_prompt_inside_a_complete_body() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
        let mut set = Synthetic::new(Text::new(1 << 10));
        let shared = set.text.allocate(6);
        let own = set.text.allocate(4);
        set.push(&[shared, own], 30);
        set.push(&[shared], 30);
        let extra = serde_json::json!({"top_p": 0.5})
            .as_object()
            .cloned()
            .unwrap();
        for api in [Api::Chat, Api::Completions] {
            let t = RequestTemplate {
                api,
                extra_body: Some(&extra),
                endpoint: &ep,
                api_key: "k",
                model: "m",
                max_tokens: 512,
                temperature: 0.0,
                include_usage: true,
                continuous_usage: false,
                headers: &[],
                ignore_eos: true,
            };
            let mut p = Prepared::default();
            render(&t, &set, &mut p).unwrap();
            assert_eq!(p.len(), 2);
            for i in 0..2 {
                let req = String::from_utf8(p.get(i)).unwrap();
                let (head, body) = req.split_once("\r\n\r\n").unwrap();
                assert!(
                    head.contains(&format!("Content-Length: {}", body.len())),
                    "{head}"
                );
                let v: serde_json::Value = serde_json::from_str(body).unwrap();
                let prompt = match api {
                    Api::Chat => v["messages"][0]["content"].as_str().unwrap().to_string(),
                    Api::Completions => v["prompt"].as_str().unwrap().to_string(),
                };
                assert_eq!(prompt, set.prompt(i));
                assert_eq!(
                    (v["max_tokens"].as_u64(), v["min_tokens"].as_u64()),
                    (Some(30), Some(30))
                );
                assert_eq!(
                    (v["ignore_eos"].as_bool(), v["top_p"].as_f64()),
                    (Some(true), Some(0.5))
                );
            }
        }
    }
}
