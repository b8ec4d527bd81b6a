//! A run's requests: the bytes every level shares, rendered once ([`RunRequests`]: each
//! endpoint's head, each row's body cut where a marker may go, the synthetic text and the body
//! pieces around a synthetic prompt), and before each level the level's own requests
//! ([`RunRequests::level`]): for each of its prompts, parts of those bytes, with the few bytes
//! only that level needs (its `Content-Length` lines, its passes' markers or salts) beside them.
//!
//! Which row a prompt sends and what it adds to it is `unique`'s rule; what a synthetic prompt is
//! made of is `dataset::synthetic`'s.

use std::collections::HashMap;
use std::sync::Arc;

use super::arena::{Part, Prepared};
use super::synthetic::{body_around_prompt, body_around_row};
use super::unique::{marker, salt, Addition, Source, UniquePrompts, Uniqueness};
use super::{check_api_key, head_before_length, too_large, Api, RequestTemplate};
use crate::foundation::error::Result;
use crate::workload::dataset::synthetic::Prompt;
use crate::workload::dataset::{Rows, Synthetic};

/// What the rows are, as stored in the base.
enum Bodies {
    /// Each row's body before and after where its first user message's text starts.
    Rows(Vec<(Part, Part)>),
    /// The synthetic text, and the body before and after a prompt, by answer length.
    Synthetic {
        text: Part,
        around: HashMap<u32, (Part, Part)>,
    },
}

/// The run's shared bytes and the rule that turns prompt numbers into requests.
pub struct RunRequests {
    base: Arc<Vec<u8>>,
    /// Each endpoint's head, up to its `Content-Length` line.
    heads: Vec<Part>,
    bodies: Bodies,
    rows: Arc<Rows>,
    pub unique: Uniqueness,
    /// Embeddings: the inputs per request, the body around them, and the `","` between two.
    batch: Option<Batch>,
}

/// An embeddings request's frame: `before` + input, `","`, input… + `after`.
struct Batch {
    inputs: u64,
    before: Part,
    after: Part,
    comma: Part,
}

/// One level's requests: request j is the level's j-th arrival's (in the order given).
pub struct LevelRequests {
    pub prepared: Prepared,
    /// The row each request sends (for a drawn prompt, its number), for `requests.jsonl`.
    pub rows: Vec<u64>,
    /// The first and last pass over the dataset the level's prompts were on.
    pub passes: Option<(u64, u64)>,
}

