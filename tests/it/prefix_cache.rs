//! Prompts that never repeat by accident, and a prefix cache's hits measured, against the
//! built-in endpoint's prefix cache (`serve-mock --prefix-cache`, vLLM's block model): a
//! dataset's rows repeat only when asked (`--unique-prompts off`) and are then measured,
//! warned about and counted by the server too; the probe warms nothing; `random` prompts never
//! repeat, across levels and runs with other seeds, unless a pool is asked for; the reset empties
//! the cache, or says why it cannot. The same against a real engine is `tests/it/llama.rs`.

use crate::common::*;

/// Four rows of a short system prompt and a user message of ~40 words each.
fn rows() -> String {
    (0..4)
        .map(|i| {
            let words: Vec<String> = (0..40).map(|k| format!("w{}", (i * 131 + k * 7) % 997)).collect();
            format!(
                "{{\"messages\":[{{\"role\":\"system\",\"content\":\"Be brief.\"}},{{\"role\":\"user\",\"content\":\"{}\"}}],\"max_tokens\":4}}\n",
                words.join(" ")
            )
        })
        .collect()
}

fn mock() -> Mock {
    Mock::start(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--output-tokens",
        "4",
        "--prefix-cache",
    ])
}

/// Two levels of 4 requests each (two passes over the 4 rows), with `extra` flags.
fn two_passes(mock: &Mock, tmp: &TempDir, extra: &[&str]) -> Run {
    let data = tmp.file("rows.jsonl", &rows());
    let mut args = base_args(&mock.url, data.to_str().unwrap());
    let metrics = mock.url.replace("/v1/chat/completions", "/metrics");
    let metrics: &'static str = Box::leak(metrics.into_boxed_str());
    args.extend(["--qps", "2,2", "--duration", "2", "--save-requests"]);
    args.extend(["--server-metrics", metrics]);
    args.extend_from_slice(extra);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    run
}

