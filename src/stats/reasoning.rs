//! A level's reasoning figures (`ttfot`, `reasoning_tokens`, `reasoning_requests`): present only
//! where an answer reasoned before it answered, from the merged recorder.

use serde::Serialize;

use super::Percentiles;
use crate::recording::recorder::Recorder;

/// A level's reasoning figures, present only where an answer reasoned first (a reasoning
/// model): `ttft` is then the first token of any kind, and these say when the answer began.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReasoningStats {
    /// Time to first output token: the first answer text after the reasoning, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttfot: Option<Percentiles>,
    /// `reasoning_tokens` per success that reported them (usage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<Percentiles>,
    /// Successes that reasoned before answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning_requests: Option<u64>,
}

impl ReasoningStats {
    pub(super) fn new(r: &Recorder, pcts: &[f64]) -> Self {
        if r.reasoning_requests == 0 {
            return Self::default();
        }
        Self {
            ttfot: Some(Percentiles::from_hist(&r.hist.ttfot_us, pcts, 1e-6)),
            reasoning_tokens: (!r.hist.reasoning_tokens_n.is_empty())
                .then(|| Percentiles::from_hist(&r.hist.reasoning_tokens_n, pcts, 1.0)),
            reasoning_requests: Some(r.reasoning_requests),
        }
    }
}
