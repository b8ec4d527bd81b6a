//! End-to-end runs of the benchmark against the built-in endpoint over loopback.

use crate::common::*;

#[test]
fn achieved_rate_is_within_5_percent_at_20_and_200_qps() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "8"]);
    let tmp = TempDir::new("rate");
    let ds = tmp.file("d.json", DATASET);
    for arrival in ["constant", "poisson"] {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend(["--qps", "20,200", "--duration", "3", "--arrival", arrival]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let levels = run.levels();
        assert_eq!(levels.len(), 2);
        for (l, target) in levels.iter().zip([20.0, 200.0]) {
            assert_eq!(f(l, "qps_target"), target);
            assert_eq!(f(l, "total_requests"), target * 3.0);
            let actual = f(l, "actual_qps");
            assert!(
                (actual - target).abs() / target < 0.05,
                "{arrival}: target {target}, actual {actual}"
            );
            assert_eq!(f(l, "success_rate"), 100.0, "{l}");
            // Keep-alive: far fewer connections than requests.
            assert!(
                f(l, "new_connections") < f(l, "total_requests") / 2.0,
                "{l}"
            );
        }
    }
}

#[test]
fn ttft_tracks_the_endpoint_and_a_role_chunk_does_not_count() {
    let _g = serial();
    let mock = Mock::start(&[
        "--ttft-ms",
        "200",
        "--itl-ms",
        "5",
        "--output-tokens",
        "10",
        "--role-chunk",
    ]);
    let tmp = TempDir::new("ttft");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "10", "--duration", "2"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    let ttft = l["ttft"]["p50"].as_f64().unwrap();
    // The role chunk arrives at once; TTFT must wait for content (200 ms), within a generous bound.
    assert!((0.195..0.5).contains(&ttft), "ttft p50 {ttft}");
    // Nine more tokens follow the first, 5 ms apart (~45 ms); the bound leaves room for a late
    // first chunk on a loaded machine.
    let e2e = l["e2e_latency"]["p50"].as_f64().unwrap();
    assert!(e2e >= ttft + 0.02, "e2e {e2e} ttft {ttft}");
}

