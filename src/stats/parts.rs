//! The pieces a level's result is made of (`super::LevelStats`): its clock and windows, send
//! lag, connections, client CPU, the concurrency cap, warm-up and the stream error messages.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::recording::recorder::{Recorder, STREAM_MESSAGES_SHOWN};
use crate::stats::percentiles::{round6, Percentiles};

/// One client core's CPU use during a level.
#[derive(Debug, Clone, Serialize)]
pub struct CoreCpu {
    pub core: usize,
    pub cpu_s: f64,
    /// CPU time ÷ the level's wall time (from its start until its last request ended), %.
    pub busy_pct: f64,
}

/// What `--max-concurrency` did in one level.
#[derive(Debug, Clone, Serialize)]
pub struct CapStats {
    pub limit: usize,
    /// Arrivals that were due while every slot was taken.
    pub waited: u64,
    /// How long they waited (intended → sent), µs; null when none waited.
    pub wait_us: Option<SendLag>,
}

impl CapStats {
    /// `--max-concurrency` at `limit`: what it held back of the recorder's arrivals.
    pub fn new(limit: usize, r: &Recorder) -> Self {
        Self {
            limit,
            waited: r.capped,
            wait_us: (r.capped > 0).then(|| SendLag::from_ns(&r.hist.cap_wait_ns)),
        }
    }
}

/// The warm-up before a level's measured window.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupStats {
    pub seconds: f64,
    pub requests: u64,
    pub successful: u64,
}

/// Send-lag summary in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct SendLag {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl SendLag {
    /// p50/p99/max of a histogram of nanoseconds, in µs (zeros when empty).
    pub fn from_ns(h: &Histogram<u64>) -> Self {
        let q = |q: f64| round6(h.value_at_quantile(q) as f64 / 1000.0);
        Self {
            p50: q(0.5),
            p99: q(0.99),
            max: round6(h.max() as f64 / 1000.0),
        }
    }
}

/// Connection setup for one level: the warm-up before the window and the connections opened
/// during it, with their TCP connect and TLS handshake times (µs; kept apart from TTFT).
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionStats {
    pub warmed_up: u64,
    pub warmup_failures: u64,
    pub warmup_connect_us: Percentiles,
    pub warmup_tls_handshake_us: Percentiles,
    pub opened_in_window: u64,
    pub connect_us: Percentiles,
    pub tls_handshake_us: Percentiles,
}

impl ConnectionStats {
    pub fn new(warm: &Recorder, level: &Recorder) -> Self {
        let p = [50.0, 90.0, 99.0];
        Self {
            warmed_up: warm.new_connections,
            warmup_failures: warm.errors.values().map(|e| e.count).sum(),
            warmup_connect_us: Percentiles::from_hist(&warm.hist.connect_us, &p, 1.0),
            warmup_tls_handshake_us: Percentiles::from_hist(&warm.hist.handshake_us, &p, 1.0),
            opened_in_window: level.new_connections,
            connect_us: Percentiles::from_hist(&level.hist.connect_us, &p, 1.0),
            tls_handshake_us: Percentiles::from_hist(&level.hist.handshake_us, &p, 1.0),
        }
    }
}

/// The share of multi-token responses that delivered all their tokens in one read above which a
/// level is reported as looking buffered.
pub const BUFFERED_SHARE: f64 = 0.9;

/// One message behind the `Stream error` category.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StreamMessage {
    pub message: String,
    pub count: u64,
}

/// The top [`STREAM_MESSAGES_SHOWN`] messages by count, the rest summed as `other`.
pub(super) fn top_stream_messages(r: &Recorder) -> Vec<StreamMessage> {
    let mut all = r.stream_messages.clone();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let other: u64 = r.stream_messages_other
        + all
            .iter()
            .skip(STREAM_MESSAGES_SHOWN)
            .map(|m| m.1)
            .sum::<u64>();
    let mut out: Vec<StreamMessage> = all
        .into_iter()
        .take(STREAM_MESSAGES_SHOWN)
        .map(|(message, count)| StreamMessage { message, count })
        .collect();
    if other > 0 {
        out.push(StreamMessage {
            message: "other".into(),
            count: other,
        });
    }
    out
}

/// Where a level sits in time (monotonic ns), for its windows.
#[derive(Debug, Clone, Copy)]
pub struct LevelClock {
    /// The measured window's start.
    pub start_ns: u64,
    /// `--duration`, seconds.
    pub duration_s: f64,
    /// When the level ended (every request finished, or the grace period ran out).
    pub end_ns: u64,
    /// Stopped by Ctrl-C / SIGTERM.
    pub interrupted: bool,
}

impl LevelClock {
    /// From the start to the last successful completion (to the end, if interrupted), s.
    pub(super) fn completion_window_s(&self, r: &Recorder) -> f64 {
        let end = if self.interrupted {
            self.end_ns
        } else {
            r.last_ok_ns
        };
        if r.succeeded == 0 && !self.interrupted {
            return 0.0;
        }
        end.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// `n ÷ secs`, 0 over an empty window.
pub(super) fn rate(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        round6(n as f64 / secs)
    } else {
        0.0
    }
}
