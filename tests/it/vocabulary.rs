//! The synthetic prompts' vocabulary against real tokenizers: every word is one token, with its
//! leading space and without, in OpenAI's r50k_base (GPT-2), cl100k_base and o200k_base. This
//! is what makes "N tokens ≈ N words" true for servers, not only for the built-in endpoint,
//! which counts words.

use qpsbench::workload::dataset::text::Text;
use qpsbench::workload::dataset::vocabulary::WORDS;
use tiktoken_rs::{cl100k_base_singleton, o200k_base_singleton, r50k_base_singleton};

#[test]
fn every_word_is_one_token_in_the_usual_tokenizers() {
    let tokenizers = [
        ("r50k_base", r50k_base_singleton()),
        ("cl100k_base", cl100k_base_singleton()),
        ("o200k_base", o200k_base_singleton()),
    ];
    let distinct: std::collections::HashSet<&str> = WORDS.iter().copied().collect();
    assert_eq!(distinct.len(), WORDS.len(), "the words are distinct");
    for (name, bpe) in tokenizers {
        for w in WORDS {
            assert!(
                w.len() <= 7 && w.bytes().all(|b| b.is_ascii_lowercase()),
                "{w}"
            );
            let spaced = format!(" {w}");
            assert_eq!(bpe.encode_ordinary(&spaced).len(), 1, "{name}: {spaced:?}");
            // o200k and cl100k also keep a prompt's first word whole; GPT-2 mostly does.
            if name != "r50k_base" {
                assert_eq!(bpe.encode_ordinary(w).len(), 1, "{name}: {w:?}");
            }
        }
    }
}

#[test]
fn a_synthetic_text_of_n_words_is_n_tokens() {
    let mut text = Text::new(1 << 16);
    for n in [1u32, 100, 1000, 4096] {
        let span = text.allocate(n);
        let s = text.text(span);
        for (name, bpe) in [
            ("cl100k_base", cl100k_base_singleton()),
            ("o200k_base", o200k_base_singleton()),
        ] {
            assert_eq!(
                bpe.encode_ordinary(&s).len(),
                n as usize,
                "{name}, {n} words"
            );
        }
    }
}

/// A prompt's own text (its number in words, then a run of the ring) is as many tokens as
/// words, and a pass's marker before a user's message adds `marker_tokens` tokens.
#[test]
fn own_text_and_markers_count_as_their_words() {
    use qpsbench::workload::prepared::unique::{marker, marker_tokens};
    let mut text = Text::new(1 << 16);
    text.allocate(10);
    let message = "Please summarise the following report in three sentences.";
    for (name, bpe) in [
        ("cl100k_base", cl100k_base_singleton()),
        ("o200k_base", o200k_base_singleton()),
    ] {
        for (prompt, words) in [(0u64, 3u32), (7, 64), (1_000_003, 500)] {
            let own = text.own_text(text.own(prompt, words));
            assert_eq!(
                bpe.encode_ordinary(&own).len(),
                words as usize,
                "{name}: {own:?}"
            );
        }
        let plain = bpe.encode_ordinary(message).len();
        for pass in [0u64, 2, 1023, 1024, 5_000_000] {
            let marked = format!("{}{message}", marker(pass));
            assert_eq!(
                bpe.encode_ordinary(&marked).len(),
                plain + marker_tokens(pass) as usize,
                "{name}: {marked:?}"
            );
        }
    }
}
