//! How a run's sessions go (`--session-turns`): the [`SessionPlan`] every core shares, and the
//! draws it makes from a session's id (its first prompt's number) alone — its turn count, each
//! think time and each later user message — so that every core and every shard draws the same.
//! Abandoned requests (`cancel`) draw the same way ([`draw`], [`unit`]).

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::cli::ThinkTimeDist;
use crate::workload::dataset::vocabulary::WORDS;

/// Answer bytes kept per turn: a longer answer ends its session (counted), so that an endpoint
/// that never stops cannot grow a history without bound.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// The most turns a session may be drawn to have.
pub const MAX_TURNS: u32 = 1000;

/// How a run's sessions go: the same on every core (and in `metadata.json`'s `sessions`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionPlan {
    /// `--session-turns`: the mean number of turns.
    pub turns: f64,
    /// `--session-turns-stddev`: turns are drawn from a normal distribution, rounded, at least 1.
    pub turns_stddev: f64,
    /// `--turn-input-len`: words (≈ tokens) of each later turn's new user message.
    pub turn_input_len: u32,
    /// `--think-time-ms` and its distribution.
    #[serde(rename = "think_time_ms")]
    pub think_ms: f64,
    #[serde(rename = "think_time_dist")]
    pub think_dist: ThinkTimeDist,
    #[serde(skip)]
    pub seed: u64,
    /// Sessions replayed from a dataset's conversations: each row's later user messages
    /// (`dataset::conversations`), in place of drawn ones; a session's row is its id's
    /// ((id − 1) mod rows, as `prepared::unique` maps prompts to rows).
    #[serde(skip)]
    pub scripts: Option<std::sync::Arc<Vec<Vec<String>>>>,
    /// The body's key whose array holds the turns: `messages` (chat, Messages) or `input`
    /// (Responses).
    #[serde(skip)]
    pub history_key: &'static str,
}

impl SessionPlan {
    /// A generator for one draw about session `id` (its first prompt's number); `what` keeps
    /// the turn count, the think times and the texts apart.
    fn rng(&self, id: u64, what: u64) -> SplitMix64 {
        draw(self.seed ^ what.wrapping_mul(0xC2B2_AE3D_27D4_EB4F), id)
    }

    /// Session `id`'s later user messages, when it replays a dataset's conversation.
    fn script(&self, id: u64) -> Option<&[String]> {
        let scripts = self.scripts.as_deref()?;
        let row = id.saturating_sub(1) % scripts.len().max(1) as u64;
        scripts.get(row as usize).map(Vec::as_slice)
    }

    /// How many turns session `id` has: its conversation's, or drawn.
    pub fn turns_of(&self, id: u64) -> u32 {
        if let Some(script) = self.script(id) {
            return 1 + script.len() as u32;
        }
        let mean = self.turns;
        let drawn = if self.turns_stddev > 0.0 {
            // Box–Muller: one standard normal from two uniforms.
            let mut r = self.rng(id, 1);
            let (u1, u2) = (unit(&mut r).max(f64::MIN_POSITIVE), unit(&mut r));
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            mean + self.turns_stddev * z
        } else {
            mean
        };
        (drawn.round().max(1.0) as u32).min(MAX_TURNS)
    }

    /// The think time before turn `turn` (from 2) of session `id`, ns.
    pub fn think_ns(&self, id: u64, turn: u32) -> u64 {
        let ms = match self.think_dist {
            ThinkTimeDist::Constant => self.think_ms,
            ThinkTimeDist::Exponential => {
                let u = unit(&mut self.rng(id, 2 + u64::from(turn) * 4));
                -(1.0 - u).max(f64::MIN_POSITIVE).ln() * self.think_ms
            }
        };
        (ms * 1e6).round() as u64
    }

    /// Turn `turn`'s new user message of session `id`: its conversation's, or `--turn-input-len`
    /// words of the single-token vocabulary (its turn number first, so that no two turns of a
    /// session ask the same).
    pub fn user_text(&self, id: u64, turn: u32) -> String {
        if let Some(script) = self.script(id) {
            let i = (turn as usize).saturating_sub(2);
            return script.get(i).cloned().unwrap_or_default();
        }
        let mut r = self.rng(id, 3 + u64::from(turn) * 4);
        let mut text = format!("turn {turn}:");
        for _ in 2..self.turn_input_len.max(2) {
            text.push(' ');
            text.push_str(WORDS[(r.next_u64() as usize) & (WORDS.len() - 1)]);
        }
        text
    }
}

/// A generator for one seeded draw about `id` (a prompt's number): the same in every core and
/// shard. Sessions and abandoned requests (`cancel`) each mix their own purposes into `seed`.
pub(crate) fn draw(seed: u64, id: u64) -> SplitMix64 {
    SplitMix64::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A uniform draw in [0, 1).
pub(crate) fn unit(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> SessionPlan {
        SessionPlan {
            turns: 4.0,
            turns_stddev: 0.0,
            turn_input_len: 8,
            think_ms: 500.0,
            think_dist: ThinkTimeDist::Constant,
            seed: 7,
            scripts: None,
            history_key: "messages",
        }
    }

    #[test]
    fn a_replayed_conversation_sets_its_turns_and_messages() {
        let p = SessionPlan {
            scripts: Some(std::sync::Arc::new(vec![
                vec!["b".into(), "c".into()],
                vec![],
            ])),
            ..plan()
        };
        // Prompt 1 (and 3, 5, …) sends row 0; prompt 2 row 1.
        assert_eq!((p.turns_of(1), p.turns_of(2), p.turns_of(3)), (3, 1, 3));
        assert_eq!(p.user_text(3, 2), "b");
        assert_eq!(p.user_text(3, 3), "c");
    }

    #[test]
    fn draws_follow_the_seed_and_the_flags() {
        let p = plan();
        assert_eq!(p.turns_of(1), 4);
        assert_eq!(p.think_ns(1, 2), 500_000_000);
        assert_eq!(p.user_text(5, 2), p.user_text(5, 2));
        assert_ne!(p.user_text(5, 2), p.user_text(5, 3));
        assert_eq!(p.user_text(5, 2).split(' ').count(), 8);
        let spread = SessionPlan {
            turns_stddev: 2.0,
            think_dist: ThinkTimeDist::Exponential,
            ..p
        };
        let turns: Vec<u32> = (0..2000).map(|i| spread.turns_of(i)).collect();
        let mean = turns.iter().sum::<u32>() as f64 / 2000.0;
        assert!((3.7..4.4).contains(&mean), "{mean}");
        assert!(turns.iter().all(|&t| t >= 1) && turns.iter().any(|&t| t != 4));
        let think: f64 = (0..2000).map(|i| spread.think_ns(i, 2) as f64).sum::<f64>() / 2000.0;
        assert!((400e6..600e6).contains(&think), "{think}");
    }
}
