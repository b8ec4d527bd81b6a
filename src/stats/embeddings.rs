//! A level's embeddings figures (`--api embeddings`): inputs and their rates, and the token
//! figures that do not apply to an answer that generates nothing, emptied.

use serde::Serialize;

use super::{rate, LevelStats};

/// An embeddings level's own figures: inputs (each request's batch) and prompt tokens, per
/// second of the completion window, as throughput is.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingStats {
    /// `--embedding-batch`: inputs per request.
    pub batch: u32,
    /// Inputs of the successful requests.
    pub inputs: u64,
    pub inputs_per_sec: f64,
    /// Prompt tokens per second, from usage.
    pub prompt_tokens_per_sec: f64,
}

impl LevelStats {
    /// With `--api embeddings` (`batch` inputs per request): the inputs and their rates; the
    /// token figures that do not apply (no answer is generated) are left empty, so that they
    /// read `-`, not 0.
    pub fn add_embeddings(&mut self, batch: u32) {
        let inputs = self.successful_requests * u64::from(batch);
        self.embeddings = Some(EmbeddingStats {
            batch,
            inputs,
            inputs_per_sec: rate(inputs, self.completion_window_s),
            prompt_tokens_per_sec: rate(self.prompt_tokens_total, self.completion_window_s),
        });
        for p in [
            &mut self.tokens_per_sec,
            &mut self.output_tokens,
            &mut self.tpot,
            &mut self.itl,
        ] {
            p.clear();
        }
        self.client_cpu_us_per_token = None;
    }
}
