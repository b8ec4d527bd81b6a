//! The `mooncake` source: the trace format of Mooncake, AIPerf and Dynamo. One JSON object per
//! line: `timestamp` (ms from the trace's start, optional; or `delay`, ms after the previous
//! row), `input_length` and `output_length` (or `input_tokens`, `output_tokens`), and optional
//! `hash_ids`, one per 512-token block of the prompt.
//!
//! Every distinct hash id is one fixed 512-word span of the shared text, so rows that share hash
//! ids share an identical prefix, as they did in production; a row's blocks are cut at its
//! `input_length`, or followed by text of its own up to it. Lines are read one at a time, and a
//! row keeps only its spans, so a million-row trace stays small.

use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;

use super::synthetic::Synthetic;
use super::text::{Span, Text, MAX_SPAN_WORDS};
use super::{kind, strip_position};
use crate::foundation::error::{Result, UserError};

/// Tokens per hash id.
pub const BLOCK_TOKENS: u32 = 512;

/// One row as written (aliases included).
#[derive(Deserialize)]
struct Row {
    timestamp: Option<f64>,
    delay: Option<f64>,
    #[serde(alias = "input_tokens")]
    input_length: Option<u64>,
    #[serde(alias = "output_tokens")]
    output_length: Option<u64>,
    hash_ids: Option<Vec<u64>>,
}

/// The trace's timing: when each row was sent, and where each row came from.
#[derive(Debug, Default)]
pub struct Trace {
    /// Each row's time, ms from the trace's start (0 where unknown).
    pub times_ms: Vec<f64>,
    /// Each row's line number in the file (from 1).
    pub lines: Vec<u32>,
    /// Why the rows cannot be replayed at their times, if they cannot (the first row without a
    /// time, or out of order).
    pub not_replayable: Option<String>,
}

impl Trace {
    /// The rows' send offsets (ns from the first row) at `speed`, for a replay.
    pub fn offsets_ns(&self, speed: f64) -> Vec<u64> {
        let first = self.times_ms.first().copied().unwrap_or(0.0);
        self.times_ms
            .iter()
            .map(|t| ((t - first) * 1e6 / speed).round() as u64)
            .collect()
    }
}

/// Hash ids are integers chosen by the trace's writer, not by an attacker: a multiplicative
/// hash is enough, and several times faster than the default SipHash on millions of ids.
#[derive(Default, Clone, Copy)]
struct BuildIdHasher;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the high bits (which hashbrown uses) depend on every input bit.
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl std::hash::BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher::default()
    }
}

/// A row as kept between reading and building: its lengths, and its blocks as indices of
/// distinct hash ids in order of first appearance.
struct Kept {
    input: u32,
    output: u32,
    /// Where its block indices end in the shared list.
    blocks_end: u32,
}

/// Reads the trace at `name` from `reader`: every row is checked and kept small, then the text
/// is sized for the trace's distinct blocks and the rows become spans.
pub fn parse(reader: impl BufRead, name: &str) -> Result<(Synthetic, Trace)> {
    let mut ids: HashMap<u64, u32, BuildIdHasher> = HashMap::default();
    let mut blocks: Vec<u32> = Vec::new();
    let mut rows: Vec<Kept> = Vec::new();
    let mut trace = Trace::default();
    let mut last_ms: Option<f64> = None;
    let mut reader = reader;
    let mut buf = Vec::new();
    for i in 0.. {
        let at = |msg: String| {
            UserError::input(format!(
                "dataset '{name}' (mooncake): line {}: {msg}",
                i + 1
            ))
        };
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| at(format!("cannot read ({e})")))?
            == 0
        {
            break;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row: Row = serde_json::from_slice(&buf).map_err(|e| {
            let line = String::from_utf8_lossy(&buf);
            at(explain(line.trim_end(), &e))
        })?;
        let (input, output) = lengths(&row).map_err(at)?;
        // Only the blocks the prompt reaches count; ids past its length are ignored.
        let needed = input.div_ceil(BLOCK_TOKENS) as usize;
        for &id in row.hash_ids.iter().flatten().take(needed) {
            let next = ids.len() as u32;
            blocks.push(*ids.entry(id).or_insert(next));
        }
        rows.push(Kept {
            input,
            output,
            blocks_end: blocks.len() as u32,
        });
        let time = row_time(&row, last_ms).map_err(at)?;
        note_time(&mut trace, time, last_ms, i + 1);
        last_ms = time.or(last_ms);
        trace.times_ms.push(time.unwrap_or(0.0));
        trace.lines.push((i + 1) as u32);
    }
    if rows.is_empty() {
        return Err(UserError::input(format!(
            "dataset '{name}' (mooncake): no line holds a row"
        )));
    }
    let longest = rows.iter().map(|r| r.input).max().unwrap_or(1);
    // One allocation per distinct block, and at most one per row for its own text.
    let text = Text::for_allocations(ids.len() as u64 + rows.len() as u64, longest);
    let distinct = ids.len();
    drop(ids);
    Ok((build(text, &rows, &blocks, distinct), trace))
}