#[test]
fn token_counts_exact_with_usage_and_labelled_estimated_without() {
    let _g = serial();
    let tmp = TempDir::new("tokens");
    let ds = tmp.file("d.json", DATASET);
    let cases: [(&[&str], &[&str], &str, f64); 3] = [
        (&["--tokens-per-chunk", "4"], &[], "usage", 17.0),
        // No usage from the server: chunks are counted (5 chunks carry the 17 tokens).
        (
            &["--tokens-per-chunk", "4", "--no-usage"],
            &[],
            "estimated",
            5.0,
        ),
        (&[], &["--no-usage-request"], "estimated", 17.0),
    ];
    for (mock_args, client_args, source, per_request) in cases {
        let mut m = vec!["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "17"];
        m.extend(mock_args);
        let mock = Mock::start(&m);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend(["--qps", "10", "--duration", "1"]);
        args.extend(client_args);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(
            l["token_count_source"], source,
            "{mock_args:?} {client_args:?}"
        );
        let ok = f(l, "successful_requests");
        assert_eq!(ok, 10.0);
        assert_eq!(
            f(l, "output_tokens_total"),
            per_request * ok,
            "{mock_args:?}"
        );
    }
    // max_tokens caps the endpoint's output, and the count follows usage, not max_tokens.
    let mock = Mock::start(&["--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "50"]);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "5", "--duration", "1", "--max-tokens", "7"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(f(&run.levels()[0], "output_tokens_total"), 35.0);
}

#[test]
fn http_503_beyond_max_concurrency_is_counted_with_its_body() {
    let _g = serial();
    let mock = Mock::start(&[
        "--ttft-ms",
        "400",
        "--itl-ms",
        "10",
        "--output-tokens",
        "10",
        "--max-concurrency",
        "2",
    ]);
    let tmp = TempDir::new("503");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "20", "--duration", "2", "--arrival", "constant"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    let n503 = l["errors"]["HTTP 503"].as_f64().unwrap_or(0.0);
    let ok = f(l, "successful_requests");
    assert!(n503 >= 20.0, "{l}");
    assert!(ok >= 2.0, "{l}");
    assert_eq!(n503 + ok, 40.0);
    assert!(l["error_samples"]["HTTP 503"]
        .as_str()
        .unwrap()
        .contains("Server overloaded"));
    assert!(run.stdout.contains("QPS 20.0 - Errors ("), "{}", run.stdout);
    assert!(run.stdout.contains("  - HTTP 503: "), "{}", run.stdout);
}

#[test]
fn results_folder_json_shape_and_no_api_key_anywhere() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5"]);
    let tmp = TempDir::new("shape");
    let ds = tmp.file("d.json", DATASET);
    let key = "sk-SECRET-4f9a8b7c6d5e";
    let args = [
        "--endpoint",
        &mock.url,
        "--model",
        "m",
        "--dataset",
        ds.to_str().unwrap(),
        "--qps",
        "5,10",
        "--duration",
        "1",
        "--percentiles",
        "50,75",
        "--plot",
        "--show-tokens",
        "--output",
        "my_results.json",
    ];
    // The key comes from the environment, as the README suggests.
    let run = qpsbench_env(&args, tmp.path(), &[("QPSBENCH_API_KEY", key)]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.stderr.contains("--show-tokens is deprecated"));
    let dir = run.dir.clone().unwrap();
    // --plot writes the PNG (default name) next to the results.
    assert!(dir.join("benchmark_qps.png").is_file());
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(name.len(), 19, "{name}");
    assert_eq!(&name[4..5], "-");
    assert_eq!(&name[10..11], "_");
    let meta = run.metadata();
    for k in [
        "timestamp",
        "endpoint",
        "model",
        "dataset",
        "qps_levels",
        "duration",
        "max_tokens",
        "temperature",
        "percentiles",
        "show_tokens",
        "seed",
        "arrival",
        "cores",
    ] {
        assert!(meta.get(k).is_some(), "metadata lacks {k}: {meta}");
    }
    assert_eq!(meta["qps_levels"], serde_json::json!([5.0, 10.0]));
    assert_eq!(meta["duration"], 1);
    assert_eq!(meta["max_tokens"], 512);
    assert_eq!(meta["seed"], 42);
    let levels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("my_results.json")).unwrap())
            .unwrap();
    let l = &levels[0];
    for k in [
        "qps_target",
        "actual_qps",
        "success_rate",
        "ttft",
        "e2e_latency",
        "tokens_per_sec",
        "errors",
        "total_requests",
        "successful_requests",
        "throughput_qps",
        "send_lag_us",
        "token_count_source",
    ] {
        assert!(l.get(k).is_some(), "level lacks {k}: {l}");
    }
    for m in ["ttft", "e2e_latency", "tokens_per_sec"] {
        for p in ["p50", "p75", "p90", "p95", "p99", "max"] {
            assert!(l[m][p].is_number(), "{m}.{p} in {l}");
        }
    }
    for p in ["p50", "p99", "max"] {
        assert!(l["send_lag_us"][p].is_number());
    }
    assert!(run.stdout.contains("TTFT P75(s)"), "{}", run.stdout);
    // The key is nowhere: not in any file written, not on the console.
    for entry in std::fs::read_dir(&dir).unwrap() {
        // Bytes, not text: the PNG is in the folder too.
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(key.len()).any(|w| w == key.as_bytes()));
    }
    assert!(!run.stdout.contains(key) && !run.stderr.contains(key));
    // A second run right away gets a folder of its own.
    let again = qpsbench_env(&args, tmp.path(), &[("QPSBENCH_API_KEY", key)]);
    assert_eq!(again.code(), 0);
    assert_ne!(again.dir.unwrap(), dir);
    assert!(dir.join("metadata.json").exists());
}

#[test]
fn ipv6_loopback_and_the_epoll_fallback() {
    let _g = serial();
    let mock = Mock::start_on(
        "::1",
        &["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "5"],
    );
    assert!(mock.url.starts_with("http://[::1]:"), "{}", mock.url);
    let tmp = TempDir::new("v6");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "10", "--duration", "1"]);
    let run = qpsbench_env(&args, tmp.path(), &[("MONOIO_FORCE_LEGACY_DRIVER", "1")]);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(run.metadata()["io_driver"], "epoll");
    assert!(run.stderr.contains("using the epoll driver"));
    assert_eq!(f(&run.levels()[0], "success_rate"), 100.0);
}

