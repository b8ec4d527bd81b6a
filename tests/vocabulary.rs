//! The synthetic prompts' vocabulary against real tokenizers: every word is one token, with its
//! leading space and without, in OpenAI's r50k_base (GPT-2), cl100k_base and o200k_base. This
//! is what makes "N tokens ≈ N words" true for servers, not only for the built-in endpoint,
//! which counts words.

use qpsbench::dataset::text::Text;
use qpsbench::dataset::vocabulary::WORDS;
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
