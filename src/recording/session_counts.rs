//! Sessions as a recorder counts them: how many started, ended and why, and each turn's own
//! latency histograms and prompt-cache counts (turn 1 is cold; later turns re-send a history the
//! server may have cached, so their figures are kept apart).
//!
//! Data flow: `engine::request` hands each turn's outcome into its core's
//! `recorder::Recorder::turns` → merged with the recorders at the level's end → `per_turn`
//! builds the level's `per_turn` and `sessions` figures; `stats::histograms_file` carries the histograms.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recording::outcome::{CacheCounts, Success};

/// Turns 1 to 7 have a bucket each; turn 8 and every later one share the last (`≥8`).
pub const TURN_BUCKETS: usize = 8;

/// The bucket of turn `turn` (from 1).
pub fn bucket(turn: u32) -> usize {
    (turn.max(1) as usize).min(TURN_BUCKETS) - 1
}

/// A bucket's label in the results: `1` … `7`, then `≥8`.
pub fn label(bucket: usize) -> String {
    if bucket + 1 >= TURN_BUCKETS {
        format!("≥{TURN_BUCKETS}")
    } else {
        (bucket + 1).to_string()
    }
}

/// How a level's sessions went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionCounts {
    /// Sessions whose first turn was sent.
    pub started: u64,
    /// Sessions whose every turn succeeded.
    pub completed: u64,
    /// Sessions a failed turn ended (the rest of their turns were never sent).
    pub ended_by_failure: u64,
    /// Sessions ended because an answer passed the per-turn cap on kept answer bytes.
    pub ended_by_answer_cap: u64,
    /// Sessions a turn abandoned by `--cancel-rate` ended.
    pub ended_by_cancel: u64,
    /// Every turn sent, first turns included.
    pub turns_sent: u64,
}

/// How one session ended, as its first turn's task reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Completed,
    Failed,
    /// A turn was abandoned (`--cancel-rate`).
    Cancelled,
    AnswerCap,
    /// Ctrl-C: its remaining turns were never sent.
    Stopped,
}

impl SessionCounts {
    /// One session ended.
    pub fn ended(&mut self, how: SessionEnd) {
        match how {
            SessionEnd::Completed => self.completed += 1,
            SessionEnd::Failed => self.ended_by_failure += 1,
            SessionEnd::Cancelled => self.ended_by_cancel += 1,
            SessionEnd::AnswerCap => self.ended_by_answer_cap += 1,
            SessionEnd::Stopped => {}
        }
    }

    pub fn merge(&mut self, o: &SessionCounts) {
        self.started += o.started;
        self.completed += o.completed;
        self.ended_by_failure += o.ended_by_failure;
        self.ended_by_answer_cap += o.ended_by_answer_cap;
        self.ended_by_cancel += o.ended_by_cancel;
        self.turns_sent += o.turns_sent;
    }
}

/// One turn bucket: its successes' latencies and what they reported of their prompts.
#[derive(Debug, Clone)]
pub struct TurnBucket {
    pub ttft_us: Histogram<u64>,
    pub e2e_us: Histogram<u64>,
    /// Turns sent, and of them the successes.
    pub sent: u64,
    pub succeeded: u64,
    /// Prompt tokens reported by the successes (and how many reported them).
    pub prompt_tokens: u64,
    pub prompt_reported: u64,
    pub cache: CacheCounts,
}

/// Latencies up to an hour, µs, 3 significant figures (as the level's own).
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

impl Default for TurnBucket {
    fn default() -> Self {
        Self {
            ttft_us: latency_histogram(),
            e2e_us: latency_histogram(),
            sent: 0,
            succeeded: 0,
            prompt_tokens: 0,
            prompt_reported: 0,
            cache: CacheCounts::default(),
        }
    }
}

impl TurnBucket {
    fn merge(&mut self, o: &TurnBucket) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.ttft_us.add(&o.ttft_us);
        let _ = self.e2e_us.add(&o.e2e_us);
        self.sent += o.sent;
        self.succeeded += o.succeeded;
        self.prompt_tokens += o.prompt_tokens;
        self.prompt_reported += o.prompt_reported;
        self.cache.merge(&o.cache);
    }
}

/// A recorder's sessions: the counts and one bucket per turn (allocated only when a run sends
/// sessions: ~0.4 MB per bucket).
#[derive(Debug, Clone)]
pub struct Turns {
    pub sessions: SessionCounts,
    pub buckets: Vec<TurnBucket>,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            sessions: SessionCounts::default(),
            buckets: (0..TURN_BUCKETS).map(|_| TurnBucket::default()).collect(),
        }
    }
}

impl Turns {
    /// Turn `turn` was sent.
    pub fn sent(&mut self, turn: u32) {
        self.sessions.turns_sent += 1;
        if turn == 1 {
            self.sessions.started += 1;
        }
        self.buckets[bucket(turn)].sent += 1;
    }

    /// Turn `turn` succeeded.
    pub fn success(&mut self, turn: u32, s: &Success) {
        let b = &mut self.buckets[bucket(turn)];
        b.succeeded += 1;
        if let Some(t) = s.ttft_ns {
            b.ttft_us.saturating_record(t / 1000);
        }
        b.e2e_us.saturating_record(s.e2e_ns / 1000);
        if let Some(p) = s.prompt_tokens {
            b.prompt_tokens += p;
            b.prompt_reported += 1;
        }
        if let Some(c) = s.cached_tokens {
            b.cache.record(c, s.prompt_tokens);
        }
    }

    pub fn merge(&mut self, o: &Turns) {
        self.sessions.merge(&o.sessions);
        for (a, b) in self.buckets.iter_mut().zip(&o.buckets) {
            a.merge(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_past_the_seventh_share_the_last_bucket() {
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(7), 6);
        assert_eq!(bucket(8), 7);
        assert_eq!(bucket(40), 7);
        assert_eq!(label(0), "1");
        assert_eq!(label(7), "≥8");
    }

    #[test]
    fn a_turn_counts_in_its_bucket_and_merges() {
        let mut a = Turns::default();
        a.sent(1);
        a.sent(2);
        let s = Success {
            ttft_ns: Some(2_000_000),
            e2e_ns: 5_000_000,
            prompt_tokens: Some(100),
            cached_tokens: Some(80),
            output_tokens: 4,
            source: crate::recording::outcome::TokenSource::Usage,
            token_reads: 4,
            ttfb_ns: 1_000_000,
            decode_ns: 3_000_000,
            done_ns: 9,
            reasoning: Default::default(),
        };
        a.success(2, &s);
        let mut b = Turns::default();
        b.sent(1);
        b.merge(&a);
        assert_eq!(b.sessions.started, 2);
        assert_eq!(b.sessions.turns_sent, 3);
        assert_eq!(b.buckets[1].succeeded, 1);
        assert_eq!(b.buckets[1].cache.hits, 1);
        assert_eq!(b.buckets[1].ttft_us.max(), 2000);
    }
}
