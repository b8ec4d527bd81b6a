//! The arrival schedule of one level: when each request is meant to be sent.
//!
//! Data flow: `bench` asks for a level's plan ([`plan`]); the engine splits it across cores
//! (arrival i → core i mod N). Times are nanosecond offsets from the level's start.
//!
//! A level sends exactly `round(qps × duration)` requests. Gaps are constant, exponential
//! (Poisson process) or gamma-distributed (vLLM's `--burstiness`), then rescaled so the last arrival falls exactly at the end of the window, as
//! vLLM's `bench serve` does: the number of requests and the window are fixed, so the achieved
//! rate measures the client's pacing, not sampling noise. The draw is fixed by `--seed`.

use rand_distr::{Distribution, Exp1, Gamma};
use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::{SplitMix64, Xoshiro256StarStar};

pub use crate::cli::Arrival;

/// Number of requests a level sends.
pub fn request_count(qps: f64, duration_s: f64) -> u64 {
    (qps * duration_s).round().max(0.0) as u64
}

/// Arrival offsets (ns from the level start), ascending, last one at `duration_s`.
/// `burstiness` is the gamma shape (used by [`Arrival::Gamma`] only; must be above 0).
///
/// Gaps are drawn with `rand_distr` (exponential, gamma) from xoshiro256** seeded by `seed`:
/// the same seed gives the same plan.
pub fn plan(qps: f64, duration_s: f64, arrival: Arrival, burstiness: f64, seed: u64) -> Vec<u64> {
    let n = request_count(qps, duration_s) as usize;
    if n == 0 {
        return Vec::new();
    }
    let mut rng = Xoshiro256StarStar::seed_from_u64(seed);
    // The shape is validated above 0; an invalid one falls back to Poisson's exponential gaps.
    let gamma = Gamma::new(burstiness, 1.0).ok();
    let mut t = 0.0f64;
    let mut cum: Vec<f64> = Vec::with_capacity(n);
    for _ in 0..n {
        // The scale does not matter: gaps are rescaled to the window below.
        t += match (arrival, &gamma) {
            (Arrival::Constant, _) => 1.0,
            (Arrival::Gamma, Some(g)) => g.sample(&mut rng),
            _ => Exp1.sample(&mut rng),
        };
        cum.push(t);
    }
    let scale = duration_s * 1e9 / t;
    cum.into_iter()
        .map(|c| (c * scale).round() as u64)
        .collect()
}

/// The seed of one level: levels of one run draw independent but reproducible schedules.
pub fn level_seed(seed: u64, level_index: usize) -> u64 {
    let mixed = seed ^ (level_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    SplitMix64::seed_from_u64(mixed).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_count_and_window() {
        for arrival in [Arrival::Constant, Arrival::Poisson] {
            let p = plan(20.0, 3.0, arrival, 1.0, 42);
            assert_eq!(p.len(), 60);
            assert_eq!(*p.last().unwrap(), 3_000_000_000);
            assert!(p.windows(2).all(|w| w[0] <= w[1]));
        }
        assert_eq!(
            plan(0.1, 10.0, Arrival::Poisson, 1.0, 1),
            vec![10_000_000_000]
        );
        assert!(plan(0.01, 10.0, Arrival::Poisson, 1.0, 1).is_empty());
        assert_eq!(request_count(2.5, 1.0), 3);
    }

    /// Coefficient of variation of the gaps.
    fn gap_cv(p: &[u64]) -> f64 {
        let gaps: Vec<f64> = std::iter::once(p[0])
            .chain(p.windows(2).map(|w| w[1] - w[0]))
            .map(|g| g as f64)
            .collect();
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
        var.sqrt() / mean
    }

    #[test]
    fn gamma_burstiness_sets_the_spread_of_gaps() {
        // Gamma gaps with shape B have a coefficient of variation of 1/sqrt(B).
        for (b, want) in [(0.25, 2.0), (1.0, 1.0), (4.0, 0.5), (16.0, 0.25)] {
            let p = plan(1000.0, 30.0, Arrival::Gamma, b, 11);
            assert_eq!(p.len(), 30_000);
            assert_eq!(*p.last().unwrap(), 30_000_000_000);
            let cv = gap_cv(&p);
            assert!(
                (cv - want).abs() / want < 0.1,
                "burstiness {b}: cv {cv}, want {want}"
            );
        }
    }

    #[test]
    fn constant_is_even() {
        let p = plan(4.0, 1.0, Arrival::Constant, 1.0, 0);
        assert_eq!(
            p,
            vec![250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
        );
    }

    #[test]
    fn poisson_is_seeded_and_exponential() {
        assert_eq!(
            plan(50.0, 10.0, Arrival::Poisson, 1.0, 7),
            plan(50.0, 10.0, Arrival::Poisson, 1.0, 7)
        );
        assert_ne!(
            plan(50.0, 10.0, Arrival::Poisson, 1.0, 7),
            plan(50.0, 10.0, Arrival::Poisson, 1.0, 8)
        );
        // Exponential gaps: coefficient of variation near 1 (constant would be 0).
        let cv = gap_cv(&plan(1000.0, 20.0, Arrival::Poisson, 1.0, 3));
        assert!((0.9..1.1).contains(&cv), "cv {cv}");
        assert_ne!(level_seed(42, 0), level_seed(42, 1));
    }
}