#[test]
fn unreachable_endpoint_is_counted_per_level_not_fatal() {
    let _g = serial();
    // Bind then drop a listener: the port is very likely closed afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let tmp = TempDir::new("refused");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&url, ds.to_str().unwrap());
    args.extend(["--qps", "5", "--duration", "1"]);
    // By default the endpoint check stops the run before level 1 (tests/it/first_minute.rs);
    // without it, every request is counted in its category, and no capacity is claimed.
    args.push("--no-probe");
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("no request succeeded at any level"),
        "{}",
        run.stderr
    );
    let l = &run.levels()[0];
    assert_eq!(l["errors"]["Connection refused"], 5, "{l}");
    assert_eq!(f(l, "success_rate"), 0.0);
    assert!(l["ttft"]["p50"].is_null());
    assert!(run.stdout.contains("Connection refused: 5 occurrences"));
}

#[test]
fn timeout_is_its_own_category() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "3000", "--output-tokens", "2"]);
    let tmp = TempDir::new("timeout");
    let ds = tmp.file("d.json", DATASET);
    // With --busy-poll too: the cores never park, and timeouts must still fire.
    for busy in [false, true] {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "4",
            "--duration",
            "1",
            "--timeout",
            "0.3",
            "--no-probe",
        ]);
        if busy {
            args.push("--busy-poll");
        }
        let started = std::time::Instant::now();
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 4, "no success anywhere: {}", run.stderr);
        assert_eq!(
            run.levels()[0]["errors"]["Timeout (total)"],
            4,
            "busy {busy}"
        );
        if std::env::var("QPSBENCH_REQUIRE_IO_URING").as_deref() == Ok("1") {
            // CI requires io_uring: the busy-poll path must really have run on it.
            assert_eq!(run.metadata()["io_driver"], "io_uring", "{}", run.stderr);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
    }
}

#[test]
fn warm_up_is_bounded_by_the_timeout() {
    let _g = serial();
    // A listener that never accepts: connects complete in the kernel backlog, but over TLS the
    // handshake then waits forever. Warm-up must give up at --timeout, not stall the run.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/v1/chat/completions", l.local_addr().unwrap());
    let tmp = TempDir::new("warm-timeout");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "2",
        "--duration",
        "1",
        "--timeout",
        "0.5",
        "--warmup-connections",
        "3",
        "--cores",
        "1",
        "--no-probe",
    ]);
    let started = std::time::Instant::now();
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 4, "{}", run.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let l = &run.levels()[0];
    assert_eq!(l["connections"]["warmup_failures"], 3, "{l}");
    assert_eq!(l["errors"]["Timeout (total)"], 2, "{l}");
    // With a connect timeout shorter than the total one, the same stall is a connect timeout.
    set_arg(&mut args, "--timeout", "5");
    set_arg(&mut args, "--connect-timeout", "0.3");
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 4, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["errors"]["Timeout (connect)"], 2, "{l}");
    assert_eq!(l["errors"].as_object().unwrap().len(), 1, "{l}");
}

#[test]
fn first_token_and_idle_timeouts_have_their_own_categories() {
    let _g = serial();
    let tmp = TempDir::new("ttft-idle");
    let ds = tmp.file("d.json", DATASET);
    // The first token after 3 s: over a 0.3 s first-token limit.
    let slow_start = Mock::start(&["--ttft-ms", "3000", "--output-tokens", "2"]);
    // The first token at once, then 2 s to the next: over a 0.3 s idle limit.
    let stall = Mock::start(&["--ttft-ms", "5", "--itl-ms", "2000", "--output-tokens", "3"]);
    for (mock, flag, want) in [
        (&slow_start, "--ttft-timeout", "Timeout (first token)"),
        (&stall, "--idle-timeout", "Timeout (idle)"),
    ] {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "4",
            "--duration",
            "1",
            "--timeout",
            "10",
            flag,
            "0.3",
            "--no-probe",
        ]);
        let started = std::time::Instant::now();
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 4, "{}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(l["errors"][want], 4, "{flag}: {l}");
        assert_eq!(l["errors"].as_object().unwrap().len(), 1, "{l}");
        // Well before the 10 s total limit (and the endpoint's 3–4 s).
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "{flag}"
        );
    }
}

