//! One level merged: the shards' recorders rebuilt from their histograms and counters, merged
//! on the Unix clock, and the level's result built from that as for a single process — so the
//! percentiles come from the merged histograms, the counts are sums, `actual_qps` is sent ÷ the
//! union of the sending windows, and the send-gap fit tests the union of the shards' send times
//! against the whole schedule's arrival process.

use serde_json::Value;

use crate::cli::Arrival;
use crate::foundation::error::{Result, UserError};
use crate::recording::recorder::Recorder;
use crate::stats::histograms_file::{unix_ns, LevelHistograms};
use crate::stats::{
    CapStats, ClientVerdict, LevelClock, LevelPlace, LevelStats, Parts, WarmupStats,
};

/// What the schedule says about every level (from the shards' common metadata).
pub struct Schedule {
    pub duration_s: f64,
    pub warmup_s: f64,
    pub arrival: Arrival,
    pub burstiness: f64,
    pub max_concurrency: Option<usize>,
    /// The percentiles the results report.
    pub percentiles: Vec<f64>,
    pub replay: bool,
    /// Why the run's prompts share a prefix cache on purpose (from `prompt_uniqueness`).
    pub shared_on_purpose: Option<String>,
    /// `--session-turns` (from `sessions`): each arrival started a session.
    pub session_turns: Option<f64>,
    /// `--embedding-batch`, when the run spoke the embeddings API.
    pub embedding_batch: Option<u32>,
}

/// One shard's part of a level: the shard, its histograms, its result.
pub struct Part<'a> {
    pub shard: usize,
    pub histograms: &'a LevelHistograms,
    pub result: &'a Value,
}

/// Result keys only a shard's own result holds, copied from the first shard that has them
/// (server metrics: only shard 0 scrapes; the server's cache share and the reset are read back
/// into the merged result by `cache_warning`, which needs them).
const COPIED: [&str; 4] = [
    "server_metrics",
    "server_metrics_errors",
    "replay",
    "prompt_passes",
];

/// The merged level: its result and, as JSON, what is written (with the copied keys).
pub fn merge(parts: &[Part<'_>], of_shards: usize, s: &Schedule) -> Result<(LevelStats, Value)> {
    fn h<'a>(p: &Part<'a>) -> &'a LevelHistograms {
        p.histograms
    }
    let level = parts[0].histograms.level;
    let mut r = Recorder::new();
    let mut sends = Vec::new();
    for p in parts {
        let mut one = p.histograms.to_recorder().map_err(|e| {
            UserError::input(format!(
                "shard {}, level {level} of histograms.json: {e}",
                p.shard
            ))
        })?;
        sends.append(&mut one.send_times_ns);
        r.merge(&one);
    }
    sends.sort_unstable();
    r.send_times_ns = sends;
    let start_ns = parts
        .iter()
        .map(|p| unix_ns(h(p).window_start_unix_s))
        .min()
        .unwrap_or(0);
    let clock = LevelClock {
        start_ns,
        duration_s: s.duration_s,
        end_ns: parts
            .iter()
            .map(|p| unix_ns(h(p).end_unix_s))
            .max()
            .unwrap_or(0),
        interrupted: parts.iter().any(|p| h(p).interrupted),
    };
    let qps = h(&parts[0]).qps_target;
    let planned: usize = parts
        .iter()
        .map(|p| h(p).planned + h(p).missed_requests.unwrap_or(0) as usize)
        .sum();
    let client = ClientVerdict {
        send_gap_fit: crate::stats::validity::gap_fit(
            start_ns,
            &r.send_times_ns,
            s.duration_s / planned.max(1) as f64,
            s.arrival,
            s.burstiness,
        )
        .filter(|_| !s.replay),
        warmup: (s.warmup_s > 0.0).then(|| WarmupStats {
            seconds: s.warmup_s,
            requests: parts.iter().map(|p| h(p).counters.warmup_sent).sum(),
            successful: parts.iter().map(|p| h(p).counters.warmup_succeeded).sum(),
        }),
        concurrency_cap: s.max_concurrency.map(|limit| CapStats::new(limit, &r)),
        ..shard_verdicts(parts)
    };
    let urls: Vec<String> = h(&parts[0])
        .endpoints
        .iter()
        .map(|e| e.url.clone())
        .collect();
    let (start_lag_s, missed_requests, warnings) = shard_starts(parts, of_shards);
    let place = LevelPlace {
        start_lag_s,
        missed_requests,
        endpoints: crate::stats::endpoints::stats(&r.endpoints, &urls),
        ..Default::default()
    };
    let built = Parts {
        client,
        place,
        session_rate: s.session_turns.map(|t| qps / t),
        embedding_batch: s.embedding_batch,
        warnings,
        ..Default::default()
    };
    let mut stats = LevelStats::new(&r, qps, clock, &s.percentiles, built);
    cache_warning(&mut stats, parts, s);
    let mut json = serde_json::to_value(&stats)
        .map_err(|e| UserError::runtime(format!("level {level}: {e}")))?;
    for key in COPIED {
        if let Some(v) = parts.iter().find_map(|p| p.result.get(key)) {
            json[key] = v.clone();
        }
    }
    json["shards"] = parts.iter().map(|p| p.shard).collect::<Vec<_>>().into();
    Ok((stats, json))
}

