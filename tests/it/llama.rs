//! Against a real inference engine: llama.cpp's `llama-server` with SmolLM2-135M on one CPU
//! (`tests/common/llama.rs`; `scripts/prepare-llama.sh` builds it, `QPSBENCH_LLAMA_DIR` finds it,
//! SKIPPED without it unless `QPSBENCH_REQUIRE_LLAMA=1`). Each test starts its own server, so no
//! test sees another's cache, and sends at most about 60 requests.
//!
//! What it checks: chat and completions streams with exact usage counts and the probe's
//! optional fields; fresh prompts are never cache hits; a dataset's repeated rows are hits with
//! `--unique-prompts off` (measured and warned about) and are not by default; the reset empties
//! llama.cpp's cache when the server allows it and says why not when it refuses; later turns
//! of multi-turn sessions are answered from llama.cpp's cache; a sweep
//! calibrated to the machine saturates and cites llama.cpp's queue.

use crate::common::llama::*;
use crate::common::*;

/// The levels' figure `key` (a number) for each level.
fn each(levels: &[serde_json::Value], key: &str) -> Vec<f64> {
    levels.iter().map(|l| f(l, key)).collect()
}

/// `n` rows of a short system prompt and a user message of ~48 words, each row's own.
fn rows(n: usize) -> String {
    const WORDS: [&str; 16] = [
        "river", "stone", "garden", "market", "winter", "lantern", "harbor", "meadow", "forest",
        "candle", "bridge", "valley", "thunder", "orchard", "castle", "island",
    ];
    (0..n)
        .map(|i| {
            let text: Vec<&str> = (0..48).map(|k| WORDS[(i * 7 + k * (i + 3)) % 16]).collect();
            format!(
                "{{\"messages\":[{{\"role\":\"system\",\"content\":\"Be brief.\"}},{{\"role\":\"user\",\"content\":\"Story {i}: {}\"}}],\"max_tokens\":8}}\n",
                text.join(" ")
            )
        })
        .collect()
}

#[test]
fn chat_and_completions_stream_exact_usage_and_keep_the_probes_fields() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-streams");
    let server = Llama::start(&dir, tmp.path(), &[]);
    let common = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "64",
        "--random-output-len",
        "16",
        "--qps",
        "1",
        "--duration",
        "4",
    ];
    for (url, api) in [
        (server.chat(), "chat"),
        (server.completions(), "completions"),
    ] {
        let run = qpsbench_pinned(&args(&url, &common), tmp.path());
        assert_eq!(
            run.code(),
            0,
            "{api}: {}\n{}",
            run.stderr,
            server.log_tail()
        );
        let l = &run.levels()[0];
        assert_eq!(f(l, "success_rate"), 100.0, "{api}: {l}");
        assert_eq!(l["token_count_source"], "usage", "{api}");
        // ignore_eos holds every answer to exactly the 16 tokens asked.
        assert_eq!(
            (f(&l["output_tokens"], "p50"), f(&l["output_tokens"], "max")),
            (16.0, 16.0),
            "{api}: {l}"
        );
        // llama.cpp reports cached tokens on every answer.
        assert_eq!(
            l["requests_with_cached_tokens"], l["successful_requests"],
            "{api}"
        );
        let prompt = (f(&l["prompt_tokens"], "p50"), f(&l["prompt_tokens"], "max"));
        if api == "completions" {
            // The vocabulary's words are one token each: 64 asked, 64 counted.
            assert_eq!(prompt, (64.0, 64.0), "{api}: {l}");
        } else {
            // Chat adds the template's tokens (a system prompt and the turn markers).
            assert!(
                prompt.0 > 64.0 && prompt.1 < 64.0 + 40.0,
                "{api}: {prompt:?}"
            );
        }
        let meta = run.metadata();
        assert_eq!(meta["ignore_eos"], "requested (probe accepted)", "{api}");
        assert!(
            meta["continuous_usage_stats"]
                .as_str()
                .is_some_and(|s| s.starts_with("requested (probe accepted)")
                    || s.starts_with("not requested (refused")),
            "{api}: {}",
            meta["continuous_usage_stats"]
        );
    }
}

