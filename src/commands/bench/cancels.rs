//! `--cancel-rate` and `--cancel-after-ms`, checked into the engine's `CancelPlan`. Called by the
//! plan, after the numeric flags.

use crate::cli::BenchArgs;
use crate::engine::cancel::{parse_after, CancelPlan};
use crate::foundation::error::{Result, UserError};
use crate::foundation::flag_ranges::{check, Low};

/// The run's abandoned requests, or None (no `--cancel-rate`, or 0). A rate out of range, a
/// time that does not parse, or one flag without the other is an error naming the flag.
pub fn plan(a: &BenchArgs) -> Result<Option<CancelPlan>> {
    let w = &a.workload;
    let rate = check(
        "--cancel-rate",
        w.cancel_rate,
        Low::From(0.0),
        100.0,
        "a percentage",
    )?;
    let after = w
        .cancel_after_ms
        .as_deref()
        .map(parse_after)
        .transpose()
        .map_err(UserError::input)?;
    match (rate > 0.0, after) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(UserError::input(
            "--cancel-after-ms: applies with --cancel-rate PERCENT only",
        )),
        (true, None) => Err(UserError::input(format!(
            "--cancel-rate {rate}: add --cancel-after-ms (how long after its intended send a request is abandoned, e.g. 100 or 20-200)"
        ))),
        (true, Some(after_ms)) => Ok(Some(CancelPlan {
            share: rate / 100.0,
            after_ms,
            seed: a.seed,
        })),
    }
}
