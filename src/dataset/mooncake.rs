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
use crate::error::{Result, UserError};

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

/// Reads the trace at `name` from `reader`.
pub fn parse(reader: impl BufRead, name: &str) -> Result<(Synthetic, Trace)> {
    let mut set = Synthetic::new(Text::standard());
    let mut blocks: HashMap<u64, u32> = HashMap::new();
    let mut trace = Trace::default();
    let mut spans = Vec::new();
    let mut last_ms: Option<f64> = None;
    for (i, line) in reader.lines().enumerate() {
        let at = |msg: String| {
            UserError::input(format!(
                "dataset '{name}' (mooncake): line {}: {msg}",
                i + 1
            ))
        };
        let line = line.map_err(|e| at(format!("cannot read ({e})")))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Row = serde_json::from_str(&line).map_err(|e| at(explain(&line, &e)))?;
        let (input, output) = lengths(&row).map_err(at)?;
        spans.clear();
        row_spans(&mut set.text, &mut blocks, &row, input, &mut spans);
        set.push(&spans, output);
        let time = row_time(&row, last_ms).map_err(at)?;
        match (time, &trace.not_replayable) {
            (_, Some(_)) => {}
            (None, None) => {
                trace.not_replayable = Some(format!(
                    "line {} has neither \"timestamp\" nor \"delay\"",
                    i + 1
                ))
            }
            (Some(t), None) if last_ms.is_some_and(|l| t < l) => {
                trace.not_replayable = Some(format!(
                    "line {}: timestamp {t} is before the previous row's {}; rows must be in time order",
                    i + 1,
                    last_ms.unwrap_or(0.0)
                ))
            }
            (Some(_), None) => {}
        }
        last_ms = time.or(last_ms);
        trace.times_ms.push(time.unwrap_or(0.0));
        trace.lines.push((i + 1) as u32);
    }
    if set.is_empty() {
        return Err(UserError::input(format!(
            "dataset '{name}' (mooncake): no line holds a row"
        )));
    }
    Ok((set, trace))
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

/// The row's prompt: one shared block per hash id, cut at `input` tokens, then text of its own
/// up to `input`.
fn row_spans(
    text: &mut Text,
    blocks: &mut HashMap<u64, u32>,
    row: &Row,
    input: u32,
    out: &mut Vec<Span>,
) {
    let mut left = input;
    for &id in row.hash_ids.as_deref().unwrap_or_default() {
        if left == 0 {
            break;
        }
        let start = *blocks
            .entry(id)
            .or_insert_with(|| text.allocate(BLOCK_TOKENS).start);
        let words = left.min(BLOCK_TOKENS);
        out.push(Span { start, words });
        left -= words;
    }
    if left > 0 {
        out.push(text.allocate(left));
    }
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
        assert_eq!((set.row(0).1, set.row(1).1, set.row(2).1), (7, 9, 1));
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
