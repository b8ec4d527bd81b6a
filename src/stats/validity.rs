//! Validity gates: did the client keep up with its own plan? Computed once per level from the
//! merged recorder, and written into the level's JSON next to the endpoint's numbers.
//!
//! Data flow: `engine` returns a level's recorders (with every actual send time) → [`assess`] →
//! `bench` puts the verdict into `LevelStats`, marks the console table, and exits with status 3
//! when every level was client-limited.
//!
//! A level is **client-limited** when the client fell behind its own schedule in a way that
//! distorts what is measured: send-lag p99 above both `--max-send-lag-ms` (1 ms) and
//! `--max-send-lag-share` (5%) of the level's TTFT p50, with at least [`MIN_LATE_SENDS`] sends
//! that late (in a level of 20 requests the p99 is the maximum, and one send delayed by a VM
//! preemption says nothing about the client keeping up; a 1.2 ms lag next to a 50 ms TTFT
//! distorts nothing); or an achieved rate below `--min-rate-ratio` (99%) of the target, short
//! by at least [`MIN_LATE_SENDS`] requests, while the server was answering (a rate missed
//! because every connection was refused is the endpoint's failure, and arrivals held back by
//! `--max-concurrency` are the user's cap); or requests that failed for the client's own lack
//! of file descriptors or ports. Such a level measures the client, not the endpoint.
//!
//! The goodness-of-fit of the realised send gaps is reported, not gated: a Kolmogorov–Smirnov
//! test against the configured distribution (exponential or gamma with the planned mean), or,
//! for constant arrivals, how far each gap strayed from the planned one.

use serde::Serialize;

use crate::workload::arrivals::Arrival;

/// Sends later than the threshold needed, beyond a p99 above it, to flag a level.
pub const MIN_LATE_SENDS: u64 = 3;

/// The thresholds of the client-limited flag.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Send-lag p99 above this (µs) flags the level (with the share rule below).
    pub max_send_lag_p99_us: f64,
    /// ...and above this fraction of the level's TTFT p50 (0: the absolute bound alone, as
    /// `selftest` judges).
    pub max_send_lag_share: f64,
    /// Achieved ÷ target rate below this flags the level.
    pub min_rate_ratio: f64,
}

/// How well the realised send gaps follow the configured arrival process.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GapFit {
    /// `ks` (Kolmogorov–Smirnov vs exponential or gamma), or `gap_error` (constant arrivals).
    pub test: &'static str,
    pub gaps: usize,
    /// KS: the largest distance between the empirical and the configured CDF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// KS: the probability of a distance this large if the gaps followed the distribution (a
    /// value below 0.01 says the realised process is not the configured one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// gap_error: |realised gap − planned gap|, µs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_error_us: Option<GapError>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GapError {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The verdict on one level.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub client_limited: bool,
    /// Why, in words (empty when not limited).
    pub reasons: Vec<String>,
}

/// What [`assess`] looks at.
#[derive(Debug, Clone)]
pub struct LevelFacts {
    pub target_qps: f64,
    pub actual_qps: f64,
    pub send_lag_p99_us: f64,
    /// Sends later than `max_send_lag_p99_us`.
    pub late_sends: u64,
    pub sent: u64,
    /// Requests that got any HTTP response (the server was answering).
    pub answered: u64,
    /// Arrivals held back by `--max-concurrency`.
    pub capped: u64,
    /// The level's TTFT p50, µs (none without a successful request).
    pub ttft_p50_us: Option<f64>,
    /// Requests that failed for the client's own limits, by category.
    pub client_errors: Vec<(String, u64)>,
}