#[test]
fn fresh_prompts_are_never_cache_hits() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-fresh");
    let server = Llama::start(&dir, tmp.path(), &[]);
    let rest = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "96",
        "--random-output-len",
        "8",
        "--qps",
        "0.5,1",
        "--duration",
        "6",
        "--server-metrics",
    ];
    let (url, metrics) = (server.chat(), server.metrics());
    let mut a = args(&url, &rest);
    a.push(&metrics);
    let run = qpsbench_pinned(&a, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let levels = run.levels();
    assert_eq!(each(&levels, "total_requests"), vec![3.0, 6.0]);
    assert_eq!(
        each(&levels, "cache_hit_requests"),
        vec![0.0, 0.0],
        "{levels:?}"
    );
    for l in &levels {
        assert!(l.get("prompt_cache_warning").is_none(), "{l}");
        // Only the chat template's few tokens are ever shared.
        assert!(f(l, "prompt_cache_hit_share") < 0.3, "{l}");
        // llama.cpp's own counters say the same.
        assert!(f(&l["server_prompt_cache"], "hit_share") < 0.3, "{l}");
    }
    let u = &run.metadata()["prompt_uniqueness"];
    assert_eq!(u["rows"], serde_json::Value::Null);
    assert!(
        u["applied"].as_str().unwrap().starts_with("none needed"),
        "{u}"
    );
}

#[test]
fn later_session_turns_are_answered_from_llama_cpps_cache() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-sessions");
    let server = Llama::start(&dir, tmp.path(), &[]);
    // 1 and 2 sessions of 4 turns: 12 requests, each turn re-sending the history with the
    // server's own answers.
    let rest = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "96",
        "--random-output-len",
        "12",
        "--turn-input-len",
        "16",
        "--session-turns",
        "4",
        "--think-time-ms",
        "500",
        "--qps",
        "1,2",
        "--duration",
        "4",
        "--save-requests",
    ];
    let url = server.chat();
    let run = qpsbench_pinned(&args(&url, &rest), tmp.path());
    assert_eq!(run.code(), 0, "{}\n{}", run.stderr, server.log_tail());
    for (l, sessions) in run.levels().iter().zip([1, 2]) {
        let s = &l["sessions"];
        assert_eq!(s["sessions_started"], sessions, "{s}");
        assert_eq!(s["sessions_completed"], sessions, "{s}");
        let turns = l["per_turn"].as_array().unwrap();
        assert_eq!(turns.len(), 4, "{l}");
        // Turn 1 is cold: only the chat template's few tokens are ever shared.
        assert_eq!(turns[0]["cache_hit_requests"], 0, "{l}");
        let first_prompt = f(&turns[0], "prompt_tokens");
        assert!(first_prompt >= 96.0, "{l}");
        // Later turns: llama.cpp's own cached tokens cover the history (every earlier
        // message, the first turn's 96-token prompt at least).
        for t in &turns[1..] {
            assert_eq!(t["cache_hit_requests"], t["requests"], "{t}");
            assert!(f(t, "cached_prompt_tokens") >= first_prompt, "{t}");
            assert!(f(t, "prompt_tokens") > first_prompt, "{t}");
        }
    }
    let records = run.records();
    assert_eq!(records.len(), 12);
    assert!(records.iter().all(|r| r["turn"].as_u64().is_some()));
}