#[test]
fn itl_tpot_and_ttfb_follow_the_endpoint_whatever_the_chunking() {
    let _g = serial();
    let tmp = TempDir::new("itl");
    let ds = tmp.file("d.json", DATASET);
    // 10 ms per token, as 1 token per chunk or as one chunk of 4 tokens every 40 ms. TPOT (from
    // usage) is ~10 ms either way. With continuous usage stats (probed and accepted by the
    // built-in endpoint) each chunk's token count is known, so ITL is ~10 ms either way too.
    // Without them (`--continuous-usage off`, or an endpoint that refuses them) ITL counts one
    // token per chunk: ~40 ms with 4 tokens per chunk. TTFB (headers are sent at once) is well
    // below TTFT.
    for (per_chunk, continuous, refuse, itl_ms) in [
        ("1", "auto", false, 10.0),
        ("4", "auto", false, 10.0),
        ("4", "off", false, 40.0),
        ("4", "auto", true, 40.0),
    ] {
        let mut mock_args = vec![
            "--ttft-ms",
            "60",
            "--itl-ms",
            "10",
            "--output-tokens",
            "17",
            "--tokens-per-chunk",
            per_chunk,
        ];
        if refuse {
            mock_args.push("--strict-stream-options");
        }
        let mock = Mock::start(&mock_args);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "10",
            "--duration",
            "2",
            "--show",
            "itl,tpot,ttfb",
            "--continuous-usage",
            continuous,
        ]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let l = &run.levels()[0];
        let itl = l["itl"]["p50"].as_f64().unwrap();
        let tpot = l["tpot"]["p50"].as_f64().unwrap();
        let want = itl_ms / 1000.0;
        assert!(
            (want * 0.8..want * 1.4).contains(&itl),
            "{per_chunk}/chunk, {continuous}, refused {refuse}: itl {itl}"
        );
        assert_eq!(l["errors"].as_object().unwrap().len(), 0, "{l}");
        let meta = run.metadata();
        let cus = meta["continuous_usage_stats"].as_str().unwrap();
        let want_meta = match (continuous, refuse) {
            ("off", _) => "off",
            (_, false) => "requested (probe accepted)",
            (_, true) => "not requested (refused by the endpoint: HTTP 400)",
        };
        assert_eq!(cus, want_meta);
        if refuse {
            assert!(run.stderr.contains("continuous_usage_stats (HTTP 400)"));
        }
        assert!(
            (0.008..0.014).contains(&tpot),
            "{per_chunk}/chunk: tpot {tpot}"
        );
        let ttfb = l["ttfb"]["p50"].as_f64().unwrap();
        let ttft = l["ttft"]["p50"].as_f64().unwrap();
        assert!(ttfb < 0.03 && ttft > 0.055, "ttfb {ttfb} ttft {ttft}");
        for p in ["p50", "p90", "p95", "p99", "max"] {
            assert!(
                l["itl"][p].is_number() && l["tpot"][p].is_number() && l["ttfb"][p].is_number()
            );
        }
        // Every token counted; the rate is over the time the work took (the completion window).
        assert_eq!(f(l, "output_tokens_total"), 17.0 * 20.0);
        let window = f(l, "completion_window_s");
        assert!(window > 2.0, "{l}");
        assert!((f(l, "output_tokens_per_sec") - 17.0 * 20.0 / window).abs() < 1e-3);
        assert!(
            run.stdout.contains("ITL P50(s)")
                && run.stdout.contains("TPOT P99(s)")
                && run.stdout.contains("TTFB P95(s)"),
            "{}",
            run.stdout
        );
    }
}

#[test]
fn gamma_arrivals_keep_the_rate_and_are_recorded() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("gamma");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "50",
        "--duration",
        "2",
        "--arrival",
        "gamma",
        "--burstiness",
        "0.5",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let meta = run.metadata();
    assert_eq!(meta["arrival"], "gamma");
    assert_eq!(meta["burstiness"], 0.5);
    let l = &run.levels()[0];
    assert_eq!(f(l, "total_requests"), 100.0);
    assert!((f(l, "actual_qps") - 50.0).abs() < 2.5, "{l}");
}

