//! What each endpoint got during a level, with several `--endpoint`s: its requests, successes,
//! errors and TTFT, counted on each core beside the rest of the recorder and merged with it.
//! With one endpoint none of this is kept. The level's figures are `stats::endpoints`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::recording::outcome::ErrorKind;

/// What one endpoint got during a level, on one core (merged like the rest of the recorder).
#[derive(Debug, Clone)]
pub struct EndpointRecorder {
    pub sent: u64,
    pub succeeded: u64,
    pub errors: BTreeMap<ErrorKind, u64>,
    /// TTFT of its successful requests, µs.
    pub ttft_us: Histogram<u64>,
}

impl Default for EndpointRecorder {
    fn default() -> Self {
        Self {
            sent: 0,
            succeeded: 0,
            errors: BTreeMap::new(),
            ttft_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl EndpointRecorder {
    pub fn merge(&mut self, other: &EndpointRecorder) {
        self.sent += other.sent;
        self.succeeded += other.succeeded;
        for (k, n) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += n;
        }
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.ttft_us.add(&other.ttft_us);
    }

    /// A successful request, with its TTFT if it had one.
    pub fn success(&mut self, ttft_ns: Option<u64>) {
        self.succeeded += 1;
        if let Some(t) = ttft_ns {
            self.ttft_us.saturating_record((t / 1_000).max(1));
        }
    }

    pub fn failure(&mut self, kind: &ErrorKind) {
        *self.errors.entry(kind.clone()).or_default() += 1;
    }
}
