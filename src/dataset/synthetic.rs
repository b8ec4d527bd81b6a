//! Synthetic rows: prompts made of [`Span`]s of the shared [`Text`], each with its answer length.
//! The `random` and `mooncake` sources build them; `prepared` renders each row as a small head
//! and tail around views of the text.

use super::text::{Span, Text};

/// Rows of spans over one text, stored back to back (a million rows need no million vectors).
#[derive(Debug)]
pub struct Synthetic {
    pub text: Text,
    spans: Vec<Span>,
    /// Where each row's spans end in `spans`.
    ends: Vec<u32>,
    /// Each row's answer length (its request's `max_tokens`).
    max_tokens: Vec<u32>,
}

impl Synthetic {
    pub fn new(text: Text) -> Self {
        Self {
            text,
            spans: Vec::new(),
            ends: Vec::new(),
            max_tokens: Vec::new(),
        }
    }

    /// Appends a row: its prompt's spans, in order, and its answer length.
    pub fn push(&mut self, spans: &[Span], max_tokens: u32) {
        self.spans.extend_from_slice(spans);
        self.ends.push(self.spans.len() as u32);
        self.max_tokens.push(max_tokens);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`: its spans and its answer length.
    pub fn row(&self, i: usize) -> (&[Span], u32) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (
            &self.spans[start..self.ends[i] as usize],
            self.max_tokens[i],
        )
    }

    /// Row `i`'s prompt as text (for tests and checks).
    pub fn prompt(&self, i: usize) -> String {
        self.row(i).0.iter().map(|&s| self.text.text(s)).collect()
    }

    /// Row `i`'s prompt length in words (≈ tokens).
    pub fn prompt_words(&self, i: usize) -> u64 {
        self.row(i).0.iter().map(|s| u64::from(s.words)).sum()
    }
}
