//! The built-in endpoint's own lateness: for every content chunk, its send time − its deadline.
//! When a bench or the self-test measures a client against this endpoint, this says whether the
//! endpoint kept its schedule; if it did not, the figures measure the endpoint, not the client.
//!
//! Data flow: `handler` records each chunk just before its write; `serve-mock` prints the
//! summary when it exits, `/metrics` exports it (`metrics`), and `MockServer::chunk_lateness`
//! hands it to the self-test.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Lateness of every chunk sent, µs (one histogram for all the endpoint's threads: a lock per
/// chunk is uncontended with one thread, and costs tens of ns beside a send's microseconds).
pub struct Lateness(Mutex<Histogram<u64>>);

/// What [`Lateness`] says, µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatenessSummary {
    pub chunks: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl Default for Lateness {
    fn default() -> Self {
        Self(Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds"),
        ))
    }
}

impl Lateness {
    /// One chunk, `late` after its deadline (zero if on time: a chunk is never sent early).
    pub fn record(&self, late: Duration) {
        if let Ok(mut h) = self.0.lock() {
            // Recorded as 1 µs more, so that on time (0) fits the histogram's range of 1 and up.
            h.saturating_record(late.as_micros() as u64 + 1);
        }
    }

    pub fn summary(&self) -> LatenessSummary {
        summarize(&self.mark().0)
    }

    /// Everything recorded so far, to measure a window from.
    pub fn mark(&self) -> Mark {
        Mark(
            self.0
                .lock()
                .map(|h| h.clone())
                .unwrap_or_else(|e| e.into_inner().clone()),
        )
    }

    /// The chunks recorded since `mark` was taken.
    pub fn summary_since(&self, mark: &Mark) -> LatenessSummary {
        let mut h = self.mark().0;
        // Counts only grow, so the subtraction cannot fail; on a mismatch, all of it.
        let _ = h.subtract(&mark.0);
        summarize(&h)
    }
}

/// A copy of the lateness histogram at one moment (the start of a measured window).
pub struct Mark(Histogram<u64>);

fn summarize(h: &Histogram<u64>) -> LatenessSummary {
    let at = |q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q).saturating_sub(1)
        }
    };
    LatenessSummary {
        chunks: h.len(),
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: if h.is_empty() { 0 } else { h.max() - 1 },
    }
}

impl LatenessSummary {
    /// The line `serve-mock` prints when it exits.
    pub fn line(&self) -> String {
        format!(
            "serve-mock: {} content chunks; lateness (send − deadline) p50 {} µs, p99 {} µs, max {} µs",
            self.chunks, self.p50_us, self.p99_us, self.max_us
        )
    }

    /// The `/metrics` series: a summary in seconds, with `quantile` labels.
    pub fn prometheus(&self) -> String {
        let name = "qpsbench_mock_chunk_lateness_seconds";
        let s = |us: u64| us as f64 / 1e6;
        format!(
            "# HELP {name} Content chunk send time minus its deadline.\n# TYPE {name} summary\n{name}{{quantile=\"0.5\"}} {}\n{name}{{quantile=\"0.99\"}} {}\n{name}{{quantile=\"1\"}} {}\n{name}_count {}\n",
            s(self.p50_us),
            s(self.p99_us),
            s(self.max_us),
            self.chunks
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_time_chunks_read_zero_and_late_ones_their_lateness() {
        let l = Lateness::default();
        assert_eq!(l.summary().chunks, 0);
        for _ in 0..98 {
            l.record(Duration::ZERO);
        }
        l.record(Duration::from_micros(900));
        l.record(Duration::from_millis(5));
        let s = l.summary();
        assert_eq!((s.chunks, s.p50_us), (100, 0));
        assert!((899..=901).contains(&s.p99_us), "{s:?}");
        assert!((4_995..=5_005).contains(&s.max_us), "{s:?}");
        assert!(s
            .prometheus()
            .contains("qpsbench_mock_chunk_lateness_seconds_count 100\n"));
        assert!(s.line().contains("p50 0 µs"));
    }

    #[test]
    fn a_window_from_a_mark_counts_only_the_chunks_after_it() {
        let l = Lateness::default();
        l.record(Duration::from_millis(40));
        let mark = l.mark();
        for _ in 0..10 {
            l.record(Duration::from_micros(300));
        }
        let s = l.summary_since(&mark);
        assert_eq!(s.chunks, 10);
        assert!((299..=301).contains(&s.p99_us), "{s:?}");
        assert!((299..=301).contains(&s.max_us), "{s:?}");
        assert_eq!(l.summary().chunks, 11);
    }
}