/// A run of `rows` rows at `qps` levels of `duration` s, with `--unique-prompts mode` and
/// `extra` flags, on a fresh server started with `server_args`; returns the run (its folder
/// moved out of the scratch space) and the server's log.
fn on_fresh_server(
    (rows_n, qps, duration): (usize, &str, &str),
    mode: &str,
    extra: &[&str],
    server_args: &[&str],
) -> (Run, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = llama_dir().expect("checked by the caller");
    let tmp = TempDir::new("llama-passes");
    let server = Llama::start(&dir, tmp.path(), server_args);
    let data = tmp.file("rows.jsonl", &rows(rows_n));
    let data = data.to_str().unwrap();
    let url = server.chat();
    let mut a = args(
        &url,
        &["--dataset", data, "--qps", qps, "--duration", duration],
    );
    a.extend(["--unique-prompts", mode]);
    a.extend_from_slice(extra);
    let run = qpsbench_pinned(&a, tmp.path());
    let log = server.log_tail();
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let keep = std::env::temp_dir().join(format!("qpsbench-llama-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&keep);
    let moved = run.dir.as_ref().map(|d| {
        std::fs::rename(d, &keep).unwrap();
        keep.clone()
    });
    (Run { dir: moved, ..run }, log)
}

/// The same 4-row dataset twice (one pass per level, 4 requests each).
fn two_passes(mode: &str, extra: &[&str], server_args: &[&str]) -> (Run, String) {
    on_fresh_server((4, "0.5,0.5", "8"), mode, extra, server_args)
}

/// One row, once per level: what a slot keeps between levels.
fn one_row_twice(extra: &[&str], server_args: &[&str]) -> (Run, String) {
    on_fresh_server((1, "0.5,0.5", "2"), "off", extra, server_args)
}

#[test]
fn repeated_rows_are_cache_hits_only_when_asked() {
    if llama_dir().is_none() {
        return;
    }
    let _g = serial();
    let (off, log) = two_passes("off", &[], &[]);
    assert_eq!(off.code(), 0, "{}\n{log}", off.stderr);
    let levels = off.levels();
    assert_eq!(each(&levels, "total_requests"), vec![4.0, 4.0]);
    // Pass 2 re-sends pass 1's rows: every one a hit, and said so.
    assert_eq!(f(&levels[1], "cache_hit_requests"), 4.0, "{}", levels[1]);
    assert!(
        f(&levels[1], "prompt_cache_hit_share") > 0.6,
        "{}",
        levels[1]
    );
    let w = levels[1]["prompt_cache_warning"]
        .as_str()
        .expect("a warning");
    assert!(w.starts_with("QPS 0.5: 4 of 4 requests ("), "{w}");
    assert!(
        w.contains("came from the server's prefix cache; TTFT reflects cache hits"),
        "{w}"
    );
    let summary = std::fs::read_to_string(off.dir.as_ref().unwrap().join("summary.json")).unwrap();
    assert!(summary.contains("prompt_cache_warnings"), "{summary}");
    assert!(off.stdout.contains("QPS 0.5: 4 of 4"), "{}", off.stdout);
    // The default marks pass 2: no hits, and the probe warmed nothing for level 1.
    let (auto, log) = two_passes("auto", &[], &[]);
    assert_eq!(auto.code(), 0, "{}\n{log}", auto.stderr);
    let levels = auto.levels();
    assert_eq!(
        each(&levels, "cache_hit_requests"),
        vec![0.0, 0.0],
        "{levels:?}"
    );
    assert_eq!(levels[1]["prompt_passes"], serde_json::json!([2, 2]));
    let u = &auto.metadata()["prompt_uniqueness"];
    assert_eq!(
        (u["rows"].as_u64(), u["passes"].as_u64()),
        (Some(4), Some(2)),
        "{u}"
    );
    for run in [off, auto] {
        let _ = std::fs::remove_dir_all(run.dir.unwrap());
    }
}

#[test]
fn a_reset_empties_llama_cpps_cache_or_says_why_it_cannot() {
    let Some(_) = llama_dir() else { return };
    let _g = serial();
    let slots = TempDir::new("llama-slots");
    let slot_dir = slots.path().to_str().unwrap();
    let server_args = ["--slot-save-path", slot_dir, "--cache-ram", "0"];
    // Without a reset, the same server answers level 2's one request from the slot that holds
    // the row (level 1's). The probe's requests carry a marker of their own even under
    // --unique-prompts off, so level 1 finds nothing of theirs.
    let (control, log) = one_row_twice(&[], &server_args);
    assert_eq!(control.code(), 0, "{}\n{log}", control.stderr);
    let levels = control.levels();
    assert_eq!(
        each(&levels, "cache_hit_requests"),
        vec![0.0, 1.0],
        "{levels:?}\n{log}"
    );
    let reset = ["--reset-prefix-cache", "auto"];
    let (held, log) = one_row_twice(&reset, &server_args);
    assert_eq!(held.code(), 0, "{}\n{log}", held.stderr);
    let levels = held.levels();
    // The same row again, but from an empty cache each time.
    assert_eq!(
        each(&levels, "cache_hit_requests"),
        vec![0.0, 0.0],
        "{levels:?}\n{log}"
    );
    for l in &levels {
        assert!(
            l["prefix_cache_reset"]
                .as_str()
                .unwrap()
                .starts_with("reset by llama.cpp's slot erase"),
            "{l}"
        );
    }
    let meta = held.metadata();
    assert_eq!(meta["prefix_cache_reset"]["way"], "llama_cpp_slots");
    assert_eq!(meta["prefix_cache_reset"]["first"]["done"], true);
    // Without --slot-save-path, llama.cpp refuses: one warning with its reason, and the run goes on.
    let (refused, log) = one_row_twice(&reset, &[]);
    assert_eq!(refused.code(), 0, "{}\n{log}", refused.stderr);
    let said = refused.metadata()["prefix_cache_reset"]["first"]["said"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        said.contains("HTTP 501") && said.contains("--slot-save-path"),
        "{said}"
    );
    assert_warned_once(&refused, "--reset-prefix-cache");
    for run in [control, held, refused] {
        let _ = std::fs::remove_dir_all(run.dir.unwrap());
    }
}

#[test]
fn a_sweep_calibrated_to_this_machine_saturates_and_cites_llama_cpps_queue() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-sweep");
    let server = Llama::start(&dir, tmp.path(), &[]);
    let url = server.chat();
    let metrics = server.metrics();
    let random = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "32",
        "--random-output-len",
        "32",
    ];
    // One request on the idle server: its E2E.
    let mut a = args(&url, &random);
    a.extend(["--qps", "1", "--duration", "1"]);
    let one = qpsbench_pinned(&a, tmp.path());
    assert_eq!(one.code(), 0, "{}", one.stderr);
    let e2e = f(&one.levels()[0]["e2e_latency"], "p50");
    // Four requests per E2E: more than 4 slots sharing one CPU can serve.
    let top = 4.0 / e2e;
    let duration = (40.0 / top).clamp(6.0, 20.0);
    let (low, top_s, duration_s) = (
        format!("{:.2}", top / 8.0),
        format!("{top:.2}"),
        format!("{duration:.0}"),
    );
    let levels_arg = format!("{low},{top_s}");
    let mut a = args(&url, &random);
    a.extend([
        "--qps",
        &levels_arg,
        "--duration",
        &duration_s,
        "--server-metrics",
        &metrics,
    ]);
    let run = qpsbench_pinned(&a, tmp.path());
    assert!(run.code() == 0, "{}\n{}", run.stderr, server.log_tail());
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.dir.as_ref().unwrap().join("summary.json")).unwrap(),
    )
    .unwrap();
    let why = summary["reasons"]["saturation_qps"].as_str().unwrap();
    assert_eq!(
        summary["saturation_qps"].as_f64(),
        top_s.parse().ok(),
        "E2E {e2e} s: {why}"
    );
    assert!(
        why.contains("waiting requests (llamacpp:requests_deferred) grew from"),
        "E2E {e2e} s, top {top_s} QPS for {duration_s} s: {why}"
    );
    let total: f64 = each(&run.levels(), "total_requests").iter().sum();
    assert!(total <= 60.0, "{total} requests");
}

