//! Multi-turn sessions (`--session-turns`) against the built-in endpoint with its prefix cache:
//! each later turn carries the server's own earlier answers byte for byte (the endpoint logs
//! what it received and what it answered, and its answers differ per request and need JSON
//! escapes), later turns are cache hits and start sooner, think times are kept, a failed turn
//! ends its session, flags that cannot hold are refused, and shards merge into the same
//! per-turn figures. The same against a real engine is in `tests/it/llama.rs`.

use std::collections::HashMap;

use crate::common::*;

/// The endpoint: 5 ms to the first token plus 400 ms per 1,000 uncached prompt tokens, 8-token
/// answers, a prefix cache, and a log of what it received and answered.
fn mock(log: &std::path::Path, extra: &[&str]) -> Mock {
    let mut args = vec![
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--output-tokens",
        "8",
        "--prefix-cache",
        "--prefill-ms-per-1k-tokens",
        "400",
        "--log-requests",
        log.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Mock::start(&args)
}

/// Sessions of 3 turns: a 1,000-token first prompt, 10-token later messages, 200 ms think time.
fn session_args(url: &str) -> Vec<&str> {
    let mut args = endpoint_args(url);
    args.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "1000",
        "--random-output-len",
        "8",
        "--turn-input-len",
        "10",
        "--session-turns",
        "3",
        "--think-time-ms",
        "200",
        "--save-requests",
    ]);
    args
}