/// Starts a qpsbench run in the background and returns it once its first level has started.
fn spawn_run(
    args: &[&str],
    results: &std::path::Path,
) -> (std::process::Child, std::path::PathBuf) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"))
        .args(args)
        .arg("--results-dir")
        .arg(results)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut dir = None;
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(i) = line.find("results in ") {
            dir = Some(std::path::PathBuf::from(line[i + 11..].trim()));
        }
        if line.starts_with("[1/") {
            break;
        }
        line.clear();
    }
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, dir.expect("the run printed its results folder"))
}

#[test]
fn ctrl_c_saves_the_partial_level_and_exits_130() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "300", "--itl-ms", "50", "--output-tokens", "4"]);
    let tmp = TempDir::new("sigint");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "5,5", "--duration", "20"]);
    let (child, dir) = spawn_run(&args, tmp.path());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let stopped = std::time::Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    // Stops within the grace period, not at the end of the 20 s level.
    assert!(stopped.elapsed() < std::time::Duration::from_secs(8));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("QPS BENCHMARK RESULTS"), "{stdout}");
    assert!(stdout.contains("interrupted (a partial level"), "{stdout}");
    let levels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("benchmark_qps_results.json")).unwrap(),
    )
    .unwrap();
    let levels = levels.as_array().unwrap();
    assert_eq!(levels.len(), 1, "the second level never started");
    let l = &levels[0];
    assert_eq!(l["interrupted"], true);
    let sent = f(l, "total_requests");
    assert!((3.0..100.0).contains(&sent), "{l}");
    assert_eq!(
        f(l, "successful_requests") + f(l, "failed_requests") + f(l, "unfinished_requests"),
        sent
    );
    // The partial level is not taken for the endpoint's saturation point.
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(s["saturation_qps"].is_null(), "{s}");
}

#[test]
fn a_second_ctrl_c_exits_at_once_and_files_stay_valid() {
    let _g = serial();
    // Requests that take 10 s: the grace period would not be enough for them.
    let mock = Mock::start(&["--ttft-ms", "10000", "--output-tokens", "2"]);
    let tmp = TempDir::new("sigint2");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "5", "--duration", "20"]);
    let (mut child, dir) = spawn_run(&args, tmp.path());
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let stopped = std::time::Instant::now();
    // SIGTERM first (as a service manager sends), then Ctrl-C.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(200));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(stopped.elapsed() < std::time::Duration::from_secs(2));
    // Whatever was written is whole JSON (metadata always; results only if a level ended).
    for name in [
        "metadata.json",
        "benchmark_qps_results.json",
        "summary.json",
    ] {
        if let Ok(text) = std::fs::read_to_string(dir.join(name)) {
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert!(dir.join("metadata.json").exists());
}

#[test]
fn the_completions_api_end_to_end() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "6"]);
    let url = mock.url.replace("/v1/chat/completions", "/v1/completions");
    let tmp = TempDir::new("completions");
    let ds = tmp.file("d.json", DATASET);
    // Inferred from the path: prompts in, streamed `text` out, counted like chat content.
    let mut args = base_args(&url, ds.to_str().unwrap());
    args.extend(["--qps", "5", "--duration", "1", "--continuous-usage", "off"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(l, "output_tokens_total"), 5.0 * 6.0, "{l}");
    assert_eq!(l["token_count_source"], "usage");
    assert!(l["ttft"]["p50"].as_f64().unwrap() >= 0.02, "{l}");
    assert_eq!(run.metadata()["api"], "completions");
    // --api chat sends messages to the completions path, which refuses them: the endpoint
    // check stops the run before level 1, naming the path's API.
    args.extend(["--api", "chat"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 4, "{}", run.stderr);
    assert!(run.stderr.contains("HTTP 400"), "{}", run.stderr);
    assert!(
        run.stderr.contains("pass --api completions"),
        "{}",
        run.stderr
    );
    assert!(run.dir.is_none(), "no results folder");
}
