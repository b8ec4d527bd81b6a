//! Every numeric flag of every command (the benchmark, serve-mock, selftest, plot, demo), given
//! absurd values: each run ends at once with exit status 2 and a message naming the flag, and
//! never with a panic. (A value that slipped through would start a run; the deadline below
//! turns that into a failure instead of a hang.)

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Values no numeric flag accepts.
const ABSURD: &[&str] = &["1e20", "-1", "NaN", "inf", "-inf"];

/// Runs the binary with `args` (no results written: the folder is a scratch one) and returns
/// (exit code, stderr); fails if it is still running after 20 s.
fn run(args: &[String], results: &std::path::Path) -> (i32, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(results)
        .env_remove("QPSBENCH_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{args:?} was accepted and ran");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check(prefix: &[&str], flag: &str, values: &[&str], results: &std::path::Path) {
    for v in ABSURD.iter().chain(values) {
        let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        // `--flag=value`: a negative value is then the flag's value, not another flag.
        args.push(format!("{flag}={v}"));
        let (code, stderr) = run(&args, results);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: the message must name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_benchmark_refuses_absurd_numbers_by_flag_name() {
    let tmp = TempDir::new("absurd-bench");
    let ds = tmp.file("d.json", DATASET);
    let ds = ds.to_str().unwrap();
    let results = tmp.path().display().to_string();
    let base = [
        "--endpoint",
        "http://127.0.0.1:9/v1/chat/completions",
        "--api-key",
        "k",
        "--model",
        "m",
        "--dataset",
        ds,
        "--results-dir",
        &results,
    ];
    // (flag, values besides ABSURD that are out of its range)
    let table: &[(&str, &[&str])] = &[
        ("--qps", &["0", "1e8"]),
        ("--auto-start", &["0"]),
        ("--auto-max-qps", &["0"]),
        ("--auto-tolerance", &["0", "1"]),
        ("--duration", &["0", "2e6"]),
        ("--percentiles", &["0", "101"]),
        ("--max-tokens", &["0", "5000000000"]),
        ("--temperature", &["1000"]),
        ("--burstiness", &["0"]),
        ("--seed", &["1.5"]),
        ("--timeout", &["0"]),
        ("--connect-timeout", &["0"]),
        ("--ttft-timeout", &["0"]),
        ("--idle-timeout", &["0"]),
        ("--cores", &["0", "100000"]),
        ("--warmup-connections", &["100000"]),
        ("--warmup", &["2e6"]),
        ("--max-concurrency", &["0"]),
        ("--max-send-lag-ms", &["0"]),
        ("--max-send-lag-share", &["2"]),
        ("--min-rate-ratio", &["0", "2"]),
        ("--slo-ttft", &["0"]),
        ("--slo-e2e", &["0"]),
        ("--slo-percentile", &["0", "101"]),
        ("--saturation-success", &["101"]),
        ("--saturation-throughput", &["0", "2"]),
        ("--saturation-ttft-growth", &["1"]),
        ("--random-input-len", &["0", "2000000"]),
        ("--random-output-len", &["0", "5000000000"]),
        ("--random-range-ratio", &["1", "2"]),
        ("--random-prefix-len", &["2000000"]),
        ("--random-pool-size", &["0", "20000000"]),
        ("--replay-speed", &["0", "2e6"]),
        ("--shards", &["0", "200000"]),
        ("--cooldown", &["2e6"]),
        ("--start-in", &["2e6"]),
        ("--start-at", &["0", "5e9"]),
    ];
    for (flag, values) in table {
        check(&base, flag, values, tmp.path());
    }
    // A plan too large to hold: refused with the reason, before any schedule is built.
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(["--qps=1e6", "--duration=1e6"].map(String::from));
    let (code, stderr) = run(&args, tmp.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("at most 100000000"), "{stderr}");
    // A non-ASCII endpoint is an input error, not a panic.
    for url in ["ħttp://x/v1", "http://é/v1", "httpé://x"] {
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args[1] = url.to_string();
        let (code, stderr) = run(&args, tmp.path());
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(stderr.contains("--endpoint"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn serve_mock_selftest_and_demo_refuse_absurd_numbers_by_flag_name() {
    let tmp = TempDir::new("absurd-cmds");
    let results = tmp.path().display().to_string();
    let mock = ["serve-mock", "--port", "0", "--exit-after", "1"];
    let table: &[(&str, &[&str])] = &[
        ("--ttft-ms", &["1e30", "4e6"]),
        ("--itl-ms", &["4e6"]),
        ("--output-tokens", &["2e7"]),
        ("--tokens-per-chunk", &["0"]),
        ("--max-concurrency", &["2e7"]),
        ("--capacity-tokens-per-sec", &["0", "1e-300"]),
        ("--threads", &["0", "5000"]),
        ("--port", &["70000"]),
    ];
    for (flag, values) in table {
        check(&mock, flag, values, tmp.path());
    }
    check(
        &["serve-mock", "--port", "0"],
        "--exit-after",
        &["0"],
        tmp.path(),
    );

    let selftest = ["selftest", "--results-dir", &results];
    let table: &[(&str, &[&str])] = &[
        ("--rates", &["0"]),
        ("--duration", &["0"]),
        ("--output-tokens", &["0", "1000000"]),
        ("--client-cores", &["0"]),
        ("--max-added-delay-us", &["0"]),
    ];
    for (flag, values) in table {
        check(&selftest, flag, values, tmp.path());
    }

    let plot = ["plot", &results];
    check(&plot, "--slo-ttft", &["0"], tmp.path());
    check(&plot, "--slo-e2e", &["0"], tmp.path());

    let demo = ["demo", "--results-dir", &results];
    check(&demo, "--duration", &["0"], tmp.path());
    check(&demo, "--cores", &["0"], tmp.path());
}
