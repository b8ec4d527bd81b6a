//! The per-second timeline of a level: for each second of its measured window, the requests
//! sent, completed and failed (by category), the output tokens, the prompt tokens and those of
//! them the server took from its prefix cache, and the TTFT of the requests that completed in it.
//!
//! Data flow: each core's `recorder::Recorder` holds a [`Timeline`] and counts every send and
//! every outcome into the second it happened in (a plain vector on the core, no sharing); the
//! cores' timelines are merged with their recorders when the level ends, and `bench` writes the
//! rows ([`Timeline::rows`]) to `timeline.jsonl` after the level. The rows are counted at the
//! same calls as the level's totals, so they add up to them exactly.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recording::outcome::{ErrorKind, Success};

/// The most seconds a timeline holds: events later than this count in its last second.
const MAX_SECONDS: usize = 1_000_000;

/// TTFT buckets: 1 µs to an hour, 2 significant figures (a second's p50 and p99, not more).
fn ttft_histogram() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("static histogram bounds are valid")
}

/// What one second counts, summed the same way wherever seconds are added: the cores' seconds
/// when a level ends (`K` = [`ErrorKind`]), and the shards' rows of `timeline.jsonl` when runs are
/// merged (`K` = its text). One type, so that a new count is added and summed in one place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondCounts<K: Ord> {
    pub sent: u64,
    pub ok: u64,
    /// Failures by category.
    pub failed: BTreeMap<K, u64>,
    /// Requests abandoned in this second (`--cancel-rate`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cancelled: u64,
    pub output_tokens: u64,
    /// `usage.prompt_tokens` of the successes completed in this second.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Of those, the tokens the server took from its prefix cache (null: no success of the
    /// second reported `cached_tokens`).
    #[serde(default)]
    pub cached_prompt_tokens: Option<u64>,
}

impl<K: Ord> Default for SecondCounts<K> {
    fn default() -> Self {
        Self {
            sent: 0,
            ok: 0,
            failed: BTreeMap::new(),
            cancelled: 0,
            output_tokens: 0,
            prompt_tokens: 0,
            cached_prompt_tokens: None,
        }
    }
}

impl<K: Ord + Clone> SecondCounts<K> {
    /// Adds another second's counts into this one.
    pub fn add(&mut self, other: &SecondCounts<K>) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.cancelled += other.cancelled;
        self.output_tokens += other.output_tokens;
        self.prompt_tokens += other.prompt_tokens;
        if let Some(c) = other.cached_prompt_tokens {
            *self.cached_prompt_tokens.get_or_insert(0) += c;
        }
        for (k, n) in &other.failed {
            self.count_failed(k, *n);
        }
    }

    /// `n` more failures of category `kind` (its key cloned only the first time).
    fn count_failed(&mut self, kind: &K, n: u64) {
        match self.failed.get_mut(kind) {
            Some(m) => *m += n,
            None => {
                self.failed.insert(kind.clone(), n);
            }
        }
    }

    /// Requests that ended in this second: ok, failed or abandoned.
    fn ended(&self) -> u64 {
        self.ok + self.failed.values().sum::<u64>() + self.cancelled
    }
}

impl SecondCounts<ErrorKind> {
    /// The same counts with each error category as its text, as `timeline.jsonl` writes them.
    fn by_text(&self) -> SecondCounts<String> {
        SecondCounts {
            sent: self.sent,
            ok: self.ok,
            failed: self
                .failed
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            cancelled: self.cancelled,
            output_tokens: self.output_tokens,
            prompt_tokens: self.prompt_tokens,
            cached_prompt_tokens: self.cached_prompt_tokens,
        }
    }
}

/// One second of a level, on a core.
#[derive(Debug, Clone, Default)]
struct Second {
    counts: SecondCounts<ErrorKind>,
    /// TTFT (µs) of the successes completed in this second; allocated at the first one.
    ttft_us: Option<Box<Histogram<u32>>>,
}

