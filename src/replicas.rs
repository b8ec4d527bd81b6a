//! Replicas without a load balancer (`--endpoint` given several times): which endpoint each
//! arrival goes to, and what each endpoint got — its requests, successes, errors and TTFT.
//!
//! Data flow: `bench` picks arrival i's endpoint with [`pick`] from the global index i (so shards
//! of one schedule agree on it); each core keeps one keep-alive pool and one set of rendered
//! requests per endpoint, and counts every request into its recorder's [`EndpointRecorder`];
//! the level's result lists them as [`EndpointStats`]. With one endpoint none of this is kept.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;
use serde::Serialize;

use crate::cli::EndpointStrategy;
use crate::outcome::ErrorKind;

/// The endpoint (of `n`) that arrival `i` of the schedule goes to: round-robin, or drawn from
/// `seed` and `i` alone (the same in every run and every shard).
pub fn pick(strategy: EndpointStrategy, seed: u64, i: usize, n: usize) -> u16 {
    if n <= 1 {
        return 0;
    }
    let k = match strategy {
        EndpointStrategy::RoundRobin => i % n,
        EndpointStrategy::Random => {
            let mixed = seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
            (SplitMix64::seed_from_u64(mixed).next_u64() % n as u64) as usize
        }
    };
    k as u16
}

/// What one endpoint got during a level, on one core (merged like the rest of the recorder).
#[derive(Debug, Clone)]
pub struct EndpointRecorder {
    pub sent: u64,
    pub succeeded: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// TTFT of its successful requests, µs.
    pub ttft_us: Histogram<u64>,
}

impl Default for EndpointRecorder {
    fn default() -> Self {
        Self {
            sent: 0,
            succeeded: 0,
            errors: BTreeMap::new(),
            ttft_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl EndpointRecorder {
    pub fn merge(&mut self, other: &EndpointRecorder) {
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.ttft_us.add(&other.ttft_us);
    }

    /// A successful request, with its TTFT if it had one.
    pub fn success(&mut self, ttft_ns: Option<u64>) {
        self.succeeded += 1;
        if let Some(t) = ttft_ns {
            self.ttft_us.saturating_record((t / 1_000).max(1));
        }
    }

    pub fn failure(&mut self, kind: &ErrorKind) {
        *self.errors.entry(kind.clone()).or_default() += 1;
    }
}

/// One endpoint's share of a level, in its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStats {
    /// As given, secret query parameters masked.
    pub url: String,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub errors: BTreeMap<String, u64>,
    /// TTFT p50 and p99 of its successful requests, seconds (null without one).
    pub ttft: BTreeMap<&'static str, Option<f64>>,
}

/// The level's `endpoints`: each endpoint's figures beside its (masked) URL; `None` with one
/// endpoint.
pub fn stats(recorders: &[EndpointRecorder], urls: &[String]) -> Option<Vec<EndpointStats>> {
    if urls.len() <= 1 {
        return None;
    }
    let empty = EndpointRecorder::default();
    let at =
        |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6);
    Some(
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let r = recorders.get(i).unwrap_or(&empty);
                EndpointStats {
                    url: url.clone(),
                    total_requests: r.sent,
                    successful_requests: r.succeeded,
                    errors: r.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
                    ttft: BTreeMap::from([
                        ("p50", at(&r.ttft_us, 0.5)),
                        ("p99", at(&r.ttft_us, 0.99)),
                    ]),
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_alternates_and_random_is_balanced_and_reproducible() {
        let rr: Vec<u16> = (0..6)
            .map(|i| pick(EndpointStrategy::RoundRobin, 1, i, 3))
            .collect();
        assert_eq!(rr, [0, 1, 2, 0, 1, 2]);
        let draw = |seed| -> Vec<u16> {
            (0..10_000)
                .map(|i| pick(EndpointStrategy::Random, seed, i, 2))
                .collect()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert_ne!(a, draw(8));
        let ones = a.iter().filter(|&&k| k == 1).count();
        assert!((4_700..5_300).contains(&ones), "{ones}");
        assert_eq!(pick(EndpointStrategy::Random, 7, 3, 1), 0);
    }
}