/// The endpoint's log: (the messages it received, the answer it sent), in order.
fn logged(path: &std::path::Path) -> Vec<(Vec<serde_json::Value>, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let messages = v["body"]["messages"].as_array().unwrap().clone();
            (messages, v["answer"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn later_turns_carry_the_servers_own_answers_and_start_from_its_cache() {
    let _g = serial();
    let tmp = TempDir::new("sessions");
    let log = tmp.path().join("mock.jsonl");
    let mock = mock(&log, &[]);
    let mut args = session_args(&mock.url);
    // 6 requests/s in sessions of 3: 2 sessions/s for 2 s, 4 sessions, 12 turns.
    args.extend(["--qps", "6", "--duration", "2", "--plot"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("starting 4 sessions of 3 turns"),
        "{}",
        run.stderr
    );
    let l = &run.levels()[0];
    let s = &l["sessions"];
    assert_eq!(s["sessions_started"], 4, "{s}");
    assert_eq!(s["sessions_completed"], 4, "{s}");
    assert_eq!(s["turns_sent"], 12, "{s}");
    assert_eq!(s["sessions_per_sec_target"], 2.0, "{s}");
    assert_eq!(l["total_requests"], 12, "{l}");
    assert_eq!(l["successful_requests"], 12, "{l}");
    assert_eq!(l["client_limited"], false, "{l}");
    // Turn 1 is cold; turns 2 and 3 find their history in the cache and start sooner.
    let turns = l["per_turn"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{l}");
    assert_eq!(turns[0]["turn"], "1");
    assert_eq!(turns[0]["cache_hit_requests"], 0, "{l}");
    let first = f(&turns[0]["ttft"], "p50");
    for t in &turns[1..] {
        assert_eq!(t["requests"], 4, "{t}");
        assert_eq!(t["cache_hit_requests"], 4, "{t}");
        assert!(f(t, "prompt_cache_hit_share") > 0.9, "{t}");
        // Each later prompt holds the whole history: 1,000 tokens and more.
        assert!(f(t, "prompt_tokens") > 1000.0, "{t}");
        assert!(f(&t["ttft"], "p50") < first / 2.0, "{first} vs {t}");
    }
    assert!(f(s, "later_turns_ttft_speedup") > 2.0, "{s}");
    assert!(
        run.stdout.contains("QPS 6.0: later turns' TTFT p50"),
        "{}",
        run.stdout
    );
    // Hits are expected of sessions, and the warning says so.
    let warning = l["prompt_cache_warning"].as_str().unwrap_or_default();
    assert!(warning.contains("--session-turns"), "{warning}");
    assert_eq!(run.metadata()["sessions"]["turns"], 3.0);
    assert!(run.dir.as_ref().unwrap().join("turns.png").is_file());

    // Every later turn re-sent the earlier messages and the server's own answer, byte for byte.
    let log = logged(&log);
    // 12 turns and the probe's three before the first level (the check and the baseline).
    assert_eq!(log.len(), 12 + 3);
    let answers: HashMap<String, &String> = log
        .iter()
        .map(|(m, a)| (serde_json::to_string(m).unwrap(), a))
        .collect();
    let mut carried = 0;
    for (messages, _) in log.iter().filter(|(m, _)| m.len() > 1) {
        let n = messages.len();
        assert_eq!(messages[n - 2]["role"], "assistant");
        assert_eq!(messages[n - 1]["role"], "user");
        let earlier = serde_json::to_string(&messages[..n - 2]).unwrap();
        assert_eq!(
            Some(&messages[n - 2]["content"].as_str().unwrap().to_string()),
            answers.get(&earlier).copied(),
            "turn {} does not carry its previous answer",
            n / 2 + 1
        );
        carried += 1;
    }
    assert_eq!(carried, 8);
    // Answers vary per request (each starts at its own word; some carry quotes and line
    // breaks, escaped on the way back), so a fixed string could not have passed.
    let distinct: std::collections::HashSet<_> = log.iter().map(|(_, a)| a).collect();
    assert!(distinct.len() >= 8, "{distinct:?}");
    assert!(log.iter().any(|(_, a)| a.contains('"') && a.contains('\n')));

    // Each record names its session and turn; each turn is due the think time after the
    // previous turn's last byte, and its latencies count from then.
    let records = run.records();
    let mut by_session: HashMap<u64, Vec<&serde_json::Value>> = HashMap::new();
    for r in &records {
        by_session
            .entry(r["session"].as_u64().unwrap())
            .or_default()
            .push(r);
    }
    assert_eq!(by_session.len(), 4);
    for turns in by_session.values_mut() {
        turns.sort_by_key(|r| r["turn"].as_u64().unwrap());
        let numbers: Vec<u64> = turns.iter().map(|r| r["turn"].as_u64().unwrap()).collect();
        assert_eq!(numbers, [1, 2, 3]);
        for pair in turns.windows(2) {
            let gap_ms = (f(pair[1], "intended_us") - f(pair[0], "done_us")) / 1000.0;
            assert!((150.0..=200.5).contains(&gap_ms), "think time {gap_ms} ms");
            let lag_ms = (f(pair[1], "sent_us") - f(pair[1], "intended_us")) / 1000.0;
            assert!((0.0..100.0).contains(&lag_ms), "send lag {lag_ms} ms");
        }
    }
}

#[test]
fn a_failed_turn_ends_its_session() {
    let _g = serial();
    let tmp = TempDir::new("sessions-fail");
    let log = tmp.path().join("mock.jsonl");
    // Half the answers are cut off mid-stream.
    let mock = mock(&log, &["--fault", "truncated-chunk:0.5"]);
    let mut args = session_args(&mock.url);
    args.extend(["--qps", "9", "--duration", "2"]);
    let run = qpsbench(&args, tmp.path());
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let l = &run.levels()[0];
    let s = &l["sessions"];
    let started = s["sessions_started"].as_u64().unwrap();
    assert_eq!(started, 6, "{s}");
    let ended = s["sessions_ended_by_failure"].as_u64().unwrap();
    assert!(ended >= 1, "{s}");
    assert_eq!(
        s["sessions_completed"].as_u64().unwrap() + ended,
        started,
        "{s}"
    );
    assert!(s["turns_sent"].as_u64().unwrap() < 18, "{s}");
    assert_eq!(l["total_requests"], s["turns_sent"], "{l}");
    // No turn was sent after a failed one of its session.
    let mut by_session: HashMap<u64, Vec<(u64, bool)>> = HashMap::new();
    for r in run.records() {
        let failed = !r["error"].is_null();
        let turn = r["turn"].as_u64().unwrap();
        by_session
            .entry(r["session"].as_u64().unwrap())
            .or_default()
            .push((turn, failed));
    }
    for turns in by_session.values_mut() {
        turns.sort();
        if let Some(i) = turns.iter().position(|&(_, failed)| failed) {
            assert_eq!(i + 1, turns.len(), "a turn after a failure: {turns:?}");
        }
    }
}

#[test]
fn session_flags_that_cannot_hold_are_refused() {
    let tmp = TempDir::new("sessions-refused");
    let ds = tmp.file("d.json", DATASET);
    let chat = "http://127.0.0.1:9/v1/chat/completions";
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec![
                "--dataset",
                ds.to_str().unwrap(),
                "--session-turns",
                "3",
                "--turn-input-len",
                "5",
            ],
            "--turn-input-len: applies to synthetic sessions",
        ),
        (
            vec!["--dataset-name", "random", "--think-time-ms", "100"],
            "--think-time-ms: applies to sessions only",
        ),
        (
            vec!["--dataset-name", "random", "--session-turns", "0"],
            "--session-turns 0",
        ),
        (
            vec![
                "--dataset-name",
                "random",
                "--session-turns",
                "2",
                "--api",
                "completions",
            ],
            "sessions need a history of messages",
        ),
        (
            vec![
                "--dataset-name",
                "random",
                "--session-turns",
                "2",
                "--turn-input-len",
                "0",
            ],
            "--turn-input-len 0",
        ),
    ];
    for (extra, want) in cases {
        let mut args = endpoint_args(chat);
        args.extend(["--qps", "1", "--duration", "1"]);
        args.extend(extra);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 2, "{want}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}

#[test]
fn shards_of_a_session_run_merge_into_its_per_turn_figures() {
    let _g = serial();
    let tmp = TempDir::new("sessions-merge");
    let log = tmp.path().join("mock.jsonl");
    let mock = mock(&log, &[]);
    let at = format!("{:.3}", unix_now() + 2.0);
    let dirs: Vec<std::path::PathBuf> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["0/2", "1/2"]
            .into_iter()
            .map(|shard| {
                let (url, at, root) = (&mock.url, &at, tmp.path().join(shard.replace('/', "-")));
                scope.spawn(move || {
                    let mut args = session_args(url);
                    args.extend(["--qps", "6", "--duration", "2", "--cores", "1"]);
                    args.extend(["--start-at", at, "--shard", shard]);
                    let run = qpsbench(&args, &root);
                    assert_eq!(run.code(), 0, "shard {shard}: {}", run.stderr);
                    run.dir.expect("a run folder")
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut args = vec!["merge"];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let merged = qpsbench(&args, &tmp.path().join("merged"));
    assert_eq!(merged.code(), 0, "{}", merged.stderr);
    let l = &merged.levels()[0];
    // The single schedule's 4 sessions, split between the shards, each whole on one of them.
    assert_eq!(l["sessions"]["sessions_started"], 4, "{l}");
    assert_eq!(l["sessions"]["turns_sent"], 12, "{l}");
    let turns = l["per_turn"].as_array().unwrap();
    let requests: Vec<u64> = turns
        .iter()
        .map(|t| t["requests"].as_u64().unwrap())
        .collect();
    assert_eq!(requests, [4, 4, 4], "{l}");
    assert_eq!(turns[1]["cache_hit_requests"], 4, "{l}");
    // The merged per-turn TTFT is the records' own, within the histograms' precision.
    let records = merged.records();
    let mut ttft: Vec<f64> = records
        .iter()
        .filter(|r| r["turn"] == 1)
        .map(|r| (f(r, "first_token_us") - f(r, "intended_us")) / 1e6)
        .collect();
    ttft.sort_by(f64::total_cmp);
    let want = percentile(&ttft, 50.0);
    let got = f(&turns[0]["ttft"], "p50");
    assert!((got - want).abs() <= want * 0.01 + 1e-4, "{got} vs {want}");
}

#[test]
fn a_sharegpt_file_replays_its_human_turns_with_the_servers_answers() {
    let _g = serial();
    let tmp = TempDir::new("sessions-sharegpt");
    let log = tmp.path().join("mock.jsonl");
    let mock = mock(&log, &[]);
    let data = tmp.file(
        "chats.json",
        r#"[
          {"conversations": [{"from": "system", "value": "Be brief."},
            {"from": "human", "value": "First question?"}, {"from": "gpt", "value": "DATASET ANSWER 1"},
            {"from": "human", "value": "Second question?"}, {"from": "gpt", "value": "DATASET ANSWER 2"},
            {"from": "human", "value": "Third question?"}]},
          {"conversations": [{"from": "human", "value": "Other opening?"},
            {"from": "gpt", "value": "DATASET ANSWER 3"}, {"from": "human", "value": "Other follow-up?"}]}
        ]"#,
    );
    let mut args = endpoint_args(&mock.url);
    // 3 and 2 turns: 2.5 on average, so 2.5 requests/s start one session per second.
    args.extend([
        "--dataset",
        data.to_str().unwrap(),
        "--dataset-name",
        "sharegpt",
    ]);
    args.extend([
        "--session-turns",
        "8",
        "--qps",
        "2.5",
        "--duration",
        "2",
        "--save-requests",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["sessions"]["sessions_started"], 2, "{l}");
    assert_eq!(l["sessions"]["sessions_completed"], 2, "{l}");
    assert_eq!(l["total_requests"], 5, "{l}");
    assert_eq!(run.metadata()["sessions"]["turns"], 2.5);
    // The last request of each conversation: its human turns in order, the server's own answers
    // between them, never the dataset's.
    let log = logged(&log);
    let answers: HashMap<String, &String> = log
        .iter()
        .map(|(m, a)| (serde_json::to_string(m).unwrap(), a))
        .collect();
    let contents = |m: &[serde_json::Value]| -> Vec<String> {
        m.iter()
            .map(|x| x["content"].as_str().unwrap().to_string())
            .collect()
    };
    let longest = log.iter().map(|(m, _)| m.len()).max().unwrap();
    let (last, _) = log.iter().find(|(m, _)| m.len() == longest).unwrap();
    let c = contents(last);
    assert_eq!(c[0], "Be brief.");
    assert!(c[1].ends_with("First question?"), "{c:?}");
    assert_eq!(
        (c[3].as_str(), c[5].as_str()),
        ("Second question?", "Third question?")
    );
    for k in [2, 4] {
        assert_eq!(last[k]["role"], "assistant");
        let earlier = serde_json::to_string(&last[..k]).unwrap();
        assert_eq!(Some(&c[k]), answers.get(&earlier).copied(), "answer {k}");
    }
    assert!(!log
        .iter()
        .any(|(m, _)| contents(m).iter().any(|t| t.starts_with("DATASET"))));
    let (other, _) = log.iter().find(|(m, _)| m.len() == 3).unwrap();
    assert_eq!(other[2]["content"], "Other follow-up?");

    // JSONL with `messages`: the same.
    let lines = tmp.file(
        "chats.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"J1\"}, {\"role\": \"assistant\", \"content\": \"DATASET\"}, {\"role\": \"user\", \"content\": \"J2\"}]}\n",
    );
    let mut args = endpoint_args(&mock.url);
    args.extend(["--dataset", lines.to_str().unwrap(), "--session-turns", "4"]);
    args.extend(["--qps", "2", "--duration", "1"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["sessions"]["sessions_completed"], 1, "{l}");
    assert_eq!(l["per_turn"][1]["requests"], 1, "{l}");
}

#[test]
fn an_answer_past_the_cap_ends_its_session() {
    let _g = serial();
    let tmp = TempDir::new("sessions-cap");
    // 15,000 tokens of about 5 bytes: a 70 KiB answer, past the 64 KiB a turn keeps.
    let mock = Mock::start(&[
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
        "--output-tokens",
        "15000",
    ]);
    let mut args = endpoint_args(&mock.url);
    args.extend(["--dataset-name", "random", "--random-input-len", "20"]);
    args.extend(["--random-output-len", "15000", "--session-turns", "3"]);
    args.extend(["--qps", "3", "--duration", "1", "--continuous-usage", "off"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = &run.levels()[0]["sessions"];
    assert_eq!(s["sessions_started"], 1, "{s}");
    assert_eq!(s["sessions_ended_by_answer_cap"], 1, "{s}");
    assert_eq!(s["turns_sent"], 1, "{s}");
}

#[test]
fn a_sessions_turns_go_to_the_endpoint_its_first_turn_used() {
    let _g = serial();
    let tmp = TempDir::new("sessions-replicas");
    let (log_a, log_b) = (tmp.path().join("a.jsonl"), tmp.path().join("b.jsonl"));
    let (a, b) = (mock(&log_a, &[]), mock(&log_b, &[]));
    let mut args = session_args(&a.url);
    args.extend(["--endpoint", &b.url, "--qps", "6", "--duration", "2"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.levels()[0]["sessions"]["sessions_completed"], 4);
    // Round robin spreads the 4 sessions 2 and 2; every later turn is on its first turn's
    // endpoint: its history's first message was sent there as a first turn.
    for log in [&log_a, &log_b] {
        let log = logged(log);
        let firsts: Vec<&serde_json::Value> = log
            .iter()
            .filter(|(m, _)| m.len() == 1)
            .map(|(m, _)| &m[0])
            .collect();
        let later: Vec<_> = log.iter().filter(|(m, _)| m.len() > 1).collect();
        assert_eq!(later.len(), 4, "2 sessions of 3 turns");
        for (m, _) in later {
            assert!(
                firsts.contains(&&m[0]),
                "a turn away from its session's endpoint"
            );
        }
    }
}
