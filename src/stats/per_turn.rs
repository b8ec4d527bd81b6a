//! A level's sessions as its results report them: how many started, completed or ended early,
//! and per turn (1, 2, …, `≥8`) the requests, TTFT and E2E percentiles, prompt tokens and what
//! the server's prefix cache gave them — turn 1 is cold, later turns re-send a history.
//!
//! Data flow: the merged `recorder::Recorder`'s `turns` (`session_counts::Turns`) → [`build`] →
//! `stats::LevelStats::sessions` (with how much faster later turns start, for the summary) and
//! `per_turn`.

use serde::Serialize;

use crate::recording::session_counts::{label, SessionCounts, Turns};
use crate::stats::percentiles::{round6, Percentiles};

/// A level's sessions.
#[derive(Debug, Clone, Serialize)]
pub struct SessionStats {
    /// The planned rate of session starts: `qps_target` ÷ `--session-turns`.
    pub sessions_per_sec_target: f64,
    pub sessions_started: u64,
    pub sessions_completed: u64,
    /// Ended by a failed turn (its later turns never sent).
    pub sessions_ended_by_failure: u64,
    /// Ended because an answer passed the per-turn cap on kept answer bytes (64 KiB).
    pub sessions_ended_by_answer_cap: u64,
    /// Ended by an abandoned turn (`--cancel-rate`).
    pub sessions_ended_by_cancel: u64,
    /// Every turn sent, first turns included (`total_requests` counts the same).
    pub turns_sent: u64,
    /// TTFT p50 of the first turns, and the median of the later turns' p50s, seconds; the first
    /// ÷ the second (how many times faster later turns start, where both are known).
    pub first_turn_ttft_p50_s: Option<f64>,
    pub later_turns_ttft_p50_s: Option<f64>,
    pub later_turns_ttft_speedup: Option<f64>,
}

/// One turn bucket's figures.
#[derive(Debug, Clone, Serialize)]
pub struct TurnStats {
    /// `1` … `7`, then `≥8` for turn 8 and every later one.
    pub turn: String,
    pub requests: u64,
    pub successful_requests: u64,
    pub ttft: Percentiles,
    pub e2e_latency: Percentiles,
    /// Mean prompt tokens of its successes that reported them (null: none did).
    pub prompt_tokens: Option<f64>,
    /// Mean cached prompt tokens of its successes that reported them (null: none did).
    pub cached_prompt_tokens: Option<f64>,
    /// Cached ÷ prompt tokens of those (null: none reported cached tokens).
    pub prompt_cache_hit_share: Option<f64>,
    /// Successes with at least half their prompt from the cache.
    pub cache_hit_requests: u64,
}

fn counts(s: &SessionCounts, target: f64) -> SessionStats {
    SessionStats {
        sessions_per_sec_target: round6(target),
        sessions_started: s.started,
        sessions_completed: s.completed,
        sessions_ended_by_failure: s.ended_by_failure,
        sessions_ended_by_answer_cap: s.ended_by_answer_cap,
        sessions_ended_by_cancel: s.ended_by_cancel,
        turns_sent: s.turns_sent,
        first_turn_ttft_p50_s: None,
        later_turns_ttft_p50_s: None,
        later_turns_ttft_speedup: None,
    }
}

/// The level's sessions and its turns with any request (`session_rate`: the planned starts per
/// second).
pub fn build(t: &Turns, session_rate: f64, pcts: &[f64]) -> (SessionStats, Vec<TurnStats>) {
    let per_turn = t
        .buckets
        .iter()
        .enumerate()
        .filter(|(_, b)| b.sent > 0)
        .map(|(i, b)| {
            let mean = |sum: u64, n: u64| (n > 0).then(|| round6(sum as f64 / n as f64));
            TurnStats {
                turn: label(i),
                requests: b.sent,
                successful_requests: b.succeeded,
                ttft: Percentiles::from_hist(&b.ttft_us, pcts, 1e-6),
                e2e_latency: Percentiles::from_hist(&b.e2e_us, pcts, 1e-6),
                prompt_tokens: mean(b.prompt_tokens, b.prompt_reported),
                cached_prompt_tokens: mean(b.cache.cached_tokens, b.cache.reported),
                prompt_cache_hit_share: b.cache.hit_share().map(round6),
                cache_hit_requests: b.cache.hits,
            }
        })
        .collect::<Vec<_>>();
    let mut sessions = counts(&t.sessions, session_rate);
    sessions.first_turn_ttft_p50_s = per_turn
        .first()
        .filter(|t| t.turn == "1")
        .and_then(|t| t.ttft.get("p50"));
    sessions.later_turns_ttft_p50_s = later_median(&per_turn);
    sessions.later_turns_ttft_speedup = match (
        sessions.first_turn_ttft_p50_s,
        sessions.later_turns_ttft_p50_s,
    ) {
        (Some(first), Some(later)) if later > 0.0 => Some((first / later * 100.0).round() / 100.0),
        _ => None,
    };
    (sessions, per_turn)
}

/// The median of the later turns' TTFT p50s (turn 2 on), where any is known.
fn later_median(per_turn: &[TurnStats]) -> Option<f64> {
    let mut later: Vec<f64> = per_turn
        .iter()
        .filter(|t| t.turn != "1")
        .filter_map(|t| t.ttft.get("p50"))
        .collect();
    later.sort_by(f64::total_cmp);
    later.get(later.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::outcome::{Success, TokenSource};

    fn success(ttft_ms: u64, prompt: u64, cached: u64) -> Success {
        Success {
            ttft_ns: Some(ttft_ms * 1_000_000),
            e2e_ns: ttft_ms * 2_000_000,
            output_tokens: 4,
            source: TokenSource::Usage,
            prompt_tokens: Some(prompt),
            cached_tokens: Some(cached),
            token_reads: 4,
            ttfb_ns: 0,
            decode_ns: 0,
            done_ns: 0,
            reasoning: Default::default(),
        }
    }

    #[test]
    fn each_turn_gets_its_figures_and_the_speedup_compares_them() {
        let mut t = Turns::default();
        for _ in 0..4 {
            t.sent(1);
            t.success(1, &success(400, 100, 0));
            t.sent(2);
            t.success(2, &success(100, 300, 240));
        }
        t.sent(9);
        t.sessions.completed = 4;
        let (s, per_turn) = build(&t, 0.5, &[50.0]);
        assert_eq!((s.sessions_started, s.turns_sent), (4, 9));
        assert_eq!(per_turn.len(), 3);
        assert_eq!(per_turn[1].turn, "2");
        assert_eq!(per_turn[1].prompt_cache_hit_share, Some(0.8));
        assert_eq!(per_turn[1].cached_prompt_tokens, Some(240.0));
        assert_eq!(per_turn[2].turn, "≥8");
        assert_eq!(per_turn[2].successful_requests, 0);
        assert_eq!(per_turn[0].cache_hit_requests, 0);
        let speedup = s.later_turns_ttft_speedup.unwrap();
        assert!((3.9..4.1).contains(&speedup), "{speedup}");
    }
}
