//! The APIs beside chat, against the built-in endpoint over real sockets: OpenAI's Responses,
//! Anthropic's Messages and embeddings. Each is detected from its path, measured with the
//! endpoint's own counts (its `/metrics`), reasons apart, maps faults to their categories, and
//! refuses what it cannot send with exit 2.

use crate::common::*;

/// The built-in endpoint's URL with `path` in place of its chat path.
fn at(mock: &Mock, path: &str) -> String {
    mock.url.replace("/v1/chat/completions", path)
}

/// One level of 8 requests (QPS 4 × 2 s) to `url`, with `extra` flags, saved per request.
fn level(url: &str, extra: &[&str], tag: &str) -> (Run, TempDir) {
    let tmp = TempDir::new(tag);
    let mut args = endpoint_args(url);
    args.extend(["--dataset-name", "random", "--random-input-len", "20"]);
    args.extend(["--random-output-len", "8", "--qps", "4", "--duration", "2"]);
    args.push("--save-requests");
    args.extend_from_slice(extra);
    let run = qpsbench(&args, tmp.path());
    (run, tmp)
}

#[test]
fn responses_and_messages_stream_with_the_endpoints_own_counts() {
    let _g = serial();
    for path in ["/v1/responses", "/v1/messages"] {
        let mock = Mock::start(&["--ttft-ms", "10", "--itl-ms", "5", "--prefix-cache"]);
        let (run, _tmp) = level(&at(&mock, path), &[], "apis");
        assert_eq!(run.code(), 0, "{path}: {}", run.stderr);
        let api = path.trim_start_matches("/v1/");
        assert_eq!(run.metadata()["api"], api);
        let l = &run.levels()[0];
        assert_eq!(l["successful_requests"], 8, "{path}: {l}");
        assert_eq!(l["token_count_source"], "usage", "{path}");
        assert_eq!(f(&l["output_tokens"], "p50"), 8.0, "{path}");
        // What the endpoint generated, by its own counter, is what usage reported, and the
        // probe's answers (the endpoint check and the unloaded baseline, before the level).
        let probes = run.metadata()["baseline"]["requests"].as_f64().unwrap();
        assert_eq!(probes, 3.0, "{path}");
        assert_eq!(
            f(l, "output_tokens_total") + 8.0 * probes,
            mock.generated_tokens(),
            "{path}: {}",
            run.metadata()["ignore_eos"]
        );
        for r in run.records() {
            // 20 words and the template's 4 tokens, cache reads included (Messages reports them
            // apart from input_tokens).
            assert_eq!(r["prompt_tokens"], 24, "{path}: {r}");
            assert!(r["cached_tokens"].is_u64(), "{path}: {r}");
            assert!(f(&r, "first_token_us") > 0.0, "{path}: {r}");
        }
    }
}

#[test]
fn reasoning_is_measured_apart_on_every_streamed_api() {
    let _g = serial();
    let mock = Mock::start(&[
        "--ttft-ms",
        "20",
        "--itl-ms",
        "10",
        "--output-tokens",
        "8",
        "--reasoning-tokens",
        "10",
    ]);
    for path in ["/v1/responses", "/v1/messages"] {
        let (run, _tmp) = level(&at(&mock, path), &[], "apis-reasoning");
        assert_eq!(run.code(), 0, "{path}: {}", run.stderr);
        let l = &run.levels()[0];
        let (ttft, ttfot) = (f(&l["ttft"], "p50"), f(&l["ttfot"], "p50"));
        // 10 reasoning tokens 10 ms apart come between the first token and the answer's.
        assert!(
            (0.08..0.6).contains(&(ttfot - ttft)),
            "{path}: {ttft} {ttfot}"
        );
        assert_eq!(f(&l["output_tokens"], "p50"), 18.0, "{path}: {l}");
        if path == "/v1/responses" {
            // Responses' usage says how many were reasoning; Anthropic's does not.
            assert_eq!(f(&l["reasoning_tokens"], "p50"), 10.0, "{l}");
        }
    }
}

