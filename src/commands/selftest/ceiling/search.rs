//! The ceiling's search: a bisection over the request rate, and what its probes say about each
//! side (see the parent module for the criteria).

use super::{Ceiling, Probe, Setup, OUTPUT_TOKENS};
use crate::foundation::error::Result;

/// Rates tried per setup, at most; the search also ends once the bracket is within 10%.
const MAX_PROBES: usize = 10;
const PRECISION: f64 = 0.10;

/// What one rate says about each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub endpoint_ok: bool,
    pub client_ok: bool,
}

/// The rates a bisection tried, with what each said.
#[derive(Debug, Default)]
pub struct Search {
    pub tried: Vec<(f64, Outcome)>,
}

impl Search {
    /// The highest rate at which `ok` held.
    fn best(&self, ok: impl Fn(&Outcome) -> bool) -> Option<f64> {
        self.tried
            .iter()
            .filter(|(_, o)| ok(o))
            .map(|(q, _)| *q)
            .reduce(f64::max)
    }

    /// The lowest rate above `floor` at which both sides did not meet their criteria, and what
    /// it said.
    fn failure_above(&self, floor: f64) -> Option<(f64, Outcome)> {
        self.tried
            .iter()
            .filter(|(q, o)| *q > floor && !(o.endpoint_ok && o.client_ok))
            .copied()
            .reduce(|a, b| if b.0 < a.0 { b } else { a })
    }
}

/// The search over the rate from `start`. It climbs first, doubling the rate: on past a
/// failure (below some rate an idle machine's wake-ups make a side miss its bounds, which says
/// nothing of its ceiling), until the endpoint runs late or the client fails twice in a row.
/// Then it narrows the bracket [highest pass, lowest failure above it] to within 10%. If
/// nothing passed, it halves below `start`, at most twice. A rate that fails is tried once
/// more and fails only if it fails again: a machine that stalls by itself now and then (a VM)
/// would otherwise end the search at a rate far below either side's ceiling.
pub fn bisect(start: f64, mut probe: impl FnMut(f64) -> Result<Outcome>) -> Result<Search> {
    let both = |o: &Outcome| o.endpoint_ok && o.client_ok;
    let mut s = Search::default();
    let (mut q, mut climbing, mut misses) = (start, true, 0);
    for _ in 0..MAX_PROBES {
        let mut o = probe(q)?;
        if !both(&o) {
            o = probe(q)?;
        }
        s.tried.push((q, o));
        misses = if both(&o) { 0 } else { misses + 1 };
        climbing &= o.endpoint_ok && misses < 2;
        let pass = s.best(both);
        let fail = s.failure_above(pass.unwrap_or(0.0)).map(|(f, _)| f);
        q = match (pass, fail) {
            (Some(p), Some(f)) if (f - p) / p <= PRECISION => break,
            _ if climbing => q * 2.0,
            (Some(p), Some(f)) => ((p + f) / 2.0).round(),
            (Some(_), None) => break,
            (None, _) => {
                let lowest = s.tried.iter().map(|(r, _)| *r).fold(f64::MAX, f64::min);
                if lowest <= (start / 4.0).ceil() {
                    break;
                }
                (lowest / 2.0).round()
            }
        };
    }
    Ok(s)
}

/// A setup's ceilings from its search (and the probes' figures).
pub fn conclude(setup: Setup, search: &Search, probes: Vec<Probe>) -> Ceiling {
    let per_request = chunks_per_request(setup);
    let endpoint_best = search.best(|o| o.endpoint_ok);
    let client_best = search.best(|o| o.endpoint_ok && o.client_ok);
    let failure = search.failure_above(client_best.unwrap_or(0.0));
    let endpoint_found = search.tried.iter().any(|(_, o)| !o.endpoint_ok);
    // A client failure counts only where the endpoint kept its schedule.
    let client_found = failure.is_some_and(|(_, o)| o.endpoint_ok && !o.client_ok);
    let verdict = match (client_best, failure) {
        (_, None) => "both sides met their criteria at every rate tried".to_string(),
        (Some(q), Some((f, _))) if client_found => {
            format!("the client's ceiling: {q} QPS per core (it fell short at {f} QPS)")
        }
        (Some(q), Some((f, _))) => format!(
            "the endpoint ran out first, at {f} QPS: the client's ceiling is at least {q} QPS"
        ),
        (None, Some((f, o))) => format!(
            "no rate passed: at {f} QPS the {} fell short",
            if o.endpoint_ok { "client" } else { "endpoint" }
        ),
    };
    Ceiling {
        tokens_per_chunk: setup.tokens_per_chunk,
        tls: setup.tls,
        chunks_per_request: per_request,
        endpoint_chunks_per_sec_per_core: endpoint_best.and_then(|q| {
            probes
                .iter()
                .find(|p| p.qps == q)
                .map(|p| p.chunks_per_sec.round())
        }),
        endpoint_ceiling_found: endpoint_found,
        ceiling_qps_per_core: client_best,
        client_ceiling_found: client_found,
        receive_path: "",
        verdict,
        probes,
        floor: None,
    }
}

