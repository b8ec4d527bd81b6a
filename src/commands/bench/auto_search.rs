//! `--qps auto`: the capacity search, one of the two strategies that choose a run's levels
//! (beside `levels::Fixed`). Each probed rate is a normal level measured through `Levels`; the
//! `Judge` holds it against the endpoint unloaded (the probe's baseline).

use super::levels::{Levels, Strategy};
use crate::foundation::error::Result;
use crate::foundation::rate::{round as round_rate, text as rate};
use crate::report::analysis::{self, Baseline, Criteria, LevelView};

/// `--qps auto`: doubles from `--auto-start` until a level saturates (the analysis' rules,
/// against the endpoint unloaded), or halves from it while even the first rate saturates, then
/// bisects between the last good and the first saturated rate until they are within
/// `--auto-tolerance`, or until no rate between them would send a different number of
/// requests (the resolution of `--duration`). Every probed level is a normal level. A
/// client-limited level stops the search: it would measure the client, not the endpoint.
pub struct AutoSearch {
    pub start: f64,
    pub max: f64,
    pub tolerance: f64,
}

impl Strategy for AutoSearch {
    fn run(&self, levels: &mut Levels<'_>) -> Result<Option<[f64; 2]>> {
        let mut judge = Judge::new(&levels.criteria);
        let q = self.start;
        let Some(first) = judge.saturated(levels, q)? else {
            return Ok(None);
        };
        let bracket = if first {
            self.step_down(levels, &mut judge, q)?
        } else {
            self.step_up(levels, &mut judge, q)?
        };
        let Some([mut lo, mut hi]) = bracket else {
            return Ok(None);
        };
        let d = levels.plan.workload.duration;
        while (hi - lo) / lo > self.tolerance {
            let mid = round_rate((lo + hi) / 2.0);
            let n = |q: f64| levels.plan.arrivals_at(q);
            if mid <= lo || mid >= hi || n(mid) == n(lo) || n(mid) == n(hi) {
                eprintln!(
                    "auto: stopping at the resolution of --duration {d} s: QPS {} and QPS {} send {} and {} requests, and no rate between them sends another number (a longer --duration refines it)",
                    rate(lo), rate(hi), n(lo), n(hi)
                );
                break;
            }
            match judge.saturated(levels, mid)? {
                None => break,
                Some(true) => hi = mid,
                Some(false) => lo = mid,
            }
        }
        eprintln!(
            "auto: capacity between QPS {} (holds) and QPS {} (saturates)",
            rate(lo),
            rate(hi)
        );
        Ok(Some([lo, hi]))
    }
}

impl AutoSearch {
    /// The first rate held: doubles until a level saturates; the bracket, or `None` when the
    /// search stops (interrupted, client-limited, or no saturation up to `--auto-max-qps`).
    fn step_up(
        &self,
        levels: &mut Levels<'_>,
        judge: &mut Judge,
        mut q: f64,
    ) -> Result<Option<[f64; 2]>> {
        loop {
            if q >= self.max {
                eprintln!(
                    "auto: no saturation up to --auto-max-qps {}; the capacity is higher",
                    rate(self.max)
                );
                return Ok(None);
            }
            let next = round_rate((q * 2.0).min(self.max));
            match judge.saturated(levels, next)? {
                None => return Ok(None),
                Some(true) => return Ok(Some([q, next])),
                Some(false) => q = next,
            }
        }
    }

    /// The first rate saturated already: halves until a level holds, rather than take a loaded
    /// first level for a healthy one. `None` when even a rate of one request per level
    /// saturates (or the search stops).
    fn step_down(
        &self,
        levels: &mut Levels<'_>,
        judge: &mut Judge,
        mut q: f64,
    ) -> Result<Option<[f64; 2]>> {
        loop {
            let next = round_rate(q / 2.0);
            if levels.plan.arrivals_at(next) < 2 {
                eprintln!(
                    "auto: saturated even at QPS {}; a lower rate would send fewer than 2 requests in --duration {} s: the capacity is below QPS {} (lengthen --duration to go lower)",
                    rate(q),
                    levels.plan.workload.duration,
                    rate(q)
                );
                return Ok(None);
            }
            eprintln!(
                "auto: QPS {} already saturates; stepping down to QPS {}",
                rate(q),
                rate(next)
            );
            match judge.saturated(levels, next)? {
                None => return Ok(None),
                Some(true) => q = next,
                Some(false) => return Ok(Some([next, q])),
            }
        }
    }
}

/// The search's judge: each level against the endpoint unloaded (the probe's baseline),
/// settled by the first level that holds by the load rules, or, without one, against the
/// first level measured.
struct Judge {
    base: Baseline,
}

impl Judge {
    fn new(c: &Criteria) -> Self {
        Self {
            base: Baseline::of([], c),
        }
    }

    /// Measures `q`: whether it saturates, or `None` when the search must stop (interrupted, or
    /// client-limited).
    fn saturated(&mut self, levels: &mut Levels<'_>, q: f64) -> Result<Option<bool>> {
        let stats = levels.measure(q)?;
        if crate::foundation::interrupt::requested() {
            return Ok(None);
        }
        if stats.client.client_limited {
            eprintln!(
                "auto: QPS {} is client-limited ({}); stopping the search: beyond this rate qpsbench would measure itself, not the endpoint. Give it more cores (--cores) or run it on a bigger machine.",
                rate(q),
                stats.client.client_limited_reasons.join("; ")
            );
            return Ok(None);
        }
        let v = LevelView::from(&stats);
        if self.base.unloaded {
            // The first level that holds by the load rules settles the growth reference.
            self.base.settle(&v, &levels.criteria);
        } else {
            let first = Baseline::of([&v], &levels.criteria);
            self.base.ttft_p95 = self.base.ttft_p95.or(first.ttft_p95);
            self.base.e2e_p50 = self.base.e2e_p50.or(first.e2e_p50);
            self.base.e2e_p95 = self.base.e2e_p95.or(first.e2e_p95);
        }
        let why = analysis::saturation_reasons(&v, &self.base, &levels.criteria);
        if why.is_empty() {
            eprintln!("auto: QPS {} holds", rate(q));
        } else {
            eprintln!("auto: QPS {} saturates: {}", rate(q), why.join("; "));
        }
        Ok(Some(!why.is_empty()))
    }
}