fn hits(run: &Run) -> Vec<u64> {
    run.levels()
        .iter()
        .map(|l| l["cache_hit_requests"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_datasets_rows_repeat_only_when_asked_and_are_then_measured_and_warned_about() {
    let _g = serial();
    let tmp = TempDir::new("cache-off");
    let m = mock();
    let off = two_passes(&m, &tmp, &["--unique-prompts", "off"]);
    assert_eq!(
        hits(&off),
        vec![0, 4],
        "the probe's requests are marked even so; then all of pass 2"
    );
    let l2 = &off.levels()[1];
    let share = f(l2, "prompt_cache_hit_share");
    assert!(share > 0.7, "{l2}");
    // The server's own counters say the same.
    let server = f(&l2["server_prompt_cache"], "hit_share");
    assert!(
        (server - share).abs() < 0.02,
        "server {server}, requests {share}"
    );
    assert_eq!(l2["prompt_passes"], serde_json::json!([2, 2]));
    let w = l2["prompt_cache_warning"].as_str().unwrap();
    assert!(w.starts_with("QPS 2.0: 4 of 4 requests ("), "{w}");
    assert!(w.contains("; TTFT reflects cache hits (expected: the run shares prompts on purpose, --unique-prompts off)"), "{w}");
    assert!(off.stdout.contains("2.0†"), "{}", off.stdout);
    assert!(
        off.stdout.contains("Prompt cache") && off.stdout.contains("QPS 2.0: 4 of 4"),
        "{}",
        off.stdout
    );
    // Per request and per second.
    let records = off.records();
    assert!(
        records.iter().all(|r| r["cached_tokens"].is_u64()),
        "{records:?}"
    );
    let timeline =
        std::fs::read_to_string(off.dir.as_ref().unwrap().join("timeline.jsonl")).unwrap();
    let cached: u64 = timeline
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["level"] == 2)
        .map(|r| r["cached_prompt_tokens"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(cached, l2["cached_prompt_tokens_total"].as_u64().unwrap());
    let u = &off.metadata()["prompt_uniqueness"];
    assert_eq!(u["method"], "off");
    assert_eq!(
        u["probe"],
        "row 0 with the marker of pass 0, which no level sends"
    );

    // The default, on a fresh endpoint: pass 2 is marked, the probe warms nothing.
    let tmp = TempDir::new("cache-auto");
    let m = mock();
    let auto = two_passes(&m, &tmp, &[]);
    assert_eq!(hits(&auto), vec![0, 0], "{:?}", auto.levels());
    assert!(auto
        .levels()
        .iter()
        .all(|l| l.get("prompt_cache_warning").is_none()));
    let u = &auto.metadata()["prompt_uniqueness"];
    assert_eq!(
        (
            u["rows"].as_u64(),
            u["passes"].as_u64(),
            u["rows_sent"].as_u64()
        ),
        (Some(4), Some(2), Some(4))
    );
    assert!(
        auto.stderr.contains("prompts: 8 from 4 rows (2 passes)"),
        "{}",
        auto.stderr
    );
    // Each record names the row it sent: rows 0..3, twice.
    let mut samples: Vec<u64> = auto
        .records()
        .iter()
        .map(|r| r["sample"].as_u64().unwrap())
        .collect();
    samples.sort_unstable();
    assert_eq!(samples, vec![0, 0, 1, 1, 2, 2, 3, 3]);

    // And a run repeated against that warm endpoint: pass 1 is the same text, now cached.
    let again = two_passes(&m, &tmp, &[]);
    assert_eq!(hits(&again)[0], 4, "{:?}", again.levels());
    assert!(again.levels()[0]["prompt_cache_warning"].is_string());
}

#[test]
fn the_reset_empties_the_endpoints_cache_or_says_why_it_cannot() {
    let _g = serial();
    let tmp = TempDir::new("cache-reset");
    let m = mock();
    let run = two_passes(
        &m,
        &tmp,
        &["--unique-prompts", "off", "--reset-prefix-cache", "auto"],
    );
    // The same rows again, but from an empty cache (and the probe's row 0 is forgotten too).
    assert_eq!(hits(&run), vec![0, 0], "{:?}", run.levels());
    for l in run.levels() {
        assert_eq!(
            l["prefix_cache_reset"], "reset by vLLM's POST /reset_prefix_cache",
            "{l}"
        );
    }
    let meta = run.metadata();
    assert_eq!(meta["prefix_cache_reset"]["way"], "vllm");
    assert_eq!(meta["prefix_cache_reset"]["first"]["done"], true);
    // An endpoint without a cache to reset answers 404 everywhere: one warning, the run goes on.
    let plain = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let data = tmp.file("rows.jsonl", &rows());
    let mut args = base_args(&plain.url, data.to_str().unwrap());
    args.extend([
        "--qps",
        "2,2",
        "--duration",
        "1",
        "--reset-prefix-cache",
        "auto",
    ]);
    let refused = qpsbench(&args, tmp.path());
    assert_eq!(refused.code(), 0, "{}", refused.stderr);
    assert_warned_once(&refused, "--reset-prefix-cache");
    let said = refused.metadata()["prefix_cache_reset"]["first"]["said"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        said.starts_with("no way to reset answered (POST /reset_prefix_cache: 404"),
        "{said}"
    );
    assert!(said.contains("VLLM_SERVER_DEV_MODE=1"), "{said}");
    // A URL that is not one: exit 2, naming the flag.
    let mut bad = base_args(&plain.url, data.to_str().unwrap());
    bad.extend([
        "--qps",
        "1",
        "--duration",
        "1",
        "--reset-prefix-cache",
        "ftp://x/y",
    ]);
    let bad = qpsbench(&bad, tmp.path());
    assert_eq!(bad.code(), 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--reset-prefix-cache"),
        "{}",
        bad.stderr
    );
}

#[test]
fn random_prompts_never_repeat_unless_a_pool_is_asked_for() {
    let _g = serial();
    let tmp = TempDir::new("cache-random");
    let m = mock();
    let random = |extra: &[&str]| {
        let mut args = endpoint_args(&m.url);
        args.extend([
            "--dataset-name",
            "random",
            "--random-input-len",
            "60",
            "--random-output-len",
            "4",
            "--qps",
            "10,10",
            "--duration",
            "1",
        ]);
        args.extend_from_slice(extra);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        run
    };
    // Two levels, warm-up included: 40 prompts, none twice.
    let fresh = random(&["--warmup", "1"]);
    assert_eq!(hits(&fresh), vec![0, 0], "{:?}", fresh.levels());
    assert_eq!(
        fresh.metadata()["dataset_params"]["random_pool_size"],
        serde_json::Value::Null
    );
    // Another seed against the now warm endpoint: other text.
    let other = random(&["--seed", "7"]);
    assert_eq!(hits(&other), vec![0, 0], "{:?}", other.levels());
    // A pool of 5, cycled on purpose: hits, and the warning says they are expected.
    let pool = random(&["--random-pool-size", "5", "--seed", "8"]);
    let h = hits(&pool);
    assert!(h[0] >= 4 && h[1] == 10, "{h:?}");
    let w = pool.levels()[1]["prompt_cache_warning"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        w.contains("(expected: the run shares prompts on purpose, --random-pool-size)"),
        "{w}"
    );
}

#[test]
fn prefix_groups_spread_that_many_shared_prefixes_evenly_and_hit_the_cache() {
    let _g = serial();
    let tmp = TempDir::new("prefix-groups");
    let log = tmp.path().join("mock.jsonl");
    let mock = Mock::start(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--output-tokens",
        "4",
        "--prefix-cache",
        "--log-requests",
        log.to_str().unwrap(),
    ]);
    let mut args = endpoint_args(&mock.url);
    args.extend([
        "--dataset-name",
        "random",
        "--random-prefix-len",
        "200",
        "--random-input-len",
        "40",
        "--random-output-len",
        "4",
        "--prefix-groups",
        "4",
        "--qps",
        "8",
        "--duration",
        "2",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["total_requests"], 16, "{l}");
    // Each group's first request is cold (the probe may have warmed one); the other 12 or more
    // find their 200-token prefix cached.
    assert!(l["cache_hit_requests"].as_u64().unwrap() >= 12, "{l}");
    let warning = l["prompt_cache_warning"].as_str().unwrap_or_default();
    assert!(warning.contains("--prefix-groups 4"), "{warning}");
    // 4 distinct prefixes, each sent by 4 of the level's 16 prompts (its first 50 bytes tell them
    // apart); the probe's requests (the first lines: the check and the unloaded baseline) share
    // some of them.
    let probes = run.metadata()["baseline"]["requests"].as_u64().unwrap() as usize;
    let mut by_prefix: std::collections::HashMap<String, usize> = Default::default();
    for line in std::fs::read_to_string(&log).unwrap().lines().skip(probes) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["body"]["messages"][0]["content"].as_str().unwrap();
        *by_prefix.entry(text[..50].to_string()).or_default() += 1;
    }
    let mut counts: Vec<usize> = by_prefix.into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, [4, 4, 4, 4]);
    assert_eq!(run.metadata()["dataset_params"]["prefix_groups"], 4);
}

#[test]
fn prefix_groups_need_a_prefix() {
    let tmp = TempDir::new("prefix-groups-refused");
    let mut args = endpoint_args("http://127.0.0.1:9/v1/chat/completions");
    args.extend([
        "--dataset-name",
        "random",
        "--prefix-groups",
        "4",
        "--qps",
        "1",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("Add --random-prefix-len"),
        "{}",
        run.stderr
    );
}