/// A level's seconds, counted from the start of its measured window.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    start_ns: u64,
    seconds: Vec<Second>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One line of `timeline.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// The level, from 1.
    pub level: usize,
    /// The second since the start of the level's measured window.
    pub t_s: usize,
    #[serde(flatten)]
    pub counts: SecondCounts<String>,
    /// Requests sent and not yet ended at the end of this second.
    pub in_flight: u64,
    /// TTFT of the successes completed in this second, seconds (null without one).
    pub ttft_p50: Option<f64>,
    pub ttft_p99: Option<f64>,
    /// With `--server-metrics`: the second's last value of each series (counters as rates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server: BTreeMap<String, f64>,
}

impl Timeline {
    /// A timeline whose second 0 starts at `start_ns` (monotonic).
    pub fn new(start_ns: u64) -> Self {
        Self {
            start_ns,
            seconds: Vec::new(),
        }
    }

    /// The second `t_ns` falls in (an event before the start counts in second 0).
    fn at(&mut self, t_ns: u64) -> &mut Second {
        let i = ((t_ns.saturating_sub(self.start_ns)) / 1_000_000_000) as usize;
        let i = i.min(MAX_SECONDS - 1);
        if i >= self.seconds.len() {
            self.seconds.resize_with(i + 1, Second::default);
        }
        &mut self.seconds[i]
    }

    /// A request was sent at `t_ns`.
    pub fn sent(&mut self, t_ns: u64) {
        self.at(t_ns).counts.sent += 1;
    }

    /// A request succeeded (at its `done_ns`), with its tokens and TTFT.
    pub fn ok(&mut self, ok: &Success) {
        let s = self.at(ok.done_ns);
        let c = &mut s.counts;
        c.ok += 1;
        c.output_tokens += ok.output_tokens;
        c.prompt_tokens += ok.prompt_tokens.unwrap_or(0);
        if let Some(cached) = ok.cached_tokens {
            *c.cached_prompt_tokens.get_or_insert(0) += cached;
        }
        if let Some(ttft) = ok.ttft_ns {
            s.ttft_us
                .get_or_insert_with(|| Box::new(ttft_histogram()))
                .saturating_record(ttft / 1000);
        }
    }

    /// A request was abandoned at `t_ns`.
    pub fn cancelled(&mut self, t_ns: u64) {
        self.at(t_ns).counts.cancelled += 1;
    }

    /// A request failed at `t_ns` with `kind`.
    pub fn failed(&mut self, t_ns: u64, kind: &ErrorKind) {
        self.at(t_ns).counts.count_failed(kind, 1);
    }

    /// Adds another core's timeline (with the same start).
    pub fn merge(&mut self, other: &Timeline) {
        if other.seconds.len() > self.seconds.len() {
            self.seconds
                .resize_with(other.seconds.len(), Second::default);
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            mine.counts.add(&theirs.counts);
            if let Some(h) = &theirs.ttft_us {
                let _ = mine
                    .ttft_us
                    .get_or_insert_with(|| Box::new(ttft_histogram()))
                    .add(h.as_ref());
            }
        }
    }

    /// The rows of level `level` (from 1), one per second up to the last event.
    pub fn rows(&self, level: usize) -> Vec<Row> {
        let mut in_flight: i64 = 0;
        self.seconds
            .iter()
            .enumerate()
            .map(|(t_s, s)| {
                let c = &s.counts;
                in_flight += c.sent as i64 - c.ended() as i64;
                let q = |p: f64| {
                    s.ttft_us
                        .as_ref()
                        .map(|h| h.value_at_quantile(p) as f64 / 1e6)
                };
                Row {
                    level,
                    t_s,
                    counts: c.by_text(),
                    in_flight: in_flight.max(0) as u64,
                    ttft_p50: q(0.5),
                    ttft_p99: q(0.99),
                    server: Default::default(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn events_count_in_their_second_and_rows_add_up() {
        let mut a = Timeline::new(10 * S);
        let mut b = Timeline::new(10 * S);
        a.sent(10 * S + 1);
        a.sent(10 * S + 2);
        b.sent(11 * S + 5);
        let ok = |done_ns: u64, cached: Option<u64>| Success {
            ttft_ns: Some(20_000_000),
            e2e_ns: 0,
            output_tokens: 7,
            source: crate::recording::outcome::TokenSource::Usage,
            prompt_tokens: Some(100),
            cached_tokens: cached,
            token_reads: 1,
            ttfb_ns: 0,
            decode_ns: 0,
            done_ns,
            reasoning: Default::default(),
        };
        a.ok(&ok(11 * S, None));
        b.ok(&ok(11 * S + 3, Some(64)));
        b.failed(12 * S + 1, &ErrorKind::Http(503));
        b.failed(12 * S + 2, &ErrorKind::Http(503));
        // Before the start: second 0.
        b.sent(9 * S);
        a.merge(&b);
        let rows = a.rows(2);
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows.iter().map(|r| r.counts.sent).collect::<Vec<_>>(),
            vec![3, 1, 0]
        );
        assert_eq!(
            rows.iter().map(|r| r.in_flight).collect::<Vec<_>>(),
            vec![3, 2, 0]
        );
        assert_eq!(rows[1].counts.ok, 2);
        assert_eq!(rows[1].counts.output_tokens, 14);
        assert_eq!(
            (
                rows[1].counts.prompt_tokens,
                rows[1].counts.cached_prompt_tokens
            ),
            (200, Some(64))
        );
        assert_eq!(rows[0].counts.cached_prompt_tokens, None);
        assert!((rows[1].ttft_p50.unwrap() - 0.02).abs() < 0.001);
        assert_eq!(rows[0].ttft_p50, None);
        assert_eq!(rows[2].counts.failed["HTTP 503"], 2);
        assert_eq!(rows[2].level, 2);
    }
}