impl RunRequests {
    /// Renders what every level shares: one template per endpoint (they differ in the head
    /// only). Fails (without echoing the key) if the key could break the header.
    pub fn build(
        templates: &[RequestTemplate<'_>],
        rows: Arc<Rows>,
        mode: UniquePrompts,
    ) -> Result<Self> {
        let t = &templates[0];
        check_api_key(t.api_key)?;
        let mut base = Prepared::default();
        let heads = templates
            .iter()
            .map(|t| {
                base.store(head_before_length(t).as_bytes())
                    .ok_or_else(too_large)
            })
            .collect::<Result<Vec<_>>>()?;
        let (bodies, unique) = match rows.as_ref() {
            Rows::Samples(samples) => {
                let mut cut = Vec::with_capacity(samples.len());
                for s in samples {
                    let (a, b) = body_around_row(t, s);
                    cut.push((store(&mut base, &a)?, store(&mut base, &b)?));
                }
                let source = (Source::Samples, samples.len() as u64);
                (Bodies::Rows(cut), source)
            }
            Rows::Synthetic(set) => (synthetic_bodies(t, set, &mut base)?, synthetic_source(set)),
        };
        let batch = match t.api {
            Api::Embeddings => {
                let (before, after) = body_around_prompt(t, 0);
                Some(Batch {
                    inputs: u64::from(t.batch.max(1)),
                    before: store(&mut base, &before)?,
                    after: store(&mut base, &after)?,
                    comma: store(&mut base, b"\",\"")?,
                })
            }
            _ => None,
        };
        Ok(Self {
            batch,
            base: base.into_base(),
            heads,
            bodies,
            rows,
            unique: Uniqueness {
                mode,
                source: unique.0,
                rows: unique.1,
            },
        })
    }

    /// The requests of prompts `prompts` (each: its number, and the endpoint it goes to).
    pub fn level(
        &self,
        prompts: impl ExactSizeIterator<Item = (u64, u16)>,
    ) -> Result<LevelRequests> {
        let mut w = Writer {
            out: Prepared::on(self.base.clone()),
            lengths: HashMap::new(),
            additions: HashMap::new(),
            body: Vec::with_capacity(16),
        };
        let mut rows = Vec::with_capacity(prompts.len());
        let mut passes: Option<(u64, u64)> = None;
        let mut parts: Vec<Part> = Vec::with_capacity(16);
        for (prompt, endpoint) in prompts {
            if let Some(b) = &self.batch {
                let head = self.heads[usize::from(endpoint).min(self.heads.len() - 1)];
                let (row, pass) = self.batch_request(&mut w, b, head, prompt, &mut parts)?;
                rows.push(row);
                passes = Some(passes.map_or((pass, pass), |(a, c)| (a.min(pass), c.max(pass))));
                continue;
            }
            let (row, pass) = self.unique.row_and_pass(prompt);
            let add = self.unique.addition(pass);
            let head = self.heads[usize::from(endpoint).min(self.heads.len() - 1)];
            match (&self.bodies, self.rows.as_ref()) {
                (Bodies::Rows(cut), _) => {
                    let (before, after) = cut[row];
                    w.request(head, before, &[], after, add)?;
                    rows.push(row as u64);
                }
                (Bodies::Synthetic { text, around }, Rows::Synthetic(set)) => {
                    let p = set.prompt_of(row, prompt);
                    let (before, after) = around[&p.max_tokens];
                    text_parts(set, *text, &p, &mut parts);
                    w.request(head, before, &parts, after, add)?;
                    rows.push(if set.draw.is_some() {
                        prompt
                    } else {
                        row as u64
                    });
                }
                _ => unreachable!("bodies are built from these rows"),
            }
            passes = Some(passes.map_or((pass, pass), |(a, b)| (a.min(pass), b.max(pass))));
        }
        Ok(LevelRequests {
            prepared: w.out,
            rows,
            passes,
        })
    }

    /// An embeddings request: prompt `p`'s batch, the inputs of prompt numbers (p−1)·B+1 …
    /// p·B (the probe's, prompt 0, B times), each with its marker, if any (a salt is a
    /// marker here: embeddings have no body key for it). Returns the first input's row and
    /// the last one's pass.
    fn batch_request(
        &self,
        w: &mut Writer,
        b: &Batch,
        head: Part,
        prompt: u64,
        parts: &mut Vec<Part>,
    ) -> Result<(u64, u64)> {
        let mut items = Vec::with_capacity(b.inputs as usize * 2);
        let (mut first_row, mut last_pass) = (None, 0);
        for k in 0..b.inputs {
            let base = super::unique::PROBE_BASE;
            let sub = if prompt == 0 {
                0
            } else if prompt >= base {
                // The baseline's prompt j: inputs of their own, apart from every level's.
                base + (prompt - base) * 4096 + k
            } else {
                (prompt - 1) * b.inputs + k + 1
            };
            let (row, pass) = self.unique.row_and_pass(sub);
            let add = match self.unique.addition(pass) {
                Addition::Salt(k) => Addition::Marker(k),
                a => a,
            };
            if k > 0 {
                items.push(b.comma);
            }
            items.extend(w.addition(add)?);
            match (&self.bodies, self.rows.as_ref()) {
                (Bodies::Rows(texts), _) => {
                    items.push(texts[row].0);
                    first_row.get_or_insert(row as u64);
                }
                (Bodies::Synthetic { text, .. }, Rows::Synthetic(set)) => {
                    text_parts(set, *text, &set.prompt_of(row, sub), parts);
                    items.extend_from_slice(parts);
                    first_row.get_or_insert(if set.draw.is_some() { sub } else { row as u64 });
                }
                _ => unreachable!("bodies are built from these rows"),
            }
            last_pass = pass;
        }
        w.request(head, b.before, &items, b.after, Addition::None)?;
        Ok((first_row.unwrap_or(0), last_pass))
    }

    /// The probe's one request (prompt 0, to the first endpoint): text no level sends, but
    /// with `--unique-prompts off`.
    pub fn probe(&self) -> Result<Prepared> {
        self.probe_request(0)
    }

    /// The probe's request `k`: 0 is [`Self::probe`]; the later ones (the unloaded baseline)
    /// are prompts no level sends either, each its own (row k on pass 0, or drawn text of its
    /// own).
    pub fn probe_request(&self, k: u64) -> Result<Prepared> {
        let prompt = if k == 0 {
            0
        } else {
            super::unique::PROBE_BASE + k
        };
        Ok(self.level(std::iter::once((prompt, 0)))?.prepared)
    }

    /// The shared bytes' size (for checks).
    pub fn base_len(&self) -> usize {
        self.base.len()
    }
}

fn store(base: &mut Prepared, bytes: &[u8]) -> Result<Part> {
    base.store(bytes).ok_or_else(too_large)
}

/// A synthetic source's rows: drawn prompts have none (one endless pass).
fn synthetic_source(set: &Synthetic) -> (Source, u64) {
    match set.draw {
        Some(_) => (Source::Drawn, 0),
        None => (Source::SyntheticRows, set.len() as u64),
    }
}

/// The text, and the body pieces for every answer length a prompt may ask for.
fn synthetic_bodies(
    t: &RequestTemplate<'_>,
    set: &Synthetic,
    base: &mut Prepared,
) -> Result<Bodies> {
    let text = store(base, set.text.bytes())?;
    let lengths: Vec<u32> = match &set.draw {
        Some(d) => (d.output.0..=d.output.1).collect(),
        None => (0..set.len()).map(|i| set.row(i).2).collect(),
    };
    let mut around = HashMap::new();
    for max_tokens in lengths {
        if let std::collections::hash_map::Entry::Vacant(e) = around.entry(max_tokens) {
            let (a, b) = body_around_prompt(t, max_tokens);
            e.insert((store(base, &a)?, store(base, &b)?));
        }
    }
    Ok(Bodies::Synthetic { text, around })
}

/// A synthetic prompt's text as views of the stored text, into `parts` (emptied first, reused
/// from prompt to prompt): its shared spans, then its own.
fn text_parts(set: &Synthetic, text: Part, p: &Prompt<'_>, parts: &mut Vec<Part>) {
    let t = &set.text;
    let view = |(a, b): (usize, usize)| Prepared::part_at(text, a, b);
    parts.clear();
    parts.extend(
        p.spans
            .iter()
            .flat_map(|&s| t.ranges(s).into_iter().flatten())
            .map(view),
    );
    if let Some(own) = p.own {
        parts.extend(t.own_ranges(own).map(view));
    }
}

/// A level's arena as it is written, with the bytes it stored once.
struct Writer {
    out: Prepared,
    lengths: HashMap<usize, Part>,
    additions: HashMap<Addition, Part>,
    body: Vec<Part>,
}

impl Writer {
    /// One request: `head`, its `Content-Length`, then the body — `before`, the addition's
    /// marker, `text`, `after`; or, salted, the salt right after the body's opening brace.
    fn request(
        &mut self,
        head: Part,
        before: Part,
        text: &[Part],
        after: Part,
        add: Addition,
    ) -> Result<()> {
        let extra = self.addition(add)?;
        self.body.clear();
        match (add, extra) {
            (Addition::Salt(_), Some(s)) if before.len() > 1 => {
                self.body.extend([
                    Prepared::part_at(before, 0, 1),
                    s,
                    Prepared::part_at(before, 1, before.len()),
                ]);
            }
            (Addition::Marker(_), Some(m)) => self.body.extend([before, m]),
            _ => self.body.push(before),
        }
        self.body.extend_from_slice(text);
        self.body.push(after);
        let n: usize = self.body.iter().map(Part::len).sum();
        let length = match self.lengths.get(&n) {
            Some(&p) => p,
            None => {
                let line = format!("Content-Length: {n}\r\n\r\n");
                let p = self.out.store(line.as_bytes()).ok_or_else(too_large)?;
                self.lengths.insert(n, p);
                p
            }
        };
        self.out
            .push_request([head, length].into_iter().chain(self.body.iter().copied()));
        Ok(())
    }