/// Records why the rows cannot be replayed, at the first row that shows it.
fn note_time(trace: &mut Trace, time: Option<f64>, last_ms: Option<f64>, line: usize) {
    if trace.not_replayable.is_some() {
        return;
    }
    match time {
        None => {
            trace.not_replayable =
                Some(format!("line {line} has neither \"timestamp\" nor \"delay\""))
        }
        Some(t) if last_ms.is_some_and(|l| t < l) => {
            trace.not_replayable = Some(format!(
                "line {line}: timestamp {t} is before the previous row's {}; rows must be in time order",
                last_ms.unwrap_or(0.0)
            ))
        }
        Some(_) => {}
    }
}

/// The rows as spans: one shared 512-word span per distinct block (allocated where it first
/// appears), cut at the row's length, then text of its own up to it.
fn build(text: Text, rows: &[Kept], blocks: &[u32], distinct: usize) -> Synthetic {
    const NONE: u32 = u32::MAX;
    let mut set = Synthetic::new(text);
    let mut starts = vec![NONE; distinct];
    let mut spans = Vec::new();
    let mut from = 0;
    for r in rows {
        spans.clear();
        let mut left = r.input;
        for &b in &blocks[from..r.blocks_end as usize] {
            if starts[b as usize] == NONE {
                starts[b as usize] = set.text.allocate(BLOCK_TOKENS).start;
            }
            let words = left.min(BLOCK_TOKENS);
            spans.push(Span {
                start: starts[b as usize],
                words,
            });
            left -= words;
        }
        from = r.blocks_end as usize;
        // The rest is the row's own text, which each prompt sending the row gets anew.
        set.push_own(&spans, left, r.output);
    }
    set
}

/// The row's prompt and answer lengths, checked.
fn lengths(row: &Row) -> std::result::Result<(u32, u32), String> {
    let Some(input) = row.input_length else {
        return Err("expected \"input_length\" (or \"input_tokens\"), the prompt's tokens".into());
    };
    let Some(output) = row.output_length else {
        return Err(
            "expected \"output_length\" (or \"output_tokens\"), the answer's tokens".into(),
        );
    };
    if !(1..=u64::from(MAX_SPAN_WORDS)).contains(&input) {
        return Err(format!(
            "\"input_length\" {input}: expected 1 to {MAX_SPAN_WORDS} tokens"
        ));
    }
    if !(1..=u64::from(u32::MAX)).contains(&output) {
        return Err(format!(
            "\"output_length\" {output}: expected a whole number of tokens from 1"
        ));
    }
    Ok((input as u32, output as u32))
}

/// The row's time in ms: its `timestamp`, or the previous row's time plus its `delay`.
fn row_time(row: &Row, last_ms: Option<f64>) -> std::result::Result<Option<f64>, String> {
    for (field, v) in [("timestamp", row.timestamp), ("delay", row.delay)] {
        if v.is_some_and(|v| !(v.is_finite() && v >= 0.0)) {
            return Err(format!(
                "\"{field}\" {}: expected milliseconds from 0",
                v.unwrap_or_default()
            ));
        }
    }
    Ok(row
        .timestamp
        .or_else(|| row.delay.map(|d| last_ms.unwrap_or(0.0) + d)))
}

