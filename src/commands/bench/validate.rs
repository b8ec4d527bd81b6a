//! The benchmark's numeric flags, each within its documented range (`crate::foundation::flag_ranges`), and the
//! combinations that must hold between them. Called by the plan, before anything else happens.

use super::workload::DEFAULT_DURATION_S;
use crate::cli::BenchArgs;
use crate::foundation::error::{Result, UserError};
use crate::foundation::flag_ranges::{check, count, plan_size, rate, seconds, Low, MAX_SECONDS};
use crate::workload::arrivals::Arrival;
use crate::workload::dataset::text::MAX_SPAN_WORDS;

/// `--qps`: the levels, or `None` for `auto`.
pub fn parse_qps(raw: &[String]) -> Result<Option<Vec<f64>>> {
    if raw.len() == 1 && raw[0].trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    if raw.is_empty() {
        return Err(UserError::input(
            "--qps (empty): expected one or more rates, e.g. 1,5,10,20, or auto",
        ));
    }
    raw.iter()
        .map(|s| match s.trim().parse::<f64>() {
            Ok(q) if q.is_finite() && q > 0.0 && q <= crate::foundation::flag_ranges::MAX_QPS => {
                Ok(q)
            }
            _ => Err(UserError::input(format!(
                "--qps {s}: expected rates above 0, at most {} (e.g. 1,5,10,20), or auto",
                crate::foundation::flag_ranges::MAX_QPS
            ))),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Every numeric flag within its documented range (`foundation::flag_ranges`), and the combinations that must
/// hold between them. The first flag out of range is the error.
pub fn validate_numbers(a: &BenchArgs) -> Result<()> {
    check_levels(a)?;
    let (above0, from0, above1) = (Low::Above(0.0), Low::From(0.0), Low::Above(1.0));
    let w = &a.workload;
    let (secs, frac, max_s) = ("a number of seconds", "a fraction", MAX_SECONDS);
    // (flag, value if given, low end, high end, what it is), in the order they are checked. A
    // table reads better one flag per line, so rustfmt leaves it as written.
    #[rustfmt::skip]
    let bounded: [(&str, Option<f64>, Low, f64, &str); 18] = [
        ("--probe-wait", Some(a.checks.probe_wait), from0, max_s, secs),
        ("--temperature", Some(a.temperature), from0, 100.0, "a temperature"),
        ("--burstiness", Some(a.burstiness), above0, 1000.0, "a gamma shape"),
        ("--max-send-lag-ms", Some(a.checks.max_send_lag_ms), above0, 3.6e6, "milliseconds"),
        ("--max-send-lag-share", Some(a.checks.max_send_lag_share), from0, 1.0, frac),
        ("--min-rate-ratio", Some(a.checks.min_rate_ratio), above0, 1.0, frac),
        ("--slo-ttft", a.checks.slo_ttft, above0, max_s, secs),
        ("--slo-e2e", a.checks.slo_e2e, above0, max_s, secs),
        ("--slo-percentile", Some(a.checks.slo_percentile), above0, 100.0, "a percentile"),
        ("--saturation-success", Some(a.checks.saturation_success), from0, 100.0, "a percentage"),
        ("--saturation-throughput", Some(a.checks.saturation_throughput), above0, 1.0, frac),
        ("--saturation-ttft-growth", Some(a.checks.saturation_ttft_growth), above1, 1e6, "a factor"),
        ("--connect-timeout", Some(a.connect_timeout), above0, max_s, secs),
        ("--ttft-timeout", a.ttft_timeout, above0, max_s, secs),
        ("--idle-timeout", a.idle_timeout, above0, max_s, secs),
        ("--timeout", Some(a.timeout), above0, max_s, secs),
        ("--random-range-ratio", Some(w.random_range_ratio), from0, 0.999, frac),
        ("--replay-speed", Some(w.replay_speed), above0, 1e6, "a speed factor"),
    ];
    for (flag, v, low, high, what) in bounded {
        if let Some(v) = v {
            check(flag, v, low, high, what)?;
        }
    }
    if a.burstiness != 1.0 && a.arrival != Arrival::Gamma {
        return Err(UserError::input(format!(
            "--burstiness {}: expected --arrival gamma (burstiness shapes gamma-distributed gaps only)",
            a.burstiness
        )));
    }
    let wide = |n: Option<usize>| n.map(|n| n as u64);
    // (flag, value if given, lowest, highest, what it counts)
    let span = u64::from(MAX_SPAN_WORDS);
    #[rustfmt::skip]
    let counts: [(&str, Option<u64>, u64, u64, &str); 10] = [
        ("--max-tokens", Some(a.max_tokens.into()), 1, u32::MAX.into(), "tokens"),
        ("--cores", wide(a.cores), 1, 4096, "cores"),
        ("--max-concurrency", wide(a.max_concurrency), 1, 10_000_000, "requests"),
        ("--warmup-connections", wide(a.warmup_connections), 0, 65_536, "per core"),
        ("--random-input-len", Some(w.random_input_len.into()), 1, span, "tokens"),
        ("--random-output-len", Some(w.random_output_len.into()), 1, u32::MAX.into(), "tokens"),
        ("--random-prefix-len", Some(w.random_prefix_len.into()), 0, span, "tokens"),
        ("--random-pool-size", w.random_pool_size.map(u64::from), 1, 10_000_000, "samples"),
        ("--prefix-groups", w.prefix_groups.map(u64::from), 1, 1_000_000, "prefixes"),
        ("--shards", wide(a.boxes.shards), 1, 100_000, "shards"),
    ];
    for (flag, v, lo, hi, what) in counts {
        if let Some(v) = v {
            count(flag, v, lo, hi, what)?;
        }
    }
    if let (Some(g), 0) = (w.prefix_groups, w.random_prefix_len) {
        return Err(UserError::input(format!(
            "--prefix-groups {g}: groups of what? Add --random-prefix-len TOKENS (the shared prefix's length)"
        )));
    }
    Ok(())
}

/// The levels: rates, the auto search's bounds, durations, percentiles, and a plan small enough
/// to hold in memory.
fn check_levels(a: &BenchArgs) -> Result<()> {
    let levels = parse_qps(&a.qps)?;
    rate("--auto-start", a.auto_start)?;
    rate("--auto-max-qps", a.auto_max_qps)?;
    if a.auto_max_qps < a.auto_start {
        return Err(UserError::input(format!(
            "--auto-max-qps {}: expected a rate at least --auto-start",
            a.auto_max_qps
        )));
    }
    check(
        "--auto-tolerance",
        a.auto_tolerance,
        Low::Above(0.0),
        0.99,
        "a fraction",
    )?;
    let duration = a.duration.unwrap_or(DEFAULT_DURATION_S);
    seconds("--duration", duration)?;
    check(
        "--warmup",
        a.warmup,
        Low::From(0.0),
        MAX_SECONDS,
        "a number of seconds",
    )?;
    let top = levels
        .as_ref()
        .map_or(a.auto_max_qps, |q| q.iter().copied().fold(0.0, f64::max));
    let flag = if levels.is_some() {
        "--qps"
    } else {
        "--auto-max-qps"
    };
    plan_size(flag, top, duration + a.warmup)?;
    if a.percentiles.is_empty() {
        return Err(UserError::input(
            "--percentiles (empty): expected one or more percentiles, e.g. 50,95,99",
        ));
    }
    for &p in &a.percentiles {
        check("--percentiles", p, Low::Above(0.0), 100.0, "percentiles")?;
    }
    Ok(())
}

/// `--shard K/N` (or `auto`, from the engine's environment as read by `env`): `None` for an
/// unsharded run (no flag, or N = 1).
pub fn parse_shard(
    raw: Option<&str>,
    shards: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(usize, usize)>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let (k, n) = if raw.trim().eq_ignore_ascii_case("auto") {
        shard_from_env(shards, &env)?
    } else {
        let bad = || {
            UserError::input(format!(
                "--shard {raw}: expected K/N with 0 ≤ K < N (e.g. 0/4), or auto"
            ))
        };
        let (k, n) = raw.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        (k, n)
    };
    if n == 0 || k >= n || n > 100_000 {
        return Err(UserError::input(format!(
            "--shard {raw}: shard {k} of {n} is not one of 0 to N − 1 (N from 1 to 100000)"
        )));
    }
    Ok((n > 1).then_some((k, n)))
}

/// K and N from Slurm's array variables, or from a Kubernetes Indexed Job's index and
/// `--shards`; an error names what was missing.
fn shard_from_env(
    shards: Option<usize>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize)> {
    let num = |name: &str| -> Result<Option<usize>> {
        env(name)
            .map(|v| {
                v.trim().parse::<usize>().map_err(|_| {
                    UserError::input(format!("--shard auto: {name}={v} is not a whole number"))
                })
            })
            .transpose()
    };
    if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
        let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let count = match (num("SLURM_ARRAY_TASK_COUNT")?, num("SLURM_ARRAY_TASK_MAX")?) {
            (Some(c), _) => c,
            (None, Some(max)) => max + 1 - min.min(max),
            (None, None) => {
                return Err(UserError::input(
                    "--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX",
                ))
            }
        };
        return Ok((id.saturating_sub(min), count));
    }
    if let Some(index) = num("JOB_COMPLETION_INDEX")? {
        let n = shards.ok_or_else(|| {
            UserError::input(
                "--shard auto: on Kubernetes give --shards N (the Indexed Job's completions)",
            )
        })?;
        return Ok((index, n));
    }
    Err(UserError::input(
        "--shard auto: found neither Slurm's SLURM_ARRAY_TASK_ID nor Kubernetes' JOB_COMPLETION_INDEX; give --shard K/N",
    ))
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn shards_come_from_the_flag_or_the_engines_environment() {
        let none = |_: &str| None;
        assert_eq!(parse_shard(None, None, none).unwrap(), None);
        assert_eq!(parse_shard(Some("2/4"), None, none).unwrap(), Some((2, 4)));
        assert_eq!(parse_shard(Some("0/1"), None, none).unwrap(), None);
        for bad in ["4/4", "x/2", "3", "1/0", "-1/2"] {
            assert!(parse_shard(Some(bad), None, none).is_err(), "{bad}");
        }
        assert!(parse_shard(Some("auto"), None, none).is_err());
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("5".to_string()),
            "SLURM_ARRAY_TASK_MIN" => Some("4".to_string()),
            "SLURM_ARRAY_TASK_MAX" => Some("7".to_string()),
            _ => None,
        };
        assert_eq!(
            parse_shard(Some("auto"), None, slurm).unwrap(),
            Some((1, 4))
        );
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "3".to_string());
        assert_eq!(
            parse_shard(Some("auto"), Some(8), k8s).unwrap(),
            Some((3, 8))
        );
        assert!(parse_shard(Some("auto"), None, k8s).is_err());
    }
}