    /// The bytes `add` inserts (JSON-escaped), stored once per level.
    fn addition(&mut self, add: Addition) -> Result<Option<Part>> {
        if let Some(&p) = self.additions.get(&add) {
            return Ok(Some(p));
        }
        let text = match add {
            Addition::None => return Ok(None),
            Addition::Marker(k) => {
                let json = serde_json::to_string(&marker(k)).expect("a string serializes");
                json[1..json.len() - 1].to_string()
            }
            Addition::Salt(k) => salt(k),
        };
        let p = self.out.store(text.as_bytes()).ok_or_else(too_large)?;
        self.additions.insert(add, p);
        Ok(Some(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::Endpoint;
    use crate::workload::dataset::text::Text;
    use crate::workload::prepared::Api;

    fn template(ep: &Endpoint, api: Api) -> RequestTemplate<'_> {
        RequestTemplate::for_test(ep, api, true)
    }

    /// Request `i` of `p`: (head, parsed body), the Content-Length checked.
    fn request(p: &Prepared, i: usize) -> (String, serde_json::Value) {
        let req = String::from_utf8(p.get(i)).unwrap();
        let (head, body) = req.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    fn samples() -> Rows {
        Rows::Samples(
            crate::workload::dataset::parse(
                br#"[{"prompt_content":"sys","cut_chat_history":[{"role":"user","content":"one"}]},{"prompt_content":"sys","cut_chat_history":[{"role":"user","content":"two"}]}]"#,
                "t",
            )
            .unwrap(),
        )
    }

    #[test]
    fn rows_repeat_only_with_a_marker_of_their_pass() {
        let a = Endpoint::parse("http://127.0.0.1:9/v1/chat/completions").unwrap();
        let b = Endpoint::parse("http://127.0.0.2:9/v1/chat/completions").unwrap();
        let ts = [template(&a, Api::Chat), template(&b, Api::Chat)];
        let run = RunRequests::build(&ts, Arc::new(samples()), UniquePrompts::Auto).unwrap();
        let l = run
            .level([(1, 0), (2, 1), (3, 0), (5, 0)].into_iter())
            .unwrap();
        assert_eq!(l.rows, vec![0, 1, 0, 0]);
        assert_eq!(l.passes, Some((1, 3)));
        let user = |i| {
            request(&l.prepared, i).1["messages"][1]["content"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!((user(0), user(1)), ("one".into(), "two".into()));
        assert_eq!(user(2), format!("{}one", marker(2)));
        assert_eq!(user(3), format!("{}one", marker(3)));
        // The second endpoint's head.
        assert!(request(&l.prepared, 1).0.contains("Host: 127.0.0.2:9"));
        // The probe's text is no level's.
        let probe = run.probe().unwrap();
        let v = request(&probe, 0).1;
        assert_eq!(v["messages"][1]["content"], format!("{}one", marker(0)));
        // Salted: the body's first field, one per pass; off: as it is.
        let salted =
            RunRequests::build(&ts[..1], Arc::new(samples()), UniquePrompts::Salt).unwrap();
        let v = request(&salted.level([(3, 0)].into_iter()).unwrap().prepared, 0).1;
        assert_eq!(v["cache_salt"], "qpsbench-pass-2");
        assert_eq!(v["messages"][1]["content"], "one");
        // Off: a level sends the row as it is, the probe still with its own marker (it must
        // warm nothing for level 1).
        let off = RunRequests::build(&ts[..1], Arc::new(samples()), UniquePrompts::Off).unwrap();
        let level = request(&off.level([(5, 0)].into_iter()).unwrap().prepared, 0).1;
        assert_eq!(level["messages"][1]["content"], "one");
        let probe = request(&off.probe().unwrap(), 0).1;
        assert_eq!(probe["messages"][1]["content"], format!("{}one", marker(0)));
    }

    #[test]
    fn synthetic_prompts_are_views_of_the_text_inside_a_complete_body() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/completions").unwrap();
        let mut set = Synthetic::new(Text::new(1 << 10));
        let shared = set.text.allocate(6);
        set.push_own(&[shared], 4, 30);
        set.push(&[shared], 31);
        let prompt_text = |i: usize, p: u64| set.text_of(&set.prompt_of(i, p));
        let (one, two) = (prompt_text(0, 1), prompt_text(1, 2));
        let repeat = prompt_text(0, 3);
        let rows = Arc::new(Rows::Synthetic(set));
        for api in [Api::Chat, Api::Completions] {
            let run = RunRequests::build(&[template(&ep, api)], rows.clone(), UniquePrompts::Auto)
                .unwrap();
            let l = run.level([(1, 0), (2, 0), (3, 0)].into_iter()).unwrap();
            let prompt = |i| {
                let v = request(&l.prepared, i).1;
                let p = match api {
                    Api::Completions => v["prompt"].clone(),
                    _ => v["messages"][0]["content"].clone(),
                };
                (
                    p.as_str().unwrap().to_string(),
                    v["max_tokens"].as_u64().unwrap(),
                )
            };
            assert_eq!(prompt(0), (one.clone(), 30));
            assert_eq!(prompt(1), (two.clone(), 31));
            // Row 0 again: its shared block again, its own text anew.
            assert_eq!(prompt(2).0, repeat);
            assert_ne!(prompt(2).0, one);
            assert_eq!(request(&l.prepared, 2).1["min_tokens"], 30);
        }
    }

    #[test]
    fn an_embeddings_request_sends_a_batch_of_prompts_each_once() {
        let ep = Endpoint::parse("http://127.0.0.1:9/v1/embeddings").unwrap();
        let mut t = template(&ep, Api::Embeddings);
        t.batch = 3;
        let run = RunRequests::build(&[t], Arc::new(samples()), UniquePrompts::Auto).unwrap();
        let l = run.level([(1, 0), (2, 0)].into_iter()).unwrap();
        let inputs = |i| request(&l.prepared, i).1["input"].clone();
        // Prompts 1–3, then 4–6: rows 0, 1, 0 (its second pass, marked), then 1, 0, 1.
        let first = inputs(0);
        assert_eq!(first[0], "sys\none");
        assert_eq!(first[1], "sys\ntwo");
        assert_eq!(first[2], format!("{}sys\none", marker(2)));
        assert_eq!(inputs(1).as_array().unwrap().len(), 3);
        assert_eq!(l.rows, vec![0, 1]);
        let (head, v) = request(&l.prepared, 0);
        assert!(head.contains("Accept: application/json"), "{head}");
        assert!(v.get("stream").is_none() && v.get("max_tokens").is_none());
        // Synthetic text, each input its own prompt's.
        let mut set = Synthetic::new(Text::new(1 << 10));
        set.push_own(&[], 4, 30);
        let rows = Arc::new(Rows::Synthetic(set));
        let mut t = template(&ep, Api::Embeddings);
        t.batch = 2;
        let run = RunRequests::build(&[t], rows, UniquePrompts::Auto).unwrap();
        let v = request(&run.level([(1, 0)].into_iter()).unwrap().prepared, 0).1;
        let texts = v["input"].as_array().unwrap();
        assert_eq!(texts.len(), 2);
        assert_ne!(texts[0], texts[1]);
    }
}
