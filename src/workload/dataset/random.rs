//! The `random` source (vLLM's `--dataset-name random`): synthetic prompts of drawn lengths,
//! each with its drawn answer length, optionally behind a prefix every prompt shares. By default
//! every prompt of a run is drawn anew from its number (`synthetic::Draw`), with text of its own,
//! so no two repeat; with `--prefix-groups G`, G prefixes are spread evenly over the prompts; with `--random-pool-size N`, a pool of N prompts drawn once and cycled.
//! Lengths are in tokens of the single-token vocabulary, so N tokens are N words.

use rand_distr::{Distribution, Uniform};
use rand_xoshiro::rand_core::SeedableRng;
use rand_xoshiro::Xoshiro256StarStar;
use serde_json::json;

use super::synthetic::{Draw, Synthetic};
use super::text::{Text, MAX_SPAN_WORDS};
use crate::cli::WorkloadArgs;

/// `len × (1 ± ratio)`, as whole tokens, at least 1: vLLM's bounds.
fn bounds(len: u32, ratio: f64) -> (u32, u32) {
    let low = ((f64::from(len) * (1.0 - ratio)) as u32).max(1);
    let high = ((f64::from(len) * (1.0 + ratio)) as u32).max(low);
    (low, high)
}

/// Allocations the ring of a pool-less run is sized for: prompts' own texts start at its words
/// and wrap after this many (their numbers in words keep them apart beyond).
const DRAW_RING_STARTS: u64 = 1 << 16;

/// The prompts: drawn one by one (no pool), or `--random-pool-size` of them drawn with `seed`.
pub fn build(w: &WorkloadArgs, seed: u64) -> Synthetic {
    let (il, ih) = bounds(w.random_input_len, w.random_range_ratio);
    let longest = ih.max(w.random_prefix_len).min(MAX_SPAN_WORDS);
    let pool = w.random_pool_size;
    let groups = if w.random_prefix_len > 0 {
        w.prefix_groups.unwrap_or(1)
    } else {
        0
    };
    // One start per pool prompt and one per prefix past the first (as many as before groups).
    let starts =
        pool.map_or(DRAW_RING_STARTS, |n| u64::from(n) + 1) + u64::from(groups.saturating_sub(1));
    // Another seed, other text: a server that cached an earlier run's prompts sees new ones.
    let shift = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    let mut text = Text::for_allocations(starts, longest).shifted(shift);
    let prefixes: Vec<_> = (0..groups)
        .map(|_| text.allocate(w.random_prefix_len))
        .collect();
    let draw_seed = seed ^ 0x7261_6e64_6f6d;
    let (ol, oh) = bounds(w.random_output_len, w.random_range_ratio);
    let (il, ih) = (il.min(longest), ih.min(longest));
    let Some(pool) = pool else {
        let mut set = Synthetic::new(text);
        set.draw = Some(Box::new(Draw {
            prefixes,
            input: (il, ih),
            output: (ol, oh),
            seed: draw_seed,
        }));
        return set;
    };
    let mut rng = Xoshiro256StarStar::seed_from_u64(seed ^ 0x7261_6e64_6f6d);
    let input = Uniform::new_inclusive(il, ih).expect("low ≤ high");
    let output = Uniform::new_inclusive(ol, oh).expect("low ≤ high");
    let mut set = Synthetic::new(text);
    for i in 0..pool {
        let own = set.text.allocate(input.sample(&mut rng));
        let prefix = (!prefixes.is_empty()).then(|| {
            prefixes[super::synthetic::group_of(u64::from(i) + 1, prefixes.len(), draw_seed)]
        });
        let spans: Vec<_> = prefix.into_iter().chain([own]).collect();
        set.push(&spans, output.sample(&mut rng));
    }
    set
}

/// The parameters metadata.json records.
pub fn params(w: &WorkloadArgs, seed: u64) -> serde_json::Value {
    json!({
        "random_input_len": w.random_input_len,
        "random_output_len": w.random_output_len,
        "random_range_ratio": w.random_range_ratio,
        "random_prefix_len": w.random_prefix_len,
        "prefix_groups": w.prefix_groups,
        "random_pool_size": w.random_pool_size,
        "seed": seed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(input: u32, output: u32, ratio: f64, prefix: u32) -> WorkloadArgs {
        WorkloadArgs {
            random_input_len: input,
            random_output_len: output,
            random_range_ratio: ratio,
            random_prefix_len: prefix,
            random_pool_size: Some(50),
            ignore_eos: false,
            no_ignore_eos: false,
            replay: false,
            replay_speed: 1.0,
            unique_prompts: crate::cli::UniquePrompts::Auto,
            reset_prefix_cache: "off".into(),
            session_turns: None,
            session_turns_stddev: 0.0,
            turn_input_len: None,
            think_time_ms: 0.0,
            think_time_dist: crate::cli::ThinkTimeDist::Constant,
            cancel_rate: 0.0,
            cancel_after_ms: None,
            prefix_groups: None,
        }
    }

    #[test]
    fn lengths_are_drawn_in_range_and_prefixes_are_shared() {
        let set = build(&args(100, 20, 0.5, 0), 1);
        assert_eq!(set.len(), 50);
        let mut distinct = std::collections::HashSet::new();
        for i in 0..set.len() {
            let (_, _, out) = set.row(i);
            assert!((10..=30).contains(&out), "{out}");
            let words = set.prompt_words(i);
            assert!((50..=150).contains(&words), "{words}");
            assert_eq!(set.prompt(i).split(' ').skip(1).count() as u64, words);
            distinct.insert(words);
        }
        assert!(distinct.len() > 10, "lengths vary");
        let fixed = build(&args(64, 8, 0.0, 16), 1);
        let head = |i: usize| {
            fixed
                .prompt(i)
                .split(' ')
                .take(17)
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(head(0), head(1));
        assert_ne!(fixed.prompt(0), fixed.prompt(1));
        assert_eq!(fixed.prompt_words(3), 80);
        assert_eq!(fixed.row(3).2, 8);
        // The same seed draws the same pool.
        assert_eq!(build(&args(100, 20, 0.5, 0), 1).prompt(7), set.prompt(7));
        assert_eq!(bounds(10, 0.99), (1, 19));
        // Without a pool: no rows, every prompt drawn from its number.
        let mut no_pool = args(100, 20, 0.5, 16);
        no_pool.random_pool_size = None;
        let drawn = build(&no_pool, 1);
        assert!(drawn.is_empty());
        let p = drawn.prompt_of(0, 5);
        assert_eq!(p.spans.len(), 1);
        assert!((50..=150).contains(&p.own.unwrap().words()));
        assert_ne!(
            drawn.text_of(&drawn.prompt_of(0, 5)),
            drawn.text_of(&drawn.prompt_of(0, 6))
        );
    }
}