/// The case: one thread, 128-token prompts and 32-token answers. `--qps auto` from a
/// first rate the server cannot hold steps down until a level holds, names a capacity whose
/// "holds" level was served, within 30% of what the saturating levels got through; and a fixed
/// list that starts above that capacity says to test lower. Measured against the endpoint
/// unloaded (the probe's baseline), not against a lowest level that already queues.
#[test]
fn qps_auto_finds_a_capacity_the_server_completes_and_a_list_above_it_says_test_lower() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-auto");
    let server = Llama::start(&dir, tmp.path(), &[]);
    let url = server.chat();
    let metrics = server.metrics();
    let workload = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "128",
        "--random-output-len",
        "32",
        "--server-metrics",
        &metrics,
    ];
    // One request alone: what the server's E2E is here; 4 ÷ it is past the capacity of 4
    // slots on one CPU on any machine.
    let mut a = args(&url, &workload);
    a.extend(["--qps", "1", "--duration", "1"]);
    let one = qpsbench_pinned(&a, tmp.path());
    assert_eq!(one.code(), 0, "{}", one.stderr);
    let e2e = f(&one.metadata()["baseline"], "e2e_s");
    let start = format!("{:.2}", (2.0 / e2e).max(0.5));
    let mut a = args(&url, &workload);
    a.extend(["--qps", "auto", "--auto-start", &start, "--duration", "15"]);
    let run = qpsbench_pinned(&a, tmp.path());
    assert_eq!(run.code(), 0, "{}\n{}", run.stderr, server.log_tail());
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.dir.as_ref().unwrap().join("summary.json")).unwrap(),
    )
    .unwrap();
    let bracket = summary["auto_bracket"].as_array().expect("a capacity");
    let (lo, hi) = (bracket[0].as_f64().unwrap(), bracket[1].as_f64().unwrap());
    let levels = run.levels();
    let at = |q: f64| levels.iter().find(|l| f(l, "qps_target") == q).unwrap();
    // The level that holds was served: its throughput is at least 90% of what it offered.
    let holds = at(lo);
    let offered = f(holds, "total_requests") / (15.0 + e2e);
    assert!(
        f(holds, "throughput_qps") >= 0.9 * offered,
        "holds at {lo}: {holds}\n{}",
        run.stderr
    );
    // The capacity is what the saturating levels got through, within 30%.
    let plateau: Vec<f64> = levels
        .iter()
        .filter(|l| f(l, "qps_target") >= hi)
        .map(|l| f(l, "throughput_qps"))
        .collect();
    let mean = plateau.iter().sum::<f64>() / plateau.len() as f64;
    let capacity = (lo + hi) / 2.0;
    assert!(
        (capacity - mean).abs() <= 0.3 * mean,
        "capacity {lo}–{hi} against a plateau of {plateau:?}\n{}",
        run.stderr
    );
    // A fixed list that starts above it: saturated at its lowest level, so test lower.
    let (two, four) = (format!("{:.2}", 2.0 * hi), format!("{:.2}", 4.0 * hi));
    let list = format!("{two},{four}");
    // Another seed: prompts of their own, not the cached ones of the search.
    let mut a = args(&url, &workload);
    a.extend(["--qps", &list, "--duration", "10", "--seed", "7"]);
    let fixed = qpsbench_pinned(&a, tmp.path());
    assert_eq!(fixed.code(), 0, "{}", fixed.stderr);
    let text = std::fs::read_to_string(fixed.dir.as_ref().unwrap().join("summary.json")).unwrap();
    let s: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(
        s["next_step"].as_str().unwrap_or("").contains("test lower"),
        "{s}"
    );
    assert!(
        s["optimal_qps"].is_null() && s["recommended_limit_qps"].is_null(),
        "{s}"
    );
    assert!(
        fixed.stdout.contains("Saturated at the lowest level tried"),
        "{}",
        fixed.stdout
    );
}
