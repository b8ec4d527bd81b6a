//! Synthetic text: one fixed ring of words from the [vocabulary](super::vocabulary), and
//! [`Span`]s (runs of its words) that synthetic prompts are made of.
//!
//! Data flow: the `random` and `mooncake` sources ask [`Text::allocate`] for a run of N words
//! whenever they need text no other prompt shares (a prompt's own part, a trace's 512-token
//! block for one hash id), and keep the [`Span`]; `prepared` sends a span as a view of the
//! ring's bytes, so a prompt's text is never copied per request.
//!
//! Why a ring and not text per prompt: a million-row trace of 8k-token prompts is 50 GB of text,
//! but it is made of far fewer distinct pieces. Each allocation starts at a new word of the ring
//! (a stride through it that visits every word before any repeats), so two allocations begin
//! with different text and a server's prefix cache sees them as unrelated, while every prompt
//! that holds the same span sends the same bytes.
//!
//! Text that each prompt of a run must have of its own, however long the run ([`Text::own`]),
//! starts with the prompt's number written in words ([`ID_WORDS`] of them, least significant
//! first, from the vocabulary stored once after the ring), then continues with a run of the
//! ring: two prompts differ from their first own word, without a ring as long as the run.

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

use super::vocabulary::WORDS;

/// The largest ring (a power of two): 16 M distinct allocations before texts repeat, ~170 MB.
pub const RING_WORDS: u32 = 1 << 24;

/// The smallest ring.
const MIN_RING_WORDS: u32 = 1 << 16;

/// The longest span (below the smallest ring that must hold it): longer prompts are refused
/// when read.
pub const MAX_SPAN_WORDS: u32 = 1 << 20;

/// Steps between allocations' first words: odd, so with a power-of-two ring every word is a
/// start once before any start repeats; near the golden ratio of the ring, so consecutive
/// allocations start far apart.
const STRIDE: u64 = 2_592_379;

/// Words of a prompt's number at the start of its own text: 1024³ (about a billion) prompts
/// start differently.
pub const ID_WORDS: u32 = 3;

/// A run of consecutive words of the ring (it may wrap past its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub words: u32,
}

/// Text of a prompt's own: its number in words, then a run of the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own {
    pub prompt: u64,
    /// Words of the number (at most [`ID_WORDS`], fewer in a shorter text).
    pub id_words: u32,
    pub span: Span,
}

impl Own {
    pub fn words(&self) -> u32 {
        self.id_words + self.span.words
    }
}

/// The ring of words: each stored as " word", so any run of them is space-separated text; then
/// the vocabulary once, in order, for prompts' numbers.
#[derive(Debug)]
pub struct Text {
    bytes: Vec<u8>,
    /// Where word i starts in `bytes`; one more entry, the ring's end.
    starts: Vec<u32>,
    /// Where vocabulary word d starts in `bytes` (after the ring); one more entry, the end.
    vocabulary: Vec<u32>,
    /// Allocations so far.
    allocated: u64,
    /// Starts skipped before the first allocation (from a seed: another seed, other text).
    shift: u64,
}

impl Text {
    /// The ring of `words` words (a power of two, at most [`RING_WORDS`]), always the same text.
    pub fn new(words: u32) -> Self {
        debug_assert!(words.is_power_of_two() && words <= RING_WORDS);
        // A fixed seed: the text is part of the workload's definition, not of a run's draw.
        let mut rng = Xoshiro256StarStar::seed_from_u64(0x7465_7874);
        let mut bytes = Vec::with_capacity(words as usize * 6);
        let mut starts = Vec::with_capacity(words as usize + 1);
        for _ in 0..words {
            starts.push(bytes.len() as u32);
            let w = WORDS[(rng.next_u64() >> 54) as usize];
            bytes.push(b' ');
            bytes.extend_from_slice(w.as_bytes());
        }
        starts.push(bytes.len() as u32);
        let mut vocabulary = Vec::with_capacity(WORDS.len() + 1);
        for w in WORDS {
            vocabulary.push(bytes.len() as u32);
            bytes.push(b' ');
            bytes.extend_from_slice(w.as_bytes());
        }
        vocabulary.push(bytes.len() as u32);
        Self {
            bytes,
            starts,
            vocabulary,
            allocated: 0,
            shift: 0,
        }
    }

    /// The same ring, its allocations starting `shift` starts on: another `shift` (a seed) gives
    /// every piece other text.
    pub fn shifted(mut self, shift: u64) -> Self {
        self.shift = shift;
        self
    }

    /// The ring for `allocations` spans of at most `longest` words: one start per allocation
    /// (up to [`RING_WORDS`]), and longer than any span.
    pub fn for_allocations(allocations: u64, longest: u32) -> Self {
        let want = allocations.max(u64::from(longest) + 1);
        let words = want
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .clamp(u64::from(MIN_RING_WORDS), u64::from(RING_WORDS));
        Self::new(words as u32)
    }

    /// Whether more spans were allocated than the ring has starts, so that some texts repeat.
    pub fn repeats(&self) -> bool {
        self.allocated > u64::from(self.len_words())
    }

    fn len_words(&self) -> u32 {
        (self.starts.len() - 1) as u32
    }

    /// A span of `words` words (at most [`MAX_SPAN_WORDS`]) starting where no earlier
    /// allocation started, until the ring's every word has been a start.
    pub fn allocate(&mut self, words: u32) -> Span {
        let ring = u64::from(self.len_words());
        let n = self.allocated.wrapping_add(self.shift);
        let start = (n.wrapping_mul(STRIDE) % ring) as u32;
        self.allocated += 1;
        Span {
            start,
            words: words.min(MAX_SPAN_WORDS),
        }
    }

    /// Allocations so far (more than the ring's words means some texts repeat).
    pub fn allocations(&self) -> u64 {
        self.allocated
    }

