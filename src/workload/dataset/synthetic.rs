//! Synthetic rows: prompts made of [`Span`]s of the shared [`Text`], each with its answer length,
//! and optionally text of its own that every prompt sending the row gets anew
//! ([`Text::own`]: a Mooncake row's text beyond its hash-id blocks). Or, for `random` without a
//! pool, no rows at all but a [`Draw`]: every prompt's lengths drawn from its number, and its
//! text its own. The `random` and `mooncake` sources build them; `prepared` renders each prompt
//! as a small head and tail around views of the text.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use super::text::{Own, Span, Text};

/// Rows of spans over one text, stored back to back (a million rows need no million vectors).
#[derive(Debug)]
pub struct Synthetic {
    pub text: Text,
    spans: Vec<Span>,
    /// Where each row's spans end in `spans`.
    ends: Vec<u32>,
    /// Each row's words of text of its own, after its spans (0: none).
    own: Vec<u32>,
    /// Each row's answer length (its request's `max_tokens`).
    max_tokens: Vec<u32>,
    /// `random` without `--random-pool-size`: prompts drawn one by one, no rows.
    pub draw: Option<Box<Draw>>,
}

/// One prompt of a synthetic source: its shared spans, then its own text, and its answer length.
#[derive(Debug, Clone, Copy)]
pub struct Prompt<'a> {
    pub spans: &'a [Span],
    pub own: Option<Own>,
    pub max_tokens: u32,
}

/// How `random` draws each prompt when it keeps no pool: its prompt and answer lengths follow
/// from the seed and the prompt's number alone, so any shard draws any prompt the same.
#[derive(Debug, Clone)]
pub struct Draw {
    /// The prefixes prompts share (`--random-prefix-len`): one, or with `--prefix-groups G`, G
    /// of them spread over the prompts ([`group_of`]). Empty: none.
    pub prefixes: Vec<Span>,
    /// Inclusive bounds of the prompt's own length and of the answer's, in tokens.
    pub input: (u32, u32),
    pub output: (u32, u32),
    pub seed: u64,
}

