//! Measurements you can trust: per-request records, the client-limited gate, warm-up seconds and
//! the concurrency cap, against the built-in endpoint over loopback.

use crate::common::*;

#[test]
fn requests_jsonl_has_one_record_per_request_and_agrees_with_the_aggregates() {
    let _g = serial();
    let mock = Mock::start(&[
        "--ttft-ms",
        "30",
        "--itl-ms",
        "5",
        "--output-tokens",
        "6",
        "--max-concurrency",
        "6",
    ]);
    let tmp = TempDir::new("records");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    // The second level overloads the endpoint (503s), so failed requests are recorded too.
    args.extend([
        "--qps",
        "20,150",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--save-requests",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stdout.contains("requests.jsonl"));
    let recs = run.records();
    for (i, l) in run.levels().iter().enumerate() {
        let level: Vec<_> = recs
            .iter()
            .filter(|r| r["level"].as_u64() == Some(i as u64 + 1))
            .collect();
        let measured: Vec<_> = level.iter().filter(|r| r["warmup"] == false).collect();
        let warm = level.len() - measured.len();
        assert_eq!(measured.len() as f64, f(l, "total_requests"), "{l}");
        assert_eq!(warm as f64, f(&l["warmup"], "requests"));
        let ok: Vec<_> = measured.iter().filter(|r| r["error"].is_null()).collect();
        assert_eq!(ok.len() as f64, f(l, "successful_requests"));
        let tokens: u64 = ok
            .iter()
            .map(|r| r["output_tokens"].as_u64().unwrap())
            .sum();
        assert_eq!(tokens as f64, f(l, "output_tokens_total"));
        for (k, n) in l["errors"].as_object().unwrap() {
            let c = measured.iter().filter(|r| r["error"] == k.as_str()).count();
            assert_eq!(c as u64, n.as_u64().unwrap(), "{k}");
        }
        for r in &measured {
            let t = |k: &str| r[k].as_f64();
            let (intended, sent, done) = (
                t("intended_us").unwrap(),
                t("sent_us").unwrap(),
                t("done_us").unwrap(),
            );
            // Measured requests are intended after the warm-up (0.5 s), in time order.
            assert!(
                intended >= 500_000.0 && sent >= intended && done >= sent,
                "{r}"
            );
            if r["error"].is_null() {
                assert_eq!(r["status"], 200);
                assert_eq!(r["token_source"], "usage");
                let reads = r["token_read_us"].as_array().unwrap();
                assert!(!reads.is_empty());
                assert_eq!(t("first_token_us"), reads[0].as_f64());
                assert_eq!(t("last_token_us"), reads.last().unwrap().as_f64());
                assert!(t("first_byte_us").unwrap() <= t("first_token_us").unwrap());
            } else if r["error"] == "HTTP 503" {
                assert_eq!(r["status"], 503);
                assert!(r["output_tokens"].is_null());
            }
        }
        // TTFT from the records agrees with the histogram's median (3 significant digits).
        let mut ttft: Vec<f64> = ok
            .iter()
            .map(|r| {
                (r["first_token_us"].as_f64().unwrap() - r["intended_us"].as_f64().unwrap()) / 1e6
            })
            .collect();
        if !ttft.is_empty() {
            ttft.sort_by(f64::total_cmp);
            let median = ttft[(ttft.len() - 1) / 2];
            let p50 = l["ttft"]["p50"].as_f64().unwrap();
            assert!(
                (median - p50).abs() <= p50 * 0.01 + 0.0002,
                "{median} vs {p50}"
            );
        }
    }
    assert!(run.levels()[1]["errors"]["HTTP 503"].as_u64().unwrap() > 0);
}

#[test]
fn a_starved_client_is_flagged_and_a_modest_one_is_not() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "1"]);
    let tmp = TempDir::new("starved");
    let ds = tmp.file("d.json", DATASET);
    // base_args sets a generous lag threshold (100 ms): a modest rate stays far below it even
    // on a loaded machine; a starved client misses it or its rate.
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--cores",
        "1",
        "--arrival",
        "constant",
        "--warmup-connections",
        "4",
    ]);
    let mut modest = args.clone();
    modest.extend(["--qps", "20", "--duration", "2"]);
    let run = qpsbench(&modest, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["client_limited"], false, "{l}");
    assert!(!run.stdout.contains("client-limited"));
    assert_eq!(l["client_cpu_per_core"].as_array().unwrap().len(), 1);
    assert!(f(&l["client_cpu_per_core"][0], "cpu_s") > 0.0);
    assert_eq!(l["send_gap_fit"]["test"], "gap_error");

    // One client core asked for 100,000 requests/s (2,000 requests in 20 ms, nearly all on new
    // connections): far more than it can send.
    let mut starved = args.clone();
    starved.extend(["--qps", "100000", "--duration", "0.02"]);
    let run = qpsbench(&starved, tmp.path());
    assert_eq!(run.code(), 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("every level was client-limited"),
        "{}",
        run.stderr
    );
    let l = &run.levels()[0];
    assert_eq!(l["client_limited"], true, "{l}");
    let reasons = l["client_limited_reasons"].as_array().unwrap();
    assert!(!reasons.is_empty());
    assert!(run.stdout.contains("* client-limited"), "{}", run.stdout);
    // The table marks the level's achieved rate.
    assert!(run
        .stdout
        .lines()
        .any(|line| line.starts_with("100000.0") && line.contains('*')));
}

