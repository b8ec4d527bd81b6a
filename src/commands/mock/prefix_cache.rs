//! The built-in endpoint's prefix cache (`serve-mock --prefix-cache`): a model of vLLM's
//! automatic prefix caching, so that tests can check qpsbench's cache figures without a real
//! engine.
//!
//! A prompt is the endpoint's tokens (`ask`: words, and 4 template tokens per chat message) cut
//! into blocks of [`BLOCK_TOKENS`]; each full block is keyed by a hash of itself and every block
//! before it, as vLLM keys them, so a block is "cached" only when the whole prefix up to it was
//! seen before. A request's cached tokens are its leading blocks already in the cache; then all
//! its full blocks are stored. The answer reports them in `usage.prompt_tokens_details`, prefill
//! time (`--prefill-ms-per-1k-tokens`) counts only the uncached tokens, `/metrics` exports
//! vLLM's two counters, and `POST /reset_prefix_cache` empties it.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Tokens per block: vLLM's default block size.
pub const BLOCK_TOKENS: usize = 16;
/// Blocks kept before the cache is emptied (a crude eviction, bounding memory: 16 MiB of keys).
const MAX_BLOCKS: usize = 1 << 20;

/// The cache, shared by the endpoint's threads (one lock per request, which a mock can afford).
#[derive(Debug, Default)]
pub struct PrefixCache {
    blocks: Mutex<HashSet<u64>>,
    /// vLLM's counters, in tokens: looked up, and found.
    queries: AtomicU64,
    hits: AtomicU64,
}

impl PrefixCache {
    /// Looks up the prompt `tokens` (one hash per token) and stores its full blocks; returns the
    /// tokens found in the cache. The last token is never counted as cached (a server computes
    /// at least one token of the prompt, to start the answer from).
    pub fn lookup_and_store(&self, tokens: &[u64]) -> u64 {
        let keys = block_keys(tokens);
        let found = {
            let mut blocks = self.blocks.lock().unwrap_or_else(|e| e.into_inner());
            let found = keys.iter().take_while(|k| blocks.contains(k)).count();
            if blocks.len() + keys.len() > MAX_BLOCKS {
                blocks.clear();
            }
            blocks.extend(keys);
            found
        };
        let cached = ((found * BLOCK_TOKENS) as u64).min(tokens.len().saturating_sub(1) as u64);
        self.queries.fetch_add(tokens.len() as u64, Relaxed);
        self.hits.fetch_add(cached, Relaxed);
        cached
    }

    /// Forgets every block (the counters keep counting, as vLLM's do).
    pub fn reset(&self) {
        self.blocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// vLLM's prefix-cache counters in the Prometheus text format.
    pub fn render(&self, model_label: &str) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "vllm:prefix_cache_queries_total",
                "Prefix cache queries, in terms of number of queried tokens.",
                self.queries.load(Relaxed),
            ),
            (
                "vllm:prefix_cache_hits_total",
                "Prefix cache hits, in terms of number of cached tokens.",
                self.hits.load(Relaxed),
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{model_name=\"{model_label}\"}} {v}.0\n"
            ));
        }
        out
    }
}

/// Each full block's key: a hash of its tokens and of the key before it.
fn block_keys(tokens: &[u64]) -> Vec<u64> {
    let mut prev = 0u64;
    tokens
        .chunks_exact(BLOCK_TOKENS)
        .map(|block| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            prev.hash(&mut h);
            block.hash(&mut h);
            prev = h.finish();
            prev
        })
        .collect()
}

/// One token's hash (the endpoint has no tokenizer: a token is a word, a piece of a long word,
/// or a chat template's marker).
pub fn token_hash(piece: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    piece.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(words: &str) -> Vec<u64> {
        words
            .split_whitespace()
            .map(|w| token_hash(w.as_bytes()))
            .collect()
    }

    #[test]
    fn only_blocks_whose_whole_prefix_was_seen_are_cached() {
        let c = PrefixCache::default();
        let a: String = (0..40).map(|i| format!("w{i} ")).collect();
        assert_eq!(c.lookup_and_store(&tokens(&a)), 0);
        // The same prompt: its two full blocks (32 tokens) are cached.
        assert_eq!(c.lookup_and_store(&tokens(&a)), 32);
        // The same words after one other word: nothing matches from the start.
        assert_eq!(c.lookup_and_store(&tokens(&format!("x {a}"))), 0);
        // A prompt sharing the first block only.
        let b: String = (0..16).map(|i| format!("w{i} ")).collect::<String>() + "y z";
        assert_eq!(c.lookup_and_store(&tokens(&b)), 16);
        // A prompt of exactly one cached block still computes its last token.
        let one: String = (0..16).map(|i| format!("w{i} ")).collect();
        assert_eq!(c.lookup_and_store(&tokens(&one)), 15);
        let m = c.render("m");
        assert!(
            m.contains("vllm:prefix_cache_hits_total{model_name=\"m\"} 63.0"),
            "{m}"
        );
        assert!(
            m.contains("vllm:prefix_cache_queries_total{model_name=\"m\"} 155.0"),
            "{m}"
        );
        c.reset();
        assert_eq!(c.lookup_and_store(&tokens(&a)), 0);
    }
}