/// Content chunks per answer.
pub fn chunks_per_request(setup: Setup) -> u64 {
    OUTPUT_TOKENS.div_ceil(setup.tokens_per_chunk.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::selftest::ceiling::SETUPS;
    use crate::foundation::error::UserError;

    fn run(endpoint_max: f64, client_max: f64) -> Search {
        bisect(250.0, |q| {
            Ok(Outcome {
                endpoint_ok: q <= endpoint_max,
                client_ok: q <= client_max,
            })
        })
        .unwrap()
    }

    #[test]
    fn the_search_brackets_the_first_side_to_run_out_within_ten_percent() {
        let s = run(1800.0, 5000.0);
        let pass = s.best(|o| o.endpoint_ok && o.client_ok).unwrap();
        let (fail, o) = s.failure_above(pass).unwrap();
        assert!(pass <= 1800.0 && fail > 1800.0, "{s:?}");
        assert!((fail - pass) / pass <= PRECISION, "{s:?}");
        assert!(!o.endpoint_ok && o.client_ok);
        let c = conclude(SETUPS[0], &s, Vec::new());
        assert!(c.endpoint_ceiling_found && !c.client_ceiling_found);
        assert!(
            c.verdict.contains("endpoint ran out first"),
            "{}",
            c.verdict
        );
    }

    #[test]
    fn the_climb_goes_on_past_one_failure_at_a_low_rate() {
        // A client that misses its bounds at 250 (an idle machine's wake-ups) but not above,
        // up to 3000.
        let s = bisect(250.0, |q| {
            Ok(Outcome {
                endpoint_ok: true,
                client_ok: q != 250.0 && q <= 3000.0,
            })
        })
        .unwrap();
        let c = conclude(SETUPS[0], &s, Vec::new());
        let q = c.ceiling_qps_per_core.unwrap();
        assert!((2700.0..=3000.0).contains(&q), "{s:?}");
        assert!(c.client_ceiling_found, "{}", c.verdict);
    }

    #[test]
    fn a_rate_that_fails_once_is_tried_again() {
        let mut calls = std::collections::HashMap::new();
        let s = bisect(250.0, |q| {
            let n = calls.entry(q as u64).or_insert(0);
            *n += 1;
            // 1000 fails its first try only (a stall); above 3000 the client runs out.
            let flaky = q == 1000.0 && *n == 1;
            Ok(Outcome {
                endpoint_ok: true,
                client_ok: !flaky && q <= 3000.0,
            })
        })
        .unwrap();
        assert!(
            s.tried.iter().all(|(q, o)| o.client_ok == (*q <= 3000.0)),
            "{s:?}"
        );
        assert_eq!(calls[&1000], 2);
        assert!(
            conclude(SETUPS[0], &s, Vec::new())
                .ceiling_qps_per_core
                .unwrap()
                >= 2700.0
        );
    }

    #[test]
    fn a_client_that_runs_out_first_leaves_the_endpoint_a_lower_bound() {
        // Where both fail at once, the endpoint is blamed, not the client.
        let s = run(1000.0, 1000.0);
        let c = conclude(SETUPS[0], &s, Vec::new());
        assert!(!c.client_ceiling_found, "{}", c.verdict);
        assert!(
            c.verdict.contains("endpoint ran out first"),
            "{}",
            c.verdict
        );
        let s = run(1e9, 700.0);
        let c = conclude(SETUPS[1], &s, Vec::new());
        assert!(!c.endpoint_ceiling_found && c.client_ceiling_found, "{s:?}");
        let q = c.ceiling_qps_per_core.unwrap();
        assert!((630.0..=700.0).contains(&q), "{s:?}");
        assert!(c.verdict.starts_with("the client's ceiling"));
        assert_eq!(c.chunks_per_request, 2);
    }

    #[test]
    fn a_first_rate_that_fails_halves_down_and_an_error_stops_the_search() {
        let s = run(100.0, 100.0);
        // 250 and 500 fail (the climb stops at the endpoint's first late rate), then 125.
        assert_eq!(s.tried[1].0, 125.0, "{s:?}");
        assert!(s.best(|o| o.endpoint_ok).unwrap() <= 100.0);
        // Below a quarter of the first rate it stops looking.
        let s = run(10.0, 10.0);
        assert_eq!(s.tried.len(), 3, "{s:?}");
        assert_eq!(
            conclude(SETUPS[0], &s, Vec::new()).ceiling_qps_per_core,
            None
        );
        let err = bisect(250.0, |_| Err(UserError::runtime("down"))).unwrap_err();
        assert!(err.to_string().contains("down"));
    }
}