/// The merged level's prefix-cache warning, from the shards' hits together (and shard 0's
/// reset, and the server's own share it scraped).
fn cache_warning(stats: &mut LevelStats, parts: &[Part<'_>], s: &Schedule) {
    let copied = |key: &str| parts.iter().find_map(|p| p.result.get(key).cloned());
    let p = &mut stats.prompt_cache;
    p.server_prompt_cache =
        copied("server_prompt_cache").and_then(|v| serde_json::from_value(v).ok());
    p.prefix_cache_reset =
        copied("prefix_cache_reset").and_then(|v| v.as_str().map(str::to_string));
    let cx = crate::stats::prompt_cache::WarningContext {
        expected: s.shared_on_purpose.as_deref(),
        after_reset: p
            .prefix_cache_reset
            .as_deref()
            .is_some_and(|r| r.starts_with("reset by")),
        reset_caveat: None,
    };
    stats.warn_about_cache(cx);
}

/// The shards' verdicts on themselves, each reason named by its shard.
fn shard_verdicts(parts: &[Part<'_>]) -> ClientVerdict {
    ClientVerdict {
        client_limited: parts.iter().any(|p| p.histograms.client_limited),
        client_limited_reasons: parts
            .iter()
            .flat_map(|p| {
                p.histograms
                    .client_limited_reasons
                    .iter()
                    .map(|r| format!("shard {}: {r}", p.shard))
            })
            .collect(),
        ..Default::default()
    }
}

/// The shards' starts and what is missing from the level: the latest start lag, the arrivals
/// left out, and the warnings they call for.
fn shard_starts(parts: &[Part<'_>], of_shards: usize) -> (Option<f64>, Option<u64>, Vec<String>) {
    let level = parts[0].histograms.level;
    let mut warnings = Vec::new();
    let lags: Vec<f64> = parts
        .iter()
        .filter_map(|p| p.histograms.start_lag_s)
        .collect();
    let mut start_lag_s = None;
    if !lags.is_empty() {
        let (lo, hi) = lags
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        start_lag_s = Some(hi);
        if hi - lo > 1.0 {
            warnings.push(format!(
                "the shards started level {level} up to {:.2} s apart (start_lag_s from {lo:.2} to {hi:.2}): raise --cooldown so every shard's previous level drains in time",
                hi - lo
            ));
        }
    }
    let missed: u64 = parts
        .iter()
        .filter_map(|p| p.histograms.missed_requests)
        .sum();
    if parts.len() < of_shards {
        let have: Vec<usize> = parts.iter().map(|p| p.shard).collect();
        warnings.push(format!(
            "only shards {} of {of_shards} measured level {level} (the others joined later): its counts are partial",
            have.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    (start_lag_s, (missed > 0).then_some(missed), warnings)
}