#[test]
fn embeddings_report_inputs_and_latency_without_ttft() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "10", "--prefill-ms-per-1k-tokens", "50"]);
    let tmp = TempDir::new("apis-embeddings");
    let url = at(&mock, "/v1/embeddings");
    let mut args = endpoint_args(&url);
    args.extend(["--dataset-name", "random", "--random-input-len", "20"]);
    args.extend(["--qps", "4,8", "--duration", "2", "--embedding-batch", "4"]);
    args.extend(["--save-requests", "--plot"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.metadata()["embedding_batch"], 4);
    for l in run.levels() {
        assert_eq!(l["success_rate"], 100.0, "{l}");
        // No first token and no answer: null figures (`-` in the table), never 0.
        assert!(
            l["ttft"]["p50"].is_null() && l["tokens_per_sec"]["p50"].is_null(),
            "{l}"
        );
        assert!(f(&l["e2e_latency"], "p50") >= 0.01, "{l}");
        let e = &l["embeddings"];
        assert_eq!(e["inputs"], f(&l, "successful_requests") as u64 * 4, "{l}");
        let ratio = f(e, "inputs_per_sec") / f(&l, "throughput_qps");
        assert!((ratio - 4.0).abs() < 1e-3, "{l}");
        // Each request's prompt tokens are its 4 inputs' (20 words each), by usage.
        assert_eq!(f(&l["prompt_tokens"], "p50"), 80.0, "{l}");
    }
    assert!(
        run.stdout.contains("inputs/s (4 per request)"),
        "{}",
        run.stdout
    );
    let row = run
        .stdout
        .lines()
        .find(|l| l.starts_with("4.0 "))
        .expect("a row for QPS 4");
    assert!(
        row.split_whitespace().filter(|c| *c == "-").count() >= 6,
        "{row}"
    );
    assert!(run.dir.as_ref().unwrap().join("benchmark_qps.png").exists());
}

#[test]
fn faults_map_to_their_categories_on_every_api() {
    let _g = serial();
    let cases = [
        ("error-event", "/v1/messages", "Stream error"),
        ("error-event", "/v1/responses", "Stream error"),
        ("truncated-chunk", "/v1/messages", "Truncated stream"),
        ("bad-json", "/v1/responses", "Malformed response"),
        ("retry429", "/v1/messages", "HTTP 429"),
        ("html502", "/v1/embeddings", "HTTP 502"),
        ("json-answer", "/v1/embeddings", "Malformed response"),
    ];
    for (mode, path, category) in cases {
        let mock = faulty_mock(mode);
        let (run, _tmp) = level(&at(&mock, path), &[], "apis-faults");
        assert_eq!(run.code(), 0, "{mode} {path}: {}", run.stderr);
        let l = &run.levels()[0];
        let failed = errors_starting_with(l, category);
        assert!(failed > 0, "{mode} {path}: {l}");
        assert_eq!(
            failed + l["successful_requests"].as_u64().unwrap(),
            8,
            "{mode} {path}: {l}"
        );
    }
}

#[test]
fn sessions_resend_the_history_in_each_apis_own_array() {
    let _g = serial();
    let tmp = TempDir::new("apis-sessions");
    for (path, key) in [("/v1/responses", "input"), ("/v1/messages", "messages")] {
        let log = tmp.path().join(format!("{key}.log"));
        let log_arg = log.to_str().unwrap().to_string();
        let mock = Mock::start(&[
            "--ttft-ms",
            "5",
            "--output-tokens",
            "4",
            "--log-requests",
            &log_arg,
        ]);
        let url = at(&mock, path);
        let mut args = endpoint_args(&url);
        args.extend(["--dataset-name", "random", "--random-input-len", "8"]);
        args.extend(["--qps", "2", "--duration", "2", "--session-turns", "3"]);
        args.extend(["--think-time-ms", "10"]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{path}: {}", run.stderr);
        let bodies: Vec<serde_json::Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .collect();
        // The third turn: user, assistant (the endpoint's answer), user, assistant, user.
        let third = bodies
            .iter()
            .find(|b| b["body"][key].as_array().is_some_and(|a| a.len() == 5))
            .unwrap_or_else(|| panic!("{path}: no third turn in {bodies:?}"));
        let turns = third["body"][key].as_array().unwrap();
        assert_eq!(turns[1]["role"], "assistant", "{path}");
        assert!(!turns[1]["content"].as_str().unwrap().is_empty(), "{path}");
        assert_eq!(
            run.levels()[0]["sessions"]["completed"],
            run.levels()[0]["sessions"]["started"]
        );
    }
}

#[test]
fn what_an_api_cannot_send_is_refused_before_the_run() {
    let mock = Mock::start(&[]);
    let tmp = TempDir::new("apis-refused");
    let cases: [(&str, &[&str], &str); 4] = [
        (
            "/v1/chat/completions",
            &["--embedding-batch", "4"],
            "applies to --api embeddings only",
        ),
        (
            "/v1/responses",
            &["--extra-body", r#"{"input":"x"}"#],
            "\"input\" is set by qpsbench",
        ),
        (
            "/v1/messages",
            &["--extra-body", r#"{"system":"x"}"#],
            "\"system\" is set by qpsbench",
        ),
        (
            "/v1/embeddings",
            &["--session-turns", "3"],
            "sessions need a history",
        ),
    ];
    for (path, extra, says) in cases {
        let url = at(&mock, path);
        let mut args = endpoint_args(&url);
        args.extend(["--dataset-name", "random", "--qps", "1", "--duration", "1"]);
        args.extend_from_slice(extra);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 2, "{path} {extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{path}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
}