/// Decides whether the client kept up.
pub fn assess(f: &LevelFacts, t: &Thresholds) -> Verdict {
    let mut reasons = Vec::new();
    // Without a TTFT (no success) or with the share rule off, the absolute bound alone decides.
    let over_share = match f.ttft_p50_us {
        Some(ttft) if t.max_send_lag_share > 0.0 => f.send_lag_p99_us > ttft * t.max_send_lag_share,
        _ => true,
    };
    if f.sent > 0
        && f.send_lag_p99_us > t.max_send_lag_p99_us
        && over_share
        && f.late_sends >= MIN_LATE_SENDS
    {
        let share = match f.ttft_p50_us.filter(|_| t.max_send_lag_share > 0.0) {
            Some(ttft) => format!(
                " and {:.1}% of the TTFT p50 {:.0} µs (above {:.0}%)",
                f.send_lag_p99_us * 100.0 / ttft,
                ttft,
                t.max_send_lag_share * 100.0
            ),
            None => String::new(),
        };
        reasons.push(format!(
            "send lag p99 {:.0} µs is above {:.0} µs{share} ({} requests left later than {:.0} µs)",
            f.send_lag_p99_us, t.max_send_lag_p99_us, f.late_sends, t.max_send_lag_p99_us
        ));
    }
    for (category, n) in &f.client_errors {
        reasons.push(format!(
            "{n} request(s) failed with '{category}': the client's own limit, not the endpoint's"
        ));
    }
    let ratio = f.actual_qps / f.target_qps;
    // The requests the target rate would have sent in the window these took: a level missing
    // fewer than MIN_LATE_SENDS of them lost its rate to one or two late last sends (a 20-request
    // level whose last send a VM pause held 12 ms is 1.2% short), not to a client behind.
    let shortfall = f.sent as f64 / ratio - f.sent as f64;
    if f.answered > 0
        && f.capped == 0
        && f.sent > 1
        && ratio < t.min_rate_ratio
        && shortfall >= MIN_LATE_SENDS as f64
    {
        reasons.push(format!(
            "achieved {:.2} QPS is {:.1}% of the target {:.2} (below {:.0}%)",
            f.actual_qps,
            ratio * 100.0,
            f.target_qps,
            t.min_rate_ratio * 100.0
        ));
    }
    Verdict {
        client_limited: !reasons.is_empty(),
        reasons,
    }
}

/// The arrival process a shard sees (`--shard K/N`): every N-th arrival of a Poisson process has
/// Erlang-N gaps (gamma, shape N), of a gamma process with shape B gamma gaps with shape N × B;
/// even gaps stay even.
pub fn thinned(arrival: Arrival, burstiness: f64, shards: usize) -> (Arrival, f64) {
    match (arrival, shards) {
        (_, 0 | 1) | (Arrival::Constant, _) => (arrival, burstiness),
        (Arrival::Poisson, n) => (Arrival::Gamma, n as f64),
        (Arrival::Gamma, n) => (Arrival::Gamma, burstiness * n as f64),
    }
}

/// Tests the realised gaps between `window_start_ns` and each sorted send time against the
/// configured process with the planned mean gap. None with fewer than 2 sends.
pub fn gap_fit(
    window_start_ns: u64,
    send_times_ns: &[u64],
    planned_mean_gap_s: f64,
    arrival: Arrival,
    burstiness: f64,
) -> Option<GapFit> {
    if send_times_ns.len() < 2
        || planned_mean_gap_s.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
    {
        return None;
    }
    let mut prev = window_start_ns.min(send_times_ns[0]);
    let mut gaps: Vec<f64> = send_times_ns
        .iter()
        .map(|&t| {
            let g = t.saturating_sub(prev) as f64 / 1e9;
            prev = t;
            g
        })
        .collect();
    gaps.sort_by(f64::total_cmp);
    let n = gaps.len();
    let mean = planned_mean_gap_s;
    let cdf: Box<dyn Fn(f64) -> f64> = match arrival {
        Arrival::Constant => {
            let mut err: Vec<f64> = gaps.iter().map(|g| (g - mean).abs() * 1e6).collect();
            err.sort_by(f64::total_cmp);
            let at = |q: f64| err[((q * (n - 1) as f64).round() as usize).min(n - 1)];
            let r = |v: f64| (v * 10.0).round() / 10.0;
            return Some(GapFit {
                test: "gap_error",
                gaps: n,
                statistic: None,
                p_value: None,
                gap_error_us: Some(GapError {
                    p50: r(at(0.5)),
                    p99: r(at(0.99)),
                    max: r(err[n - 1]),
                }),
            });
        }
        Arrival::Poisson => Box::new(move |x: f64| gamma_cdf(1.0, mean, x)),
        Arrival::Gamma => {
            let shape = burstiness;
            Box::new(move |x: f64| gamma_cdf(shape, mean / shape, x))
        }
    };
    let mut d: f64 = 0.0;
    for (i, &g) in gaps.iter().enumerate() {
        let f = cdf(g);
        d = d
            .max(f - i as f64 / n as f64)
            .max((i + 1) as f64 / n as f64 - f);
    }
    let r = |v: f64| (v * 1e6).round() / 1e6;
    Some(GapFit {
        test: "ks",
        gaps: n,
        statistic: Some(r(d)),
        p_value: Some(r(ks_p_value(d, n))),
        gap_error_us: None,
    })
}