#[test]
fn max_concurrency_holds_arrivals_back_and_reports_the_waits() {
    let _g = serial();
    // The endpoint refuses (503) beyond 2 in flight; the client's cap of 2 means it never sees
    // more, however fast arrivals come. Each request takes ~150 ms, so 2 slots serve ~13/s and
    // a 20 QPS level must hold arrivals back.
    let mock = Mock::start(&[
        "--ttft-ms",
        "100",
        "--itl-ms",
        "10",
        "--output-tokens",
        "5",
        "--max-concurrency",
        "2",
    ]);
    let tmp = TempDir::new("cap");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "20",
        "--duration",
        "1",
        "--max-concurrency",
        "2",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(f(l, "total_requests"), 20.0);
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    let cap = &l["concurrency_cap"];
    assert_eq!(f(cap, "limit"), 2.0);
    let waited = f(cap, "waited");
    assert!(waited >= 5.0, "{cap}");
    assert!(f(&cap["wait_us"], "max") > 100_000.0, "{cap}");
    // Latency counts from the intended time, waits included: the last requests waited ~0.5 s.
    assert!(l["e2e_latency"]["max"].as_f64().unwrap() > 0.4, "{l}");
    // Held-back arrivals are the cap's doing, not the client's.
    assert_eq!(l["client_limited"], false, "{l}");
    assert_eq!(run.metadata()["max_concurrency"], 2);
}

#[test]
fn bad_flags_of_this_issue_are_refused() {
    let tmp = TempDir::new("flags");
    let ds = tmp.file("d.json", DATASET);
    for (flag, value, want) in [
        ("--warmup", "-1", "--warmup -1: expected"),
        (
            "--max-concurrency",
            "0",
            "--max-concurrency 0: expected at least 1",
        ),
        ("--max-send-lag-ms", "0", "--max-send-lag-ms 0: expected"),
        ("--min-rate-ratio", "1.5", "--min-rate-ratio 1.5: expected"),
    ] {
        let mut args = base_args(
            "http://127.0.0.1:9/v1/chat/completions",
            ds.to_str().unwrap(),
        );
        set_arg(&mut args, flag, value);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 2, "{}", run.stderr);
        assert!(run.stderr.contains(want), "{}", run.stderr);
    }
}

#[test]
fn selftest_writes_its_json_with_and_without_busy_polling() {
    let _g = serial();
    let tmp = TempDir::new("selftest");
    let run = qpsbench(
        &[
            "selftest",
            "--rates",
            "50,100",
            "--duration",
            "0.5",
            "--busy-poll",
            "both",
        ],
        tmp.path(),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("SELFTEST without --busy-poll"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Headline:"));
    let dir = run.dir.clone().expect("a results folder");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("selftest.json")).unwrap()).unwrap();
    assert!(json.get("headline_qps").is_some(), "{json}");
    // The endpoint's own lateness, over every content chunk it sent.
    let late = &json["endpoint_chunk_lateness_us"];
    assert!(late["chunks"].as_u64().unwrap() > 0, "{late}");
    assert!(f(late, "p50_us") <= f(late, "p99_us") && f(late, "p99_us") <= f(late, "max_us"));
    assert!(run.stdout.contains("The endpoint's own lateness"));
    for sweep in [&json, &json["busy_poll"]] {
        // The machine's own stalls, probed on the client CPU before each sweep.
        let stalls = sweep["machine_stalls"].as_array().unwrap();
        assert!(!stalls.is_empty(), "{sweep}");
        for s in stalls {
            let share = f(s, "late_share");
            assert!((0.0..=1.0).contains(&share), "{s}");
            assert!(f(s, "max_us") > 0.0, "{s}");
        }
        let rates = sweep["rates"].as_array().unwrap();
        assert_eq!(rates.len(), 2, "{sweep}");
        for (r, target) in rates.iter().zip([50.0, 100.0]) {
            assert_eq!(f(r, "target_qps"), target);
            assert!((f(r, "actual_qps") - target).abs() < target * 0.1, "{r}");
            for k in ["send_lag_us", "client_added_delay_us"] {
                for p in ["p50", "p99", "max"] {
                    assert!(r[k][p].is_number(), "{k}.{p}: {r}");
                }
            }
            // Same machine, same clock: the delay is positive and far below a second.
            let added = f(&r["client_added_delay_us"], "p50");
            assert!(added > 0.0 && added < 1e6, "{r}");
            assert!(f(r, "client_cpu_us_per_token") > 0.0);
        }
    }
    assert_eq!(json["busy_poll_used"], false);
}
