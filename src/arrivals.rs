//! The arrival schedule of one level: when each request is meant to be sent.
//!
//! Data flow: `bench` asks for a level's plan ([`plan`]); the engine splits it across cores
//! (arrival i → core i mod N). Times are nanosecond offsets from the level's start.
//!
//! A level sends exactly `round(qps × duration)` requests. Gaps are constant, exponential
//! (Poisson process) or gamma-distributed (vLLM's `--burstiness`), then rescaled so the last arrival falls exactly at the end of the window, as
//! vLLM's `bench serve` does: the number of requests and the window are fixed, so the achieved
//! rate measures the client's pacing, not sampling noise. The draw is fixed by `--seed`.

pub use crate::cli::Arrival;

/// Number of requests a level sends.
pub fn request_count(qps: f64, duration_s: f64) -> u64 {
    (qps * duration_s).round().max(0.0) as u64
}

/// Arrival offsets (ns from the level start), ascending, last one at `duration_s`.
/// `burstiness` is the gamma shape (used by [`Arrival::Gamma`] only; must be above 0).
pub fn plan(qps: f64, duration_s: f64, arrival: Arrival, burstiness: f64, seed: u64) -> Vec<u64> {
    let n = request_count(qps, duration_s) as usize;
    if n == 0 {
        return Vec::new();
    }
    let mut rng = Rng::new(seed);
    let mut t = 0.0f64;
    let mut cum: Vec<f64> = Vec::with_capacity(n);
    for _ in 0..n {
        t += match arrival {
            Arrival::Constant => 1.0,
            Arrival::Poisson => -(1.0 - rng.next_f64()).ln(),
            // The scale does not matter: gaps are rescaled to the window below.
            Arrival::Gamma => rng.gamma(burstiness),
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
    splitmix64(&mut (seed ^ (level_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256** — small, fast and good enough for arrival gaps; seeded with splitmix64.
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut s = seed;
        Self([
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
        ])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Gamma with the given shape and scale 1 (Marsaglia–Tsang; shapes below 1 boosted by
    /// `U^(1/shape)`).
    pub fn gamma(&mut self, shape: f64) -> f64 {
        if shape < 1.0 {
            let u = 1.0 - self.next_f64();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        loop {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.next_f64();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
    }
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
