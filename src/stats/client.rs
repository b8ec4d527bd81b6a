//! The client's verdict on itself for a benchmark's level (`context::ClientVerdict`): whether it kept to its
//! schedule (the gate, `validity::assess`, reading the recorder's own figures), how well the
//! realised send gaps follow the arrival process, each core's CPU, what `--max-concurrency`
//! held back and the warm-up. `LevelStats::build` works it out before the level's figures.

use super::context::{ClientVerdict, LevelContext};
use super::parts::{rate, CapStats, CoreCpu, SendLag, WarmupStats};
use super::percentiles::{round6, Percentiles};
use super::validity::{self, LevelFacts};
use super::{actual_qps, sending_window_s};
use crate::engine::LevelRun;
use crate::recording::outcome::ErrorKind;
use crate::recording::recorder::Recorder;
use crate::workload::arrivals::Arrival;

/// The client's verdict on itself for a benchmark's level, from the recorder's own figures and
/// the run: the gate (`validity::assess`), the send gaps' fit, CPU per core, the cap, the warm-up.
pub(super) fn client_verdict(run: &LevelRun, ctx: &LevelContext<'_>) -> ClientVerdict {
    let r = &run.merged;
    let verdict = validity::assess(&facts(r, ctx, run.window_start_ns), &ctx.thresholds);
    let (arrival, burstiness) = validity::thinned(ctx.arrival, ctx.burstiness, ctx.shards);
    let wall_ns = run.end_ns.saturating_sub(run.start_ns).max(1) as f64;
    ClientVerdict {
        client_limited: verdict.client_limited,
        client_limited_reasons: verdict.reasons,
        send_gap_fit: validity::gap_fit(
            run.window_start_ns,
            &r.send_times_ns,
            ctx.duration_s / ctx.planned.max(1) as f64,
            arrival,
            burstiness,
        )
        .filter(|_| ctx.replay.is_none()),
        client_cpu_per_core: run
            .per_core
            .iter()
            .enumerate()
            .map(|(core, c)| CoreCpu {
                core,
                cpu_s: (c.cpu_ns as f64 / 1e6).round() / 1e3,
                busy_pct: (c.cpu_ns as f64 * 1000.0 / wall_ns).round() / 10.0,
            })
            .collect(),
        concurrency_cap: ctx.max_concurrency.map(|limit| CapStats::new(limit, r)),
        warmup: (ctx.warmup_s > 0.0).then_some(WarmupStats {
            seconds: ctx.warmup_s,
            requests: run.warmup.sent,
            successful: run.warmup.succeeded,
        }),
    }
}

/// What the validity gate looks at: with sessions, the rate rule compares session starts
/// (the plan's arrivals) with their planned rate, since later turns wait for answers by
/// design.
fn facts(r: &Recorder, ctx: &LevelContext<'_>, window_start_ns: u64) -> LevelFacts {
    let (target, actual, sent) = match ctx.session_turns {
        Some(turns) => {
            let starts = r.send_times_ns.len() as u64;
            let span_ns = r
                .send_times_ns
                .iter()
                .max()
                .map_or(0, |&last| last.saturating_sub(window_start_ns));
            let target = ctx.qps / turns / ctx.shards.max(1) as f64;
            (
                ctx.shard_rate.unwrap_or(target),
                rate(starts, span_ns as f64 / 1e9),
                starts,
            )
        }
        None => (
            // A shard keeps its share of the rate: the one its arrivals were planned at.
            ctx.shard_rate.unwrap_or(ctx.qps / ctx.shards.max(1) as f64),
            round6(actual_qps(r, sending_window_s(r, window_start_ns))),
            r.sent,
        ),
    };
    let answered = r.succeeded
        + r.errors
            .iter()
            .filter(|(k, _)| matches!(k, ErrorKind::Http(_)))
            .map(|(_, v)| v.count)
            .sum::<u64>();
    let ttft = Percentiles::from_hist(&r.hist.ttft_us, ctx.percentiles, 1e-6);
    LevelFacts {
        target_qps: target,
        actual_qps: actual,
        send_lag_p99_us: SendLag::from_ns(&r.hist.send_lag_ns).p99,
        late_sends: r.hist.send_lag_ns.count_between(
            (ctx.thresholds.max_send_lag_p99_us * 1000.0) as u64 + 1,
            r.hist.send_lag_ns.max(),
        ),
        sent,
        answered,
        capped: r.capped,
        ttft_p50_us: ttft.get("p50").map(|s| s * 1e6),
        client_errors: r
            .errors
            .iter()
            .filter(|(k, _)| k.is_client_side())
            .map(|(k, v)| (k.to_string(), v.count))
            .collect(),
    }
}

/// A warning when the realised send gaps do not follow the configured process. With thousands
/// of gaps KS flags distortions of a few µs, so only when the shape is off by more than 5 points
/// of the CDF as well; and never when `--max-concurrency` shaped the gaps.
pub(super) fn gap_fit_warning(
    client: &ClientVerdict,
    r: &Recorder,
    arrival: Arrival,
) -> Option<String> {
    let fit = client.send_gap_fit.as_ref().filter(|_| r.capped == 0)?;
    let p = fit
        .p_value
        .filter(|&p| p < 0.01 && fit.statistic.is_some_and(|d| d > 0.05))?;
    Some(format!(
        "the realised send gaps do not follow the configured {} process (KS p = {p:.4})",
        arrival.name()
    ))
}