    /// Prompt `prompt`'s own text of `words` words: its number in words, then a run of the ring
    /// starting at a word of its own (after every allocation made so far, until the ring wraps).
    /// No allocation is made: the same prompt number always gets the same text.
    pub fn own(&self, prompt: u64, words: u32) -> Own {
        let ring = u64::from(self.len_words());
        let id_words = words.min(ID_WORDS);
        let n = self.allocated.wrapping_add(self.shift).wrapping_add(prompt);
        let start = (n.wrapping_mul(STRIDE) % ring) as u32;
        Own {
            prompt,
            id_words,
            span: Span {
                start,
                words: (words - id_words).min(MAX_SPAN_WORDS),
            },
        }
    }

    /// The byte ranges of `own` in [`Text::bytes`]: each word of its number, then its span.
    pub fn own_ranges(&self, own: Own) -> impl Iterator<Item = (usize, usize)> + '_ {
        let digits = (0..own.id_words).map(move |i| {
            let d = ((own.prompt >> (10 * i)) & 1023) as usize;
            (self.vocabulary[d] as usize, self.vocabulary[d + 1] as usize)
        });
        digits.chain(self.ranges(own.span).into_iter().flatten())
    }

    /// The text of `own` (for tests and checks).
    pub fn own_text(&self, own: Own) -> String {
        self.own_ranges(own)
            .map(|(a, b)| std::str::from_utf8(&self.bytes[a..b]).expect("ASCII words"))
            .collect()
    }

    /// The ring's bytes, then the vocabulary's.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The byte ranges of `span` in [`Text::bytes`]: one, or two where it wraps.
    pub fn ranges(&self, span: Span) -> [Option<(usize, usize)>; 2] {
        let n = self.len_words();
        let end = span.start as u64 + span.words as u64;
        let at = |w: u64| self.starts[(w % u64::from(n)) as usize] as usize;
        if span.words == 0 {
            [None, None]
        } else if end <= u64::from(n) {
            [
                Some((at(span.start.into()), self.starts[end as usize] as usize)),
                None,
            ]
        } else {
            // Wraps (a span is at most MAX_SPAN_WORDS, below the ring's length): the tail of
            // the ring, then its head.
            let tail_end = self.starts[n as usize] as usize;
            [Some((at(span.start.into()), tail_end)), Some((0, at(end)))]
        }
    }

    /// The span's text (for tests and checks; sending uses [`Text::ranges`]).
    pub fn text(&self, span: Span) -> String {
        let mut out = String::new();
        for (a, b) in self.ranges(span).into_iter().flatten() {
            out.push_str(std::str::from_utf8(&self.bytes[a..b]).expect("ASCII words"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_runs_of_words_that_start_apart_and_wrap() {
        let mut t = Text::new(1 << 12);
        let a = t.allocate(10);
        let b = t.allocate(10);
        assert_ne!(a.start, b.start);
        assert_eq!(t.text(a).split(' ').skip(1).count(), 10);
        assert!(t.text(a).starts_with(' '));
        assert_ne!(t.text(a), t.text(b));
        // Every start is visited once before any repeats.
        let mut t = Text::new(1 << 8);
        let starts: std::collections::HashSet<u32> =
            (0..256).map(|_| t.allocate(1).start).collect();
        assert_eq!(starts.len(), 256);
        // A wrapping span reads the ring's end and then its beginning.
        let wrap = Span {
            start: 250,
            words: 10,
        };
        assert_eq!(t.text(wrap).split(' ').skip(1).count(), 10);
        let [x, y] = t.ranges(wrap);
        assert!(x.is_some() && y.is_some());
        // The same ring every time.
        assert_eq!(Text::new(1 << 8).bytes(), Text::new(1 << 8).bytes());
    }

    #[test]
    fn own_text_starts_with_the_prompts_number_and_never_repeats() {
        let mut t = Text::new(1 << 8);
        t.allocate(10);
        let words = |s: String| s.split(' ').skip(1).map(str::to_string).collect::<Vec<_>>();
        // Far more prompts than the ring has words: each one's text is still its own.
        let mut seen = std::collections::HashSet::new();
        for p in 0..5_000u64 {
            let own = t.own(p, 12);
            let text = t.own_text(own);
            assert_eq!(words(text.clone()).len(), 12, "{text}");
            assert!(seen.insert(text));
        }
        // Least significant digit first: consecutive prompts differ from their first word.
        let (a, b) = (t.own_text(t.own(1024, 5)), t.own_text(t.own(1025, 5)));
        assert_ne!(words(a.clone())[0], words(b.clone())[0]);
        assert_eq!(words(a)[1], words(b)[1]);
        assert_eq!(words(t.own_text(t.own(7, 3)))[0], WORDS[7]);
        // A short text holds fewer digits; a pure function of the prompt's number.
        assert_eq!(t.own(9, 2).id_words, 2);
        assert_eq!(t.own(9, 2).words(), 2);
        assert_eq!(t.own(42, 40), t.own(42, 40));
        // Another shift (another seed), other text after the same number, and other pieces.
        let mut shifted = Text::new(1 << 8).shifted(5);
        shifted.allocate(10);
        assert_ne!(
            t.own_text(t.own(42, 40)),
            shifted.own_text(shifted.own(42, 40))
        );
        assert_ne!(
            Text::new(1 << 8).allocate(3),
            Text::new(1 << 8).shifted(5).allocate(3)
        );
        // A span that wraps still ends at the ring's end, not in the vocabulary after it.
        let wrap = Span {
            start: 250,
            words: 10,
        };
        assert!(!t.text(wrap).contains("  "));
        assert_eq!(t.text(wrap).split(' ').skip(1).count(), 10);
    }
}