/// What is wrong with a line the typed reader refused, naming the field.
fn explain(line: &str, e: &serde_json::Error) -> String {
    let v: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return format!(
                "invalid JSON at column {}: {}",
                e.column(),
                strip_position(&e.to_string())
            )
        }
    };
    let Value::Object(obj) = &v else {
        return format!("expected an object, found {}", kind(&v));
    };
    for field in ["timestamp", "delay"] {
        if let Some(x) = obj.get(field).filter(|x| !x.is_number()) {
            return format!(
                "\"{field}\" must be a number of milliseconds, found {}",
                kind(x)
            );
        }
    }
    for field in [
        "input_length",
        "input_tokens",
        "output_length",
        "output_tokens",
    ] {
        if let Some(x) = obj.get(field).filter(|x| x.as_u64().is_none()) {
            return format!("\"{field}\" must be a whole number of tokens, found {x}");
        }
    }
    match obj.get("hash_ids") {
        Some(Value::Array(ids)) => {
            if let Some(j) = ids.iter().position(|x| x.as_u64().is_none()) {
                return format!(
                    "\"hash_ids\"[{j}] must be a whole number from 0, found {}",
                    ids[j]
                );
            }
        }
        Some(x) => return format!("\"hash_ids\" must be an array, found {}", kind(x)),
        None => {}
    }
    strip_position(&e.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> std::result::Result<(Synthetic, Trace), String> {
        parse(text.as_bytes(), "t.jsonl").map_err(|e| e.message)
    }

    #[test]
    fn shared_hash_ids_share_a_prefix_and_lengths_are_kept() {
        let (set, trace) = read(concat!(
            "{\"timestamp\": 0, \"input_length\": 1100, \"output_length\": 7, \"hash_ids\": [1, 2, 3]}\n",
            "\n",
            "{\"timestamp\": 50, \"input_tokens\": 700, \"output_tokens\": 9, \"hash_ids\": [1, 4]}\n",
            "{\"delay\": 25, \"input_length\": 20, \"output_length\": 1}\n",
        ))
        .unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.prompt_words(0), 1100);
        assert_eq!(set.prompt_words(1), 700);
        assert_eq!((set.row(0).2, set.row(1).2, set.row(2).2), (7, 9, 1));
        let (a, b) = (set.prompt(0), set.prompt(1));
        let shared = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let block: String = a.split_inclusive(' ').take(513).collect();
        assert!(shared >= block.len() - 1, "the first block is shared");
        assert!(shared < a.len().min(b.len()));
        assert_eq!(trace.times_ms, vec![0.0, 50.0, 75.0]);
        assert_eq!(trace.lines, vec![1, 3, 4]);
        assert!(trace.not_replayable.is_none());
        assert_eq!(trace.offsets_ns(2.0), vec![0, 25_000_000, 37_500_000]);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = read("{\"input_length\": 5, \"output_length\": 1}\n{\"input_length\": \"x\", \"output_length\": 1}").unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("\"input_length\""),
            "{e}"
        );
        let e = read("{\"input_length\": 5}").unwrap_err();
        assert!(e.contains("line 1") && e.contains("output_length"), "{e}");
        let e =
            read("{\"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1, -2]}").unwrap_err();
        assert!(e.contains("\"hash_ids\"[1]"), "{e}");
        let e = read("[1]").unwrap_err();
        assert!(e.contains("expected an object"), "{e}");
        let e = read("{\"input_length\": 0, \"output_length\": 1}").unwrap_err();
        assert!(e.contains("expected 1 to"), "{e}");
        assert!(read("\n\n").unwrap_err().contains("no line"));
        let (_, t) = read("{\"timestamp\": 9, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 3, \"input_length\": 5, \"output_length\": 1}").unwrap();
        assert!(t.not_replayable.unwrap().contains("line 2"));
        let (_, t) = read("{\"input_length\": 5, \"output_length\": 1}").unwrap();
        assert!(t.not_replayable.unwrap().contains("neither"));
    }
}
