//! Replicas without a load balancer (`--endpoint` given several times): which endpoint each
//! arrival goes to. `bench` picks arrival i's endpoint from the global index i, so shards of one
//! schedule agree on it; what each endpoint got is counted by `recording::endpoints` and reported
//! by `stats::endpoints`.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::cli::EndpointStrategy;

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
