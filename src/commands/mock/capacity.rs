//! The built-in endpoint's opt-in capacity model: a shared output-token budget per second.
//!
//! With `n` streams in flight and a budget of `T` tokens/s, each stream gets at most `T / n`
//! tokens/s. When that is less than the configured `1 / itl`, inter-token latency and TTFT both
//! stretch by the same factor — latency grows with load the way a saturated GPU server's does.
//! Without a budget every stream runs at exactly the configured speed.

/// The model; cheap to evaluate once per chunk.
#[derive(Debug, Clone, Copy)]
pub struct Capacity {
    tokens_per_sec: Option<f64>,
    itl_s: f64,
}

impl Capacity {
    pub fn new(tokens_per_sec: Option<f64>, itl_ms: f64) -> Self {
        Self {
            tokens_per_sec: tokens_per_sec.filter(|t| *t > 0.0),
            itl_s: itl_ms.max(0.0) / 1000.0,
        }
    }

    /// How much slower than configured each stream runs with `active` streams in flight (≥ 1).
    pub fn slowdown(&self, active: usize) -> f64 {
        match self.tokens_per_sec {
            Some(t) if self.itl_s > 0.0 => (active as f64 / (t * self.itl_s)).max(1.0),
            _ => 1.0,
        }
    }

    /// Seconds per output token with `active` streams in flight.
    pub fn itl_s(&self, active: usize) -> f64 {
        match self.tokens_per_sec {
            Some(t) if self.itl_s == 0.0 => active as f64 / t,
            _ => self.itl_s * self.slowdown(active),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_grows_only_past_the_budget() {
        let c = Capacity::new(Some(1000.0), 10.0); // 100 tok/s per stream → 10 streams fit
        assert_eq!(c.slowdown(5), 1.0);
        assert_eq!(c.slowdown(10), 1.0);
        assert!((c.slowdown(20) - 2.0).abs() < 1e-9);
        assert!((c.itl_s(40) - 0.04).abs() < 1e-9);
        let none = Capacity::new(None, 10.0);
        assert_eq!(none.slowdown(1000), 1.0);
        assert!((Capacity::new(Some(100.0), 0.0).itl_s(10) - 0.1).abs() < 1e-9);
    }
}