/// P(D ≥ d) for the one-sample KS statistic over n samples (Stephens' approximation of the
/// Kolmogorov distribution; good for n ≥ 5).
fn ks_p_value(d: f64, n: usize) -> f64 {
    let sn = (n as f64).sqrt();
    let lambda = (sn + 0.12 + 0.11 / sn) * d;
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// The CDF at `x` of gamma-distributed gaps with this shape and scale (shape 1: exponential),
/// from statrs; 0 for a shape or scale statrs refuses (never the case for validated flags).
pub fn gamma_cdf(shape: f64, scale: f64, x: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Gamma};
    Gamma::new(shape, 1.0 / scale).map_or(0.0, |g| g.cdf(x))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::arrivals::plan;

    fn times(offsets: &[u64]) -> Vec<u64> {
        offsets.iter().map(|o| 1_000_000_000 + o).collect()
    }

    #[test]
    fn gamma_cdf_matches_known_values() {
        // Shape 1 is the exponential CDF; shape 2: 1 − e^−x (1 + x).
        for x in [0.1, 1.0, 3.0, 10.0] {
            assert!((gamma_cdf(1.0, 1.0, x) - (1.0 - (-x).exp())).abs() < 1e-10);
            let want = 1.0 - (-x).exp() * (1.0 + x);
            assert!((gamma_cdf(2.0, 1.0, x) - want).abs() < 1e-10);
        }
        // Shape 1/2: erf(√x).
        assert!((gamma_cdf(0.5, 1.0, 1.0) - 0.842_700_792_949_715).abs() < 1e-9);
        // The scale stretches x.
        assert!((gamma_cdf(2.0, 3.0, 6.0) - gamma_cdf(2.0, 1.0, 2.0)).abs() < 1e-12);
    }

    #[test]
    fn planned_schedules_pass_and_wrong_processes_fail() {
        let mean = 10.0 / 2000.0;
        let poisson = times(&plan(200.0, 10.0, Arrival::Poisson, 1.0, 7));
        let fit = gap_fit(1_000_000_000, &poisson, mean, Arrival::Poisson, 1.0).unwrap();
        assert_eq!(fit.test, "ks");
        assert!(fit.p_value.unwrap() > 0.01, "{fit:?}");
        let gamma = times(&plan(200.0, 10.0, Arrival::Gamma, 0.3, 7));
        let fit = gap_fit(1_000_000_000, &gamma, mean, Arrival::Gamma, 0.3).unwrap();
        assert!(fit.p_value.unwrap() > 0.01, "{fit:?}");
        // Bursty gaps are not Poisson, and even gaps are not either.
        let fit = gap_fit(1_000_000_000, &gamma, mean, Arrival::Poisson, 1.0).unwrap();
        assert!(fit.p_value.unwrap() < 0.001, "{fit:?}");
        let even = times(&plan(200.0, 10.0, Arrival::Constant, 1.0, 7));
        let fit = gap_fit(1_000_000_000, &even, mean, Arrival::Poisson, 1.0).unwrap();
        assert!(fit.p_value.unwrap() < 0.001, "{fit:?}");
        let fit = gap_fit(1_000_000_000, &even, mean, Arrival::Constant, 1.0).unwrap();
        assert_eq!(fit.test, "gap_error");
        assert!(fit.gap_error_us.unwrap().max < 1.0);
    }

    #[test]
    fn client_limited_rules() {
        let t = Thresholds {
            max_send_lag_p99_us: 1000.0,
            max_send_lag_share: 0.0,
            min_rate_ratio: 0.99,
        };
        let ok = LevelFacts {
            target_qps: 100.0,
            actual_qps: 99.5,
            send_lag_p99_us: 80.0,
            late_sends: 0,
            sent: 1000,
            answered: 1000,
            capped: 0,
            ttft_p50_us: Some(50_000.0),
            client_errors: Vec::new(),
        };
        assert!(!assess(&ok, &t).client_limited);
        let late = LevelFacts {
            send_lag_p99_us: 5000.0,
            late_sends: 20,
            ..ok.clone()
        };
        let v = assess(&late, &t);
        assert!(v.client_limited && v.reasons[0].contains("send lag p99 5000 µs"));
        // One or two outliers (a small level's p99 is its maximum) do not flag it.
        let outlier = LevelFacts {
            send_lag_p99_us: 5000.0,
            late_sends: 2,
            sent: 20,
            ..ok.clone()
        };
        assert!(!assess(&outlier, &t).client_limited);
        let slow = LevelFacts {
            actual_qps: 80.0,
            ..ok.clone()
        };
        assert!(assess(&slow, &t).reasons[0].contains("80.0% of the target"));
        // A small level one late send short of its rate is not flagged; 3 sends short is.
        let one_short = LevelFacts {
            actual_qps: 95.0,
            sent: 20,
            ..ok.clone()
        };
        assert!(!assess(&one_short, &t).client_limited);
        let three_short = LevelFacts {
            actual_qps: 85.0,
            sent: 20,
            ..ok.clone()
        };
        assert!(assess(&three_short, &t).client_limited);
        // A missed rate is not the client's fault when nothing answered or a cap held sends.
        let refused = LevelFacts {
            actual_qps: 80.0,
            answered: 0,
            ..ok.clone()
        };
        assert!(!assess(&refused, &t).client_limited);
        let capped = LevelFacts {
            actual_qps: 80.0,
            capped: 10,
            ..ok.clone()
        };
        assert!(!assess(&capped, &t).client_limited);
        // The client's own limits flag the level, naming the category.
        let fds = LevelFacts {
            client_errors: vec![("Client: out of file descriptors".into(), 7)],
            ..ok.clone()
        };
        let v = assess(&fds, &t);
        assert!(v.client_limited);
        assert!(v.reasons[0].contains("7 request(s) failed with 'Client: out of file descriptors'"));
    }

    #[test]
    fn send_lag_is_judged_against_the_ttft_it_distorts() {
        let t = Thresholds {
            max_send_lag_p99_us: 1000.0,
            max_send_lag_share: 0.05,
            min_rate_ratio: 0.99,
        };
        // 1.2 ms of lag next to a 50 ms TTFT (2.4%): host stalls, not a distorted level.
        let stalls = LevelFacts {
            target_qps: 200.0,
            actual_qps: 200.0,
            send_lag_p99_us: 1200.0,
            late_sends: 30,
            sent: 2000,
            answered: 2000,
            capped: 0,
            ttft_p50_us: Some(50_000.0),
            client_errors: Vec::new(),
        };
        assert!(!assess(&stalls, &t).client_limited);
        // 3 ms next to 50 ms (6%) is over both bounds; the reason gives both figures.
        let behind = LevelFacts {
            send_lag_p99_us: 3000.0,
            ..stalls.clone()
        };
        let v = assess(&behind, &t);
        assert!(v.client_limited);
        assert!(
            v.reasons[0]
                .contains("3000 µs is above 1000 µs and 6.0% of the TTFT p50 50000 µs (above 5%)"),
            "{:?}",
            v.reasons
        );
        // A fast endpoint (5 ms TTFT): the absolute bound is the tighter one.
        let fast = LevelFacts {
            send_lag_p99_us: 1100.0,
            ttft_p50_us: Some(5_000.0),
            ..stalls.clone()
        };
        assert!(assess(&fast, &t).client_limited);
        // No success, no TTFT: the absolute bound alone.
        let none = LevelFacts {
            ttft_p50_us: None,
            ..stalls
        };
        assert!(assess(&none, &t).client_limited);
    }
}
