//! Shards of one schedule (`--shard K/N`): two shard processes together send exactly what one
//! process sends (the same intended times and samples), each keeps the global `qps_target` and
//! records its share; `--shard auto` needs the engine's environment; `--qps auto` is refused.

use crate::common::*;

/// (intended µs, sample) of every measured request of a run.
fn schedule(run: &Run) -> Vec<(i64, u64)> {
    let mut s: Vec<(i64, u64)> = run
        .records()
        .iter()
        .filter(|r| r["warmup"] == false)
        .map(|r| {
            let t = (r["intended_us"].as_f64().unwrap() * 10.0).round() as i64;
            (t, r["sample"].as_u64().unwrap())
        })
        .collect();
    s.sort_unstable();
    s
}

#[test]
fn two_shards_send_exactly_the_single_schedule() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("shards");
    let ds = tmp.file("d.json", DATASET);
    let run_as = |shard: Option<&str>| {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "30",
            "--duration",
            "2",
            "--continuous-usage",
            "off",
            "--save-requests",
            "--seed",
            "5",
        ]);
        if let Some(s) = shard {
            args.extend(["--shard", s]);
        }
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        run
    };
    let single = run_as(None);
    let (a, b) = (run_as(Some("0/2")), run_as(Some("1/2")));
    let mut union = schedule(&a);
    union.extend(schedule(&b));
    union.sort_unstable();
    assert_eq!(union, schedule(&single));
    for (run, k) in [(&a, 0), (&b, 1)] {
        let l = &run.levels()[0];
        assert_eq!(l["qps_target"], 30.0);
        assert_eq!(l["shard_qps"], 15.0);
        assert_eq!(l["total_requests"], 30);
        assert_eq!(l["client_limited"], false, "{l}");
        let m = run.metadata();
        assert_eq!(
            (m["shard"].as_u64(), m["shards"].as_u64()),
            (Some(k), Some(2))
        );
    }
    assert!(single.levels()[0].get("shard_qps").is_none());
}

#[test]
fn shard_flags_are_checked_before_the_run() {
    let tmp = TempDir::new("shard-flags");
    let ds = tmp.file("d.json", DATASET);
    let url = "http://127.0.0.1:9/v1/chat/completions";
    let cases: [(&[&str], &str); 4] = [
        (&["--shard", "2/2"], "--shard 2/2"),
        (
            &["--shard", "0/2", "--qps", "auto"],
            "capacity search cannot be split",
        ),
        (
            &["--shard", "auto"],
            "found neither Slurm's SLURM_ARRAY_TASK_ID",
        ),
        (&["--shard", "half"], "expected K/N"),
    ];
    for (extra, want) in cases {
        let mut args = base_args(url, ds.to_str().unwrap());
        args.extend_from_slice(extra);
        let run = qpsbench_env(&args, tmp.path(), &[]);
        assert_eq!(run.code(), 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{extra:?}: {}", run.stderr);
    }
}

/// `--start-in`: levels start at their planned instants, a period (warm-up + duration +
/// cooldown) apart, and record how late they started; a process started after `--start-at`
/// skips the levels already over and joins the one under way, leaving out what was due.
#[test]
fn levels_follow_the_common_clock_and_late_joiners_join() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("start-at");
    let ds = tmp.file("d.json", DATASET);
    let base = |extra: &[&str]| {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend(["--continuous-usage", "off"]);
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    let args = base(&[
        "--qps",
        "10,10",
        "--start-in",
        "1",
        "--duration",
        "1",
        "--cooldown",
        "2",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    // Level 2 starts 1 + (1 + 2) s after the command: the run cannot be shorter than that.
    assert!(started.elapsed().as_secs_f64() >= 5.0);
    for l in run.levels() {
        assert_eq!(l["start_lag_s"], 0.0, "{l}");
        assert_eq!(l["total_requests"], 10);
    }
    assert!(run.metadata()["start_at_unix_s"].as_f64().unwrap() > 1e9);

    // Started 13 s late, levels of 3 s every 4 s: levels 1 to 3 are over ([-13, -10], [-9, -6],
    // [-5, -2] s), level 4 ([-1, 2] s) is under way, level 5 is ahead.
    let at = format!("{:.3}", unix_now() - 13.0);
    let args = base(&[
        "--qps",
        "10,10,10,10,10",
        "--start-at",
        &at,
        "--duration",
        "3",
        "--cooldown",
        "1",
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("3 of its 5 levels are over"),
        "{}",
        run.stderr
    );
    let levels = run.levels();
    assert_eq!(levels.len(), 2);
    let missed = levels[0]["missed_requests"].as_u64().unwrap();
    assert!(missed > 0, "{}", levels[0]);
    assert_eq!(levels[0]["total_requests"].as_u64().unwrap() + missed, 30);
    assert_eq!(levels[1]["total_requests"], 30);
}

/// `histograms.json`: each level's histograms (V2, base64) give back the very percentiles the
/// results report, and its counters are the level's.
#[test]
fn histograms_json_holds_what_the_percentiles_came_from() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "15", "--itl-ms", "2", "--output-tokens", "6"]);
    let tmp = TempDir::new("histograms");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "10,20",
        "--duration",
        "1",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let path = run.dir.as_ref().unwrap().join("histograms.json");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let levels = run.levels();
    assert_eq!(saved.as_array().unwrap().len(), 2);
    for (h, l) in saved.as_array().unwrap().iter().zip(&levels) {
        assert_eq!(h["qps_target"], l["qps_target"]);
        assert_eq!(h["counters"]["sent"], l["total_requests"]);
        assert_eq!(h["counters"]["succeeded"], l["successful_requests"]);
        let ttft =
            qpsbench::stats::histograms_file::decode(h["histograms"]["ttft_us"].as_str().unwrap())
                .unwrap();
        assert_eq!(ttft.len(), l["successful_requests"].as_u64().unwrap());
        for (q, key) in [(0.5, "p50"), (0.99, "p99")] {
            let mine = ttft.value_at_quantile(q) as f64 / 1e6;
            assert!(
                (mine - f(&l["ttft"], key)).abs() < 2e-6,
                "{key}: {mine} vs {}",
                l["ttft"]
            );
        }
        let tokens = qpsbench::stats::histograms_file::decode(
            h["histograms"]["output_tokens"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(tokens.max(), 6);
        assert!(
            h["window_end_unix_s"].as_f64().unwrap() > h["window_start_unix_s"].as_f64().unwrap()
        );
    }
}
