//! The one check for numeric flags, shared by every command: a value must lie in its flag's
//! documented range, or the command stops before doing anything with exit status 2 and a message
//! that names the flag, the value given and the range expected.
//!
//! The ranges are generous (nobody runs a level for a year), but finite: every value that passes
//! can be turned into a `Duration`, a schedule or a buffer without overflow or absurd memory.

use crate::foundation::error::{Result, UserError};

/// The largest number of seconds any time flag accepts (about 11.6 days): far beyond any
/// benchmark, far below what overflows a `Duration` or a nanosecond count.
pub const MAX_SECONDS: f64 = 1_000_000.0;
/// The highest request rate any flag accepts.
pub const MAX_QPS: f64 = 10_000_000.0;
/// The most requests one level may plan (its schedule is a vector of this many arrivals).
pub const MAX_REQUESTS_PER_LEVEL: u64 = 100_000_000;

/// Where a range starts.
#[derive(Debug, Clone, Copy)]
pub enum Low {
    /// Strictly above this value.
    Above(f64),
    /// This value or more.
    From(f64),
}

/// `v` if it is finite and within (`low`, `max`]; else the flag's error.
pub fn check(flag: &str, v: f64, low: Low, max: f64, what: &str) -> Result<f64> {
    let above_low = match low {
        Low::Above(l) => v > l,
        Low::From(l) => v >= l,
    };
    if v.is_finite() && above_low && v <= max {
        return Ok(v);
    }
    let low_text = match low {
        Low::Above(l) => format!("above {l}"),
        Low::From(l) => format!("from {l}"),
    };
    Err(UserError::input(format!(
        "{flag} {v}: expected {what} {low_text}, at most {max}"
    )))
}

/// Seconds above 0, at most [`MAX_SECONDS`].
pub fn seconds(flag: &str, v: f64) -> Result<f64> {
    check(flag, v, Low::Above(0.0), MAX_SECONDS, "a number of seconds")
}

/// An optional [`seconds`] flag.
pub fn seconds_opt(flag: &str, v: Option<f64>) -> Result<Option<f64>> {
    v.map(|v| seconds(flag, v)).transpose()
}

/// A request rate above 0, at most [`MAX_QPS`].
pub fn rate(flag: &str, v: f64) -> Result<f64> {
    check(flag, v, Low::Above(0.0), MAX_QPS, "a rate")
}

/// A whole number in `lo..=hi`.
pub fn count(flag: &str, v: u64, lo: u64, hi: u64, what: &str) -> Result<u64> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(UserError::input(format!(
            "{flag} {v}: expected at least {lo}, at most {hi} ({what})"
        )))
    }
}

/// Refuses a level that would plan more than [`MAX_REQUESTS_PER_LEVEL`] requests.
pub fn plan_size(flag: &str, qps: f64, seconds: f64) -> Result<()> {
    let n = (qps * seconds).round();
    if n > MAX_REQUESTS_PER_LEVEL as f64 {
        return Err(UserError::input(format!(
            "{flag} {qps} over {seconds} s plans {n:.0} requests in one level; at most {MAX_REQUESTS_PER_LEVEL} are allowed (the schedule is held in memory): lower the rate or the duration"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_name_the_flag_the_value_and_the_bounds() {
        assert_eq!(seconds("--timeout", 120.0), Ok(120.0));
        let e = seconds("--timeout", 1e20).unwrap_err();
        assert_eq!(e.exit_code, 2);
        assert_eq!(
            e.message,
            "--timeout 100000000000000000000: expected a number of seconds above 0, at most 1000000"
        );
        assert!(seconds("--timeout", f64::NAN).is_err());
        assert!(seconds("--timeout", 0.0).is_err());
        assert!(check("--warmup", 0.0, Low::From(0.0), 10.0, "seconds").is_ok());
        assert!(rate("--qps", 1e9)
            .unwrap_err()
            .message
            .starts_with("--qps 1000000000:"));
        assert!(count("--cores", 0, 1, 4096, "cores").is_err());
        assert!(plan_size("--qps", 1e6, 1e6)
            .unwrap_err()
            .message
            .contains("at most 100000000"));
        assert!(plan_size("--qps", 1000.0, 60.0).is_ok());
        // Every accepted time fits a Duration and a ns count.
        let _ = std::time::Duration::from_secs_f64(MAX_SECONDS);
        assert!(MAX_SECONDS * 1e9 < u64::MAX as f64);
    }
}
