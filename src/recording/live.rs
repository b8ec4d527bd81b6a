//! Live counters: what each core has done so far in the current level, for the progress line.
//! Beside `recorder`, which publishes into them.
//!
//! Each core owns one [`LiveCounters`] block, aligned to its own cache lines, and is its only
//! writer: it publishes with relaxed stores (a load and a store, no locked read-modify-write),
//! so the send and read paths take no lock and write no line another core writes. A reporter
//! thread that is not a client core reads every block about once a second; what it reads may be
//! a moment old, which a progress line does not mind. The level's figures never come from here
//! (they come from the recorders), so nothing measured depends on this.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Sub-buckets per power of two in [`LogBuckets`]: values are told apart within ~9%.
const SUB: u32 = 8;
/// Buckets: up to 2^40 (ns: ~18 minutes).
const BUCKETS: usize = (41 * SUB) as usize;

/// A coarse histogram of counts in log buckets, written by one thread and read by another.
pub struct LogBuckets([AtomicU64; BUCKETS]);

impl Default for LogBuckets {
    fn default() -> Self {
        Self(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// The bucket of `v`: its power of two and the next 3 bits below the leading one.
fn bucket(v: u64) -> usize {
    let v = v.max(1);
    let e = 63 - v.leading_zeros();
    let sub = if e >= 3 {
        (v >> (e - 3)) & 7
    } else {
        (v << (3 - e)) & 7
    };
    ((e * SUB) as usize + sub as usize).min(BUCKETS - 1)
}

/// The largest value of bucket `i`.
fn bucket_top(i: usize) -> u64 {
    let (e, sub) = ((i as u32) / SUB, (i as u32) % SUB);
    let base = 1u64 << e;
    base + ((u64::from(sub) + 1) << e).div_ceil(u64::from(SUB)) - 1
}

/// Adds one to a counter that only this thread writes.
fn bump(c: &AtomicU64, by: u64) {
    c.store(c.load(Relaxed) + by, Relaxed);
}

impl LogBuckets {
    fn record(&self, v: u64) {
        bump(&self.0[bucket(v)], 1);
    }

    /// The counts, read now.
    pub fn snapshot(&self) -> Vec<u64> {
        self.0.iter().map(|c| c.load(Relaxed)).collect()
    }

    fn reset(&self) {
        for c in &self.0 {
            c.store(0, Relaxed);
        }
    }
}

/// The value at quantile `q` (0 to 1) of bucket counts (an upper bound within ~9%); `None`
/// when empty.
pub fn quantile(counts: &[u64], q: f64) -> Option<u64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, &c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some(bucket_top(i));
        }
    }
    None
}

/// One core's counters for the current level (measured window only).
#[repr(align(128))]
#[derive(Default)]
pub struct LiveCounters {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Abandoned (`--cancel-rate`).
    pub cancelled: AtomicU64,
    /// Send lag of each send, ns.
    pub send_lag_ns: LogBuckets,
    /// TTFT of each success, ns.
    pub ttft_ns: LogBuckets,
}

impl std::fmt::Debug for LiveCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCounters")
            .field("sent", &self.sent.load(Relaxed))
            .field("ok", &self.ok.load(Relaxed))
            .field("failed", &self.failed.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl LiveCounters {
    /// Zeroes the counters at a level's start (by the owning core, before it sends).
    pub fn reset(&self) {
        for c in [&self.sent, &self.ok, &self.failed, &self.cancelled] {
            c.store(0, Relaxed);
        }
        self.send_lag_ns.reset();
        self.ttft_ns.reset();
    }

    pub fn sent(&self, lag_ns: u64) {
        bump(&self.sent, 1);
        self.send_lag_ns.record(lag_ns);
    }

    pub fn ok(&self, ttft_ns: Option<u64>) {
        bump(&self.ok, 1);
        if let Some(t) = ttft_ns {
            self.ttft_ns.record(t);
        }
    }

    pub fn failed(&self) {
        bump(&self.failed, 1);
    }

    pub fn cancelled(&self) {
        bump(&self.cancelled, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_their_values_within_a_ninth() {
        for v in [1u64, 2, 7, 8, 9, 100, 1000, 45_000, 1 << 30, 123_456_789] {
            let top = bucket_top(bucket(v));
            assert!(
                top >= v && (top - v) as f64 <= v as f64 / 8.0 + 1.0,
                "{v}: {top}"
            );
        }
        let b = LogBuckets::default();
        for v in 1..=100u64 {
            b.record(v * 1000);
        }
        let counts = b.snapshot();
        let p50 = quantile(&counts, 0.5).unwrap();
        assert!((50_000..=56_000).contains(&p50), "{p50}");
        let p99 = quantile(&counts, 0.99).unwrap();
        assert!((99_000..=112_000).contains(&p99), "{p99}");
        assert_eq!(quantile(&[0; BUCKETS], 0.5), None);
        let c = LiveCounters::default();
        c.sent(5);
        c.ok(Some(10));
        c.failed();
        assert_eq!(c.sent.load(Relaxed), 1);
        c.reset();
        assert_eq!(c.ok.load(Relaxed), 0);
        assert_eq!(std::mem::align_of::<LiveCounters>(), 128);
    }
}
