//! Abandoned requests (`--cancel-rate`, `--cancel-after-ms`): which requests a level abandons,
//! and when. An abandoned request's connection is closed that long after its intended send (a
//! user's stop button, an agent's timeout), which is how a server learns to stop generating.
//!
//! Data flow: `bench` asks [`CancelPlan::level`] which of a level's arrivals are abandoned
//! (exactly round(rate × requests) of the measured ones, chosen over the whole schedule so that
//! shards agree) → the engine's cores race each such request against its deadline
//! (`request::complete`); a session's later turns are drawn one by one ([`CancelPlan::later_turn`]).

use std::sync::Arc;

use rand_xoshiro::rand_core::Rng as _;
use rand_xoshiro::SplitMix64;

/// A request that is never abandoned.
pub const NEVER: u64 = u64::MAX;

/// How a run abandons requests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CancelPlan {
    /// `--cancel-rate` as a fraction of each level's requests (0 to 1).
    pub share: f64,
    /// `--cancel-after-ms`: the range a request's time to abandonment is drawn from, ms.
    pub after_ms: (f64, f64),
    #[serde(skip)]
    pub seed: u64,
}

use super::session_plan::{draw, unit};

fn rng(seed: u64, id: u64, what: u64) -> SplitMix64 {
    draw(seed ^ what.wrapping_mul(0xD6E8_FEB8_6659_FD93), id)
}

impl CancelPlan {
    /// How long after its intended send request `id` (its prompt number; for a session's turn,
    /// the session's id and the turn) is abandoned, ns.
    pub fn after_ns(&self, id: u64, turn: u32) -> u64 {
        let (lo, hi) = self.after_ms;
        let ms = lo + (hi - lo) * unit(&mut rng(self.seed, id, 1 + u64::from(turn)));
        (ms * 1e6).round() as u64
    }

    /// Whether turn `turn` (from 2) of session `id` is abandoned, and after how long: each
    /// later turn with probability `share` (a session's length is not known in advance, so the
    /// exact count holds for its arrivals only).
    pub fn later_turn(&self, id: u64, turn: u32) -> Option<u64> {
        let drawn = unit(&mut rng(self.seed, id, 0x10_0000 + u64::from(turn)));
        (drawn < self.share).then(|| self.after_ns(id, turn))
    }

    /// Each of a level's requests' time to abandonment, ns ([`NEVER`]: sent to its end). The
    /// level's schedule has `warmup` warm-up arrivals, then `measured` ones, numbered from
    /// prompt `first`; exactly round(share × measured) measured arrivals are abandoned, chosen
    /// with `level_seed`; `prompts` are this process's requests' prompt numbers (a shard's
    /// share of the schedule).
    pub fn level(
        &self,
        level_seed: u64,
        (first, warmup, measured): (u64, u64, u64),
        prompts: impl Iterator<Item = u64>,
    ) -> Arc<[u64]> {
        let k = (self.share * measured as f64).round() as u64;
        let mut chosen = vec![false; measured as usize];
        // A partial Fisher–Yates shuffle: the first k places of a random permutation.
        let mut order: Vec<u32> = (0..measured as u32).collect();
        let mut r = rng(self.seed ^ level_seed, 0, 0);
        for i in 0..k as usize {
            let j = i + (r.next_u64() % (measured - i as u64)) as usize;
            order.swap(i, j);
            chosen[order[i] as usize] = true;
        }
        prompts
            .map(|p| {
                let i = p.saturating_sub(first);
                let measured_i = i.checked_sub(warmup).filter(|&m| m < measured);
                match measured_i {
                    Some(m) if chosen[m as usize] => self.after_ns(p, 1),
                    _ => NEVER,
                }
            })
            .collect()
    }
}

/// Parses `--cancel-after-ms`: `MS` or `MIN-MAX`, each from 0 to an hour.
pub fn parse_after(raw: &str) -> Result<(f64, f64), String> {
    let bad = || {
        format!("--cancel-after-ms {raw}: expected milliseconds (e.g. 100) or a range (e.g. 20-200), from 0 to 3600000")
    };
    let num = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && (0.0..=3.6e6).contains(v))
    };
    let (lo, hi) = match raw.split_once('-') {
        Some((a, b)) => (num(a).ok_or_else(bad)?, num(b).ok_or_else(bad)?),
        None => {
            let v = num(raw).ok_or_else(bad)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_the_share_of_the_measured_arrivals_is_abandoned_and_shards_agree() {
        let plan = CancelPlan {
            share: 0.3,
            after_ms: (20.0, 200.0),
            seed: 5,
        };
        // 10 warm-up arrivals, then 100 measured ones, from prompt 41.
        let all = plan.level(9, (41, 10, 100), 41..151);
        let cancelled: Vec<usize> = (0..110).filter(|&j| all[j] != NEVER).collect();
        assert_eq!(cancelled.len(), 30);
        assert!(cancelled.iter().all(|&j| j >= 10));
        assert!(all
            .iter()
            .filter(|&&a| a != NEVER)
            .all(|&a| (20_000_000..=200_000_000).contains(&a)));
        // Shard 1 of 2 holds the odd arrivals: the same ones are abandoned there.
        let odd = plan.level(9, (41, 10, 100), (41..151).skip(1).step_by(2));
        for (k, &a) in odd.iter().enumerate() {
            assert_eq!(a, all[1 + 2 * k]);
        }
        // Another level seed chooses others.
        assert_ne!(plan.level(10, (41, 10, 100), 41..151), all);
    }

    #[test]
    fn times_parse_as_one_value_or_a_range() {
        assert_eq!(parse_after("100"), Ok((100.0, 100.0)));
        assert_eq!(parse_after("20-200"), Ok((20.0, 200.0)));
        for bad in ["", "x", "200-20", "-5", "1-2-3", "5e9"] {
            let e = parse_after(bad).unwrap_err();
            assert!(e.contains("--cancel-after-ms"), "{e}");
        }
        let later = CancelPlan {
            share: 0.5,
            after_ms: (10.0, 10.0),
            seed: 1,
        };
        let n = (0..1000)
            .filter(|&i| later.later_turn(i, 2).is_some())
            .count();
        assert!((400..600).contains(&n), "{n}");
    }
}
