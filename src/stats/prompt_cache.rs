//! What the server's prefix cache did for a level: the cached prompt tokens its successful
//! requests reported (`usage.prompt_tokens_details.cached_tokens`), the share of their prompt
//! tokens that came from the cache, the requests that were cache hits, the server's own count
//! where `--server-metrics` has one, and the warning a level gets when its TTFT reflects the
//! cache rather than the server's prefill.
//!
//! Data flow: each core's `recorder::Recorder` counts every success's cached tokens
//! (`outcome::CacheCounts`, and a histogram); `stats::LevelStats` builds [`PromptCache`] from the
//! merged recorder; `bench` (and `merge`) add the server's share and the [`warning`].

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::recording::outcome::CacheCounts;
use crate::stats::percentiles::{round6, Percentiles};

/// The least share of a level's successes (and the least count) that are cache hits for the
/// level to be warned about.
pub const WARN_SHARE: f64 = 0.10;
pub const WARN_MIN_HITS: u64 = 3;
/// After a reset of the server's cache, a hit share above this says the reset did not hold.
pub const RESET_HELD_MAX_SHARE: f64 = 0.40;

/// A level's prompt-cache figures, written into its object in `benchmark_qps_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct PromptCache {
    /// Cached prompt tokens per successful request that reported them (null: none did).
    pub cached_prompt_tokens: Percentiles,
    pub cached_prompt_tokens_total: u64,
    /// Cached ÷ prompt tokens of the requests that reported cached tokens (null: none did).
    pub prompt_cache_hit_share: Option<f64>,
    /// Successful requests with at least half their prompt from the cache.
    pub cache_hit_requests: u64,
    /// Successful requests that reported `cached_tokens` at all.
    pub requests_with_cached_tokens: u64,
    /// The server's own count over the level (`--server-metrics`), where it exports one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_prompt_cache: Option<ServerCache>,
    /// Set when the level's TTFT reflects cache hits (see [`warning`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_cache_warning: Option<String>,
    /// `--reset-prefix-cache`: what the reset before the level did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_cache_reset: Option<String>,
}

/// The server's prefix-cache hit share over a level, from its Prometheus counters.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ServerCache {
    /// Cached ÷ all prompt tokens the server counted during the level.
    pub hit_share: f64,
    /// The series it comes from.
    pub source: String,
}

impl PromptCache {
    /// From a level's merged cached-token histogram and counts; `pcts`: the percentiles to report.
    pub fn new(cached_tokens: &Histogram<u64>, c: &CacheCounts, pcts: &[f64]) -> Self {
        Self {
            cached_prompt_tokens: Percentiles::from_hist(cached_tokens, pcts, 1.0),
            cached_prompt_tokens_total: c.cached_tokens,
            prompt_cache_hit_share: c.hit_share().map(round6),
            cache_hit_requests: c.hits,
            requests_with_cached_tokens: c.reported,
            server_prompt_cache: None,
            prompt_cache_warning: None,
            prefix_cache_reset: None,
        }
    }

    /// The hit share the level is judged by: the requests' own, else the server's.
    pub fn share(&self) -> Option<f64> {
        self.prompt_cache_hit_share
            .or(self.server_prompt_cache.as_ref().map(|s| s.hit_share))
    }
}

/// What a level's warning needs beyond its figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct WarningContext<'a> {
    /// Why hits are expected: the sharing the run asked for (e.g. `--random-prefix-len`).
    pub expected: Option<&'a str>,
    /// The server's cache was reset just before the level.
    pub after_reset: bool,
    /// Why a reset may not hold on this server (shown when it did not).
    pub reset_caveat: Option<&'a str>,
}

