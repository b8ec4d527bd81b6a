//! `qpsbench merge`: four shard processes started with one `--start-at` against one built-in
//! endpoint merge into one run whose totals are the whole schedule's and whose percentiles are
//! those of the concatenated requests; `plot` and `compare` take the merged folder; folders that
//! are not the shards of one run are refused with exit 2.

use std::path::{Path, PathBuf};

use crate::common::*;

/// Runs the shards `ks` of `--shard K/n` at once (threads), each into its own results folder
/// under `root`; `extra` is appended to every shard's flags. Returns the shards' run folders.
fn run_shards(url: &str, root: &Path, n: usize, ks: &[usize], extra: &[&str]) -> Vec<PathBuf> {
    let at = format!("{:.3}", unix_now() + 2.0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = ks
            .iter()
            .map(|&k| {
                let (at, shard) = (at.clone(), format!("{k}/{n}"));
                let results = root.join(format!("shard{k}"));
                scope.spawn(move || {
                    let mut args = endpoint_args(url);
                    args.extend([
                        "--dataset-name",
                        "random",
                        "--random-input-len",
                        "16",
                        "--random-output-len",
                        "6",
                        "--continuous-usage",
                        "off",
                        "--cores",
                        "1",
                        "--save-requests",
                        "--start-at",
                        &at,
                        "--shard",
                        &shard,
                    ]);
                    args.extend_from_slice(extra);
                    let run = qpsbench(&args, &results);
                    assert_eq!(run.code(), 0, "shard {shard}: {}", run.stderr);
                    run.dir.expect("a run folder")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The schedule every shard of the test runs, with seed `seed`.
fn schedule_flags(seed: &str) -> [&str; 8] {
    [
        "--qps",
        "20,40",
        "--duration",
        "2",
        "--cooldown",
        "2",
        "--seed",
        seed,
    ]
}

fn strs(dirs: &[PathBuf]) -> Vec<&str> {
    dirs.iter().map(|d| d.to_str().unwrap()).collect()
}

#[test]
fn four_shards_merge_into_the_single_process_expectation() {
    let _g = serial();
    // The endpoint's prefix cache would find any prompt two shards (or two levels) both sent.
    let mock = Mock::start(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "2",
        "--output-tokens",
        "6",
        "--prefix-cache",
    ]);
    let tmp = TempDir::new("merge4");
    let flags = schedule_flags("11");
    let dirs = run_shards(&mock.url, tmp.path(), 4, &[0, 1, 2, 3], &flags);
    let mut args = vec!["merge"];
    args.extend(strs(&dirs));
    args.push("--plot");
    let merged = qpsbench(&args, &tmp.path().join("merged"));
    assert_eq!(merged.code(), 0, "{}", merged.stderr);
    let dir = merged.dir.clone().expect("merged folder");
    for f in [
        "summary.json",
        "timeline.jsonl",
        "benchmark_qps.png",
        "timeline.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let meta = merged.metadata();
    assert_eq!(meta["merged"]["shards"], 4);
    assert!(meta.get("shard").is_none());
    let records = merged.records();
    for (i, level) in merged.levels().iter().enumerate() {
        let qps = [20.0, 40.0][i];
        // round(qps × duration) per level, exactly, and every one answered.
        assert_eq!(level["total_requests"], (qps * 2.0) as u64, "{level}");
        assert_eq!(level["successful_requests"], level["total_requests"]);
        assert_eq!(level["client_limited"], false, "{level}");
        assert_eq!(level["shards"], serde_json::json!([0, 1, 2, 3]));
        // No prompt of the schedule was sent twice, by any shard: no cache hit anywhere, and
        // the merged cache counts are the records' own.
        assert_eq!(level["cache_hit_requests"], 0, "{level}");
        assert_eq!(
            level["requests_with_cached_tokens"],
            level["total_requests"]
        );
        let cached: u64 = records
            .iter()
            .filter(|r| r["level"] == i as u64 + 1 && !r["warmup"].as_bool().unwrap())
            .map(|r| r["cached_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(level["cached_prompt_tokens_total"], cached, "{level}");
        assert!(level["send_gap_fit"]["gaps"].as_u64().unwrap() >= qps as u64 * 2 - 1);
        // The merged TTFT percentiles are those of the concatenated records, within the
        // histograms' precision (3 significant figures) and the records' 0.1 µs.
        let ttft = ttft_of_level(&records, i + 1);
        assert_eq!(ttft.len(), (qps * 2.0) as usize);
        for p in [50.0, 90.0, 99.0] {
            let want = percentile(&ttft, p);
            let got = f(&level["ttft"], &format!("p{p}"));
            assert!(
                (got - want).abs() <= want * 2e-3 + 2e-6,
                "level {} p{p}: merged {got}, direct {want}",
                i + 1
            );
        }
    }
    let shards: std::collections::BTreeSet<u64> = records
        .iter()
        .map(|r| r["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(shards.len(), 4);
    // The timeline's seconds add up to the level's sends.
    let timeline = std::fs::read_to_string(dir.join("timeline.jsonl")).unwrap();
    let sent: u64 = timeline
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["level"] == 1)
        .map(|r| r["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, 40);

    // plot and compare take the merged folder.
    let d = dir.to_str().unwrap();
    let plot = std::process::Command::new(BIN)
        .args(["plot", d])
        .output()
        .unwrap();
    assert!(plot.status.success(), "{plot:?}");
    let cmp = std::process::Command::new(BIN)
        .args(["compare", dirs[0].to_str().unwrap(), d])
        .output()
        .unwrap();
    assert!(cmp.status.success(), "{cmp:?}");
    assert!(String::from_utf8_lossy(&cmp.stdout).contains("QPS 40.0"));

    // Refusals, each with exit 2 and its reason.
    let refused = |dirs: Vec<&str>, why: &str| {
        let mut args = vec!["merge"];
        args.extend(dirs);
        let run = qpsbench(&args, &tmp.path().join("refused"));
        assert_eq!(run.code(), 2, "{why}: {}", run.stderr);
        assert!(run.stderr.contains(why), "{why}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    };
    let all = strs(&dirs);
    refused(all[..3].to_vec(), "shard 3 of 4 is missing");
    refused(
        vec![all[0], all[1], all[2], all[2]],
        "shard 2 is given twice",
    );
    refused(
        vec![all[0], tmp.path().to_str().unwrap()],
        "not a qpsbench run folder",
    );
    refused(vec!["/nonexistent/qpsbench-shard"], "not a folder");
    // A shard of another schedule (another seed).
    let other = run_shards(
        &mock.url,
        &tmp.path().join("other"),
        4,
        &[3],
        &schedule_flags("12"),
    );
    refused(
        vec![all[0], all[1], all[2], other[0].to_str().unwrap()],
        "differ in seed",
    );
    assert!(!tmp.path().join("refused").exists());
}