/// Which of `groups` shared prefixes prompt `prompt` (from 1) sends: each block of `groups`
/// consecutive prompts sends every prefix once, in an order rotated per block by `seed`, so the
/// prefixes are spread evenly over any stretch of prompts, and the same in every run and shard.
pub fn group_of(prompt: u64, groups: usize, seed: u64) -> usize {
    let g = groups.max(1) as u64;
    let (block, place) = (prompt.saturating_sub(1) / g, prompt.saturating_sub(1) % g);
    let rotation =
        SplitMix64::seed_from_u64(seed ^ block.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64() % g;
    ((place + rotation) % g) as usize
}

impl Draw {
    /// Prompt `prompt`'s (own input length, answer length).
    pub fn lengths(&self, prompt: u64) -> (u32, u32) {
        let mut rng =
            SplitMix64::seed_from_u64(self.seed ^ prompt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let pick = |(lo, hi): (u32, u32), r: u64| lo + (r % (u64::from(hi - lo) + 1)) as u32;
        let input = pick(self.input, rng.next_u64());
        (input, pick(self.output, rng.next_u64()))
    }
}

impl Synthetic {
    pub fn new(text: Text) -> Self {
        Self {
            text,
            spans: Vec::new(),
            ends: Vec::new(),
            own: Vec::new(),
            max_tokens: Vec::new(),
            draw: None,
        }
    }

    /// Appends a row: its prompt's spans, in order, and its answer length.
    pub fn push(&mut self, spans: &[Span], max_tokens: u32) {
        self.push_own(spans, 0, max_tokens);
    }

    /// Appends a row whose prompt ends with `own` words of text that each prompt sending it gets
    /// anew.
    pub fn push_own(&mut self, spans: &[Span], own: u32, max_tokens: u32) {
        self.spans.extend_from_slice(spans);
        self.ends.push(self.spans.len() as u32);
        self.own.push(own);
        self.max_tokens.push(max_tokens);
    }

    /// The rows (0 for a [`Draw`]).
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Row `i`'s spans, own words and answer length.
    pub fn row(&self, i: usize) -> (&[Span], u32, u32) {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        (
            &self.spans[start..self.ends[i] as usize],
            self.own[i],
            self.max_tokens[i],
        )
    }

    /// What prompt number `prompt` sends as row `row` (a draw ignores the row).
    pub fn prompt_of(&self, row: usize, prompt: u64) -> Prompt<'_> {
        if let Some(d) = &self.draw {
            let (input, max_tokens) = d.lengths(prompt);
            return Prompt {
                spans: match d.prefixes.len() {
                    0 => &[],
                    n => std::slice::from_ref(&d.prefixes[group_of(prompt, n, d.seed)]),
                },
                own: Some(self.text.own(prompt, input)),
                max_tokens,
            };
        }
        let (spans, own, max_tokens) = self.row(row);
        Prompt {
            spans,
            own: (own > 0).then(|| self.text.own(prompt, own)),
            max_tokens,
        }
    }

    /// A prompt's text (for tests and checks).
    pub fn text_of(&self, p: &Prompt<'_>) -> String {
        let mut out: String = p.spans.iter().map(|&s| self.text.text(s)).collect();
        if let Some(own) = p.own {
            out.push_str(&self.text.own_text(own));
        }
        out
    }

    /// Row `i`'s prompt as text, as prompt number 1 sends it (for tests and checks).
    pub fn prompt(&self, i: usize) -> String {
        self.text_of(&self.prompt_of(i, 1))
    }

    /// Row `i`'s prompt length in words (≈ tokens).
    pub fn prompt_words(&self, i: usize) -> u64 {
        let (spans, own, _) = self.row(i);
        spans.iter().map(|s| u64::from(s.words)).sum::<u64>() + u64::from(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_groups_are_spread_evenly_and_reproducibly() {
        for p in (1..=60).step_by(6) {
            let mut seen: Vec<usize> = (p..p + 6).map(|q| group_of(q, 6, 3)).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3, 4, 5], "prompts {p}..{}", p + 6);
        }
        let a: Vec<usize> = (1..100).map(|p| group_of(p, 7, 3)).collect();
        assert_eq!(a, (1..100).map(|p| group_of(p, 7, 3)).collect::<Vec<_>>());
        assert_ne!(a, (1..100).map(|p| group_of(p, 7, 4)).collect::<Vec<_>>());
        assert!((1..50).all(|p| group_of(p, 1, 9) == 0));
    }

    #[test]
    fn drawn_prompts_follow_from_their_number_and_rows_get_own_text_anew() {
        let mut set = Synthetic::new(Text::new(1 << 10));
        let prefix = set.text.allocate(4);
        set.draw = Some(Box::new(Draw {
            prefixes: vec![prefix],
            input: (5, 9),
            output: (2, 3),
            seed: 7,
        }));
        let a = set.prompt_of(0, 11);
        assert_eq!(a.spans, &[prefix]);
        let words = a.own.unwrap().words();
        assert!((5..=9).contains(&words));
        assert!((2..=3).contains(&a.max_tokens));
        // The same number draws the same prompt; another number, another text.
        assert_eq!(set.text_of(&set.prompt_of(3, 11)), set.text_of(&a));
        assert_ne!(set.text_of(&set.prompt_of(0, 12)), set.text_of(&a));
        let lengths: std::collections::HashSet<u32> = (0..200)
            .map(|p| set.prompt_of(0, p).own.unwrap().words())
            .collect();
        assert_eq!(lengths.len(), 5, "every length in range is drawn");
        // Rows: fixed spans, own text per prompt.
        let mut rows = Synthetic::new(Text::new(1 << 10));
        let block = rows.text.allocate(8);
        rows.push_own(&[block], 3, 5);
        rows.push(&[block], 6);
        assert_eq!(rows.prompt_words(0), 11);
        let (x, y) = (rows.prompt_of(0, 1), rows.prompt_of(0, 2));
        assert!(rows.text_of(&x).starts_with(&rows.text.text(block)));
        assert_ne!(rows.text_of(&x), rows.text_of(&y));
        assert_eq!(rows.prompt_of(1, 9).own, None);
        assert_eq!(rows.row(1).2, 6);
    }
}