/// "QPS 1: 9 of 20 requests (41% of prompt tokens) came from the server's prefix cache; TTFT
/// reflects cache hits", when at least [`WARN_SHARE`] of the level's successes (and at least
/// [`WARN_MIN_HITS`]) were cache hits (`outcome::CACHE_HIT_SHARE` of their prompt cached),
/// saying so when the run shares prompts on purpose; with a reset before the level and a hit
/// share still above [`RESET_HELD_MAX_SHARE`], that the reset did not hold, and why it may not.
pub fn warning(
    qps: f64,
    successes: u64,
    p: &PromptCache,
    cx: WarningContext<'_>,
) -> Option<String> {
    let hits = p.cache_hit_requests;
    let many =
        successes > 0 && hits >= WARN_MIN_HITS && hits as f64 >= WARN_SHARE * successes as f64;
    let mut parts = Vec::new();
    if many {
        let share = p.prompt_cache_hit_share.map_or(String::new(), |s| {
            format!(" ({:.0}% of prompt tokens)", s * 100.0)
        });
        parts.push(format!(
            "QPS {}: {hits} of {successes} requests{share} came from the server's prefix cache; TTFT reflects cache hits{}",
            crate::foundation::rate::text(qps),
            match cx.expected {
                Some(why) => format!(" (expected: the run shares prompts on purpose, {why})"),
                None => String::new(),
            }
        ));
    }
    if let Some(share) = p
        .share()
        .filter(|&s| cx.after_reset && s > RESET_HELD_MAX_SHARE)
    {
        parts.push(format!(
            "QPS {}: the reset did not hold: {:.0}% of prompt tokens still came from the cache after --reset-prefix-cache{}",
            crate::foundation::rate::text(qps),
            share * 100.0,
            cx.reset_caveat.map_or(String::new(), |c| format!(" ({c})"))
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(hits: u64, misses: u64) -> PromptCache {
        let mut c = CacheCounts::default();
        let mut h = Histogram::new_with_bounds(1, 1 << 24, 4).unwrap();
        for _ in 0..hits {
            c.record(150, Some(160));
            h.record(150).unwrap();
        }
        for _ in 0..misses {
            c.record(0, Some(160));
            h.record(0).unwrap();
        }
        PromptCache::new(&h, &c, &[50.0])
    }

    #[test]
    fn a_level_with_enough_hits_is_warned_about() {
        let p = cache(9, 11);
        assert_eq!(p.cache_hit_requests, 9);
        assert_eq!(p.requests_with_cached_tokens, 20);
        assert_eq!(p.cached_prompt_tokens.get("max"), Some(150.0));
        assert_eq!(p.cached_prompt_tokens.get("p50"), Some(0.0));
        let w = warning(1.0, 20, &p, WarningContext::default()).unwrap();
        assert!(w.starts_with("QPS 1.0: 9 of 20 requests (42% of prompt tokens) came from the server's prefix cache"), "{w}");
        assert_eq!(
            w,
            "QPS 1.0: 9 of 20 requests (42% of prompt tokens) came from the server's prefix cache; TTFT reflects cache hits"
        );
        let shared = WarningContext {
            expected: Some("--random-prefix-len"),
            ..Default::default()
        };
        assert!(warning(1.0, 20, &p, shared).unwrap().contains("expected"));
        // Fewer than 3 hits, or under 10% of the successes: no warning.
        assert_eq!(
            warning(1.0, 20, &cache(2, 18), WarningContext::default()),
            None
        );
        assert_eq!(
            warning(1.0, 40, &cache(3, 37), WarningContext::default()),
            None
        );
        // Nothing reported: nothing to say.
        let none = PromptCache::new(
            &Histogram::new_with_bounds(1, 1 << 24, 4).unwrap(),
            &CacheCounts::default(),
            &[50.0],
        );
        assert_eq!(none.prompt_cache_hit_share, None);
        assert_eq!(none.cached_prompt_tokens.get("p50"), None);
        assert_eq!(warning(1.0, 20, &none, WarningContext::default()), None);
    }

    #[test]
    fn a_reset_that_did_not_hold_is_said_with_its_caveat() {
        let cx = WarningContext {
            after_reset: true,
            reset_caveat: Some("llama.cpp keeps a RAM prompt cache"),
            ..Default::default()
        };
        let w = warning(2.0, 20, &cache(10, 10), cx).unwrap();
        assert!(w.contains("the reset did not hold: 47%"), "{w}");
        assert!(w.contains("llama.cpp keeps a RAM prompt cache"), "{w}");
        assert_eq!(warning(2.0, 20, &cache(0, 20), cx), None);
    }
}
