//! A level's embeddings figures (`--api embeddings`): inputs and their rates. (The token figures
//! that do not apply to an answer that generates nothing are left empty by `LevelStats::new`.)

use serde::Serialize;

use super::rate;
use crate::recording::recorder::Recorder;

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

impl EmbeddingStats {
    /// With `--api embeddings` (`batch` inputs per request): the inputs of the recorder's
    /// successes and their rates over the completion window (`completion_s`).
    pub fn new(r: &Recorder, batch: u32, completion_s: f64) -> Self {
        let inputs = r.succeeded * u64::from(batch);
        Self {
            batch,
            inputs,
            inputs_per_sec: rate(inputs, completion_s),
            prompt_tokens_per_sec: rate(r.prompt_tokens, completion_s),
        }
    }
}
