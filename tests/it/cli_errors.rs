//! Bad input gets a clear message naming the flag, file, sample or field, and exit status 2,
//! before any request is sent.

use crate::common::*;

fn expect_error(args: &[&str], results: &std::path::Path, needles: &[&str]) {
    let run = qpsbench(args, results);
    assert_eq!(run.code(), 2, "args {args:?}\nstderr: {}", run.stderr);
    for n in needles {
        assert!(run.stderr.contains(n), "expected {n:?} in: {}", run.stderr);
    }
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(
        run.dir.is_none(),
        "no results folder for a run that never started"
    );
}

#[test]
fn missing_required_flags_are_all_named_at_once() {
    let tmp = TempDir::new("missing");
    let ds = tmp.file("d.json", DATASET);
    let d = ds.to_str().unwrap();
    let url = "http://127.0.0.1:9/v1/chat/completions";
    expect_error(
        &["--model", "m", "--dataset", d],
        tmp.path(),
        &["Missing --endpoint argument"],
    );
    expect_error(
        &["--endpoint", url, "--dataset", d],
        tmp.path(),
        &["Missing --model argument"],
    );
    expect_error(
        &["--endpoint", url, "--model", "m"],
        tmp.path(),
        &["Missing --dataset argument"],
    );
    // All three at once, one line each, and no key needed.
    let run = qpsbench(&["--qps", "1"], tmp.path());
    assert_eq!(run.code(), 2, "{}", run.stderr);
    for flag in ["--endpoint", "--model", "--dataset"] {
        let line = format!("Missing {flag} argument");
        assert_eq!(run.stderr.matches(&line).count(), 1, "{}", run.stderr);
    }
    assert!(
        !run.stderr.contains("--api-key"),
        "the key is optional: {}",
        run.stderr
    );
}

#[test]
fn bad_flag_values_and_urls() {
    let tmp = TempDir::new("flags");
    let ds = tmp.file("d.json", DATASET);
    let d = ds.to_str().unwrap();
    let url = "http://127.0.0.1:9/v1/chat/completions";
    let mut base = base_args(url, d);
    base.extend(["--qps", "1,x"]);
    expect_error(&base, tmp.path(), &["--qps"]);
    let mut a = base_args(url, d);
    a.extend(["--qps", "0.01", "--duration", "10"]);
    expect_error(&a, tmp.path(), &["sends no request"]);
    let mut a = base_args(url, d);
    a.extend(["--qps", "-1"]);
    expect_error(&a, tmp.path(), &["--qps -1"]);
    let mut a = base_args(url, d);
    a.extend(["--percentiles", "101"]);
    expect_error(&a, tmp.path(), &["--percentiles 101"]);
    let mut a = base_args(url, d);
    a.extend(["--arrival", "gaussian"]);
    expect_error(&a, tmp.path(), &["--arrival"]);
    let mut a = base_args(url, d);
    a.extend(["--arrival", "gamma", "--burstiness", "0"]);
    expect_error(&a, tmp.path(), &["--burstiness 0", "above 0"]);
    let mut a = base_args(url, d);
    a.extend(["--burstiness", "2"]);
    expect_error(&a, tmp.path(), &["--burstiness 2", "--arrival gamma"]);
    expect_error(
        &base_args("ftp://x/", d),
        tmp.path(),
        &["--endpoint", "unsupported"],
    );
    expect_error(
        &base_args("http://[::1/x", d),
        tmp.path(),
        &["--endpoint", "unclosed"],
    );
    expect_error(
        &base_args("http://no-such-host.invalid/v1", d),
        tmp.path(),
        &["cannot resolve host"],
    );
    // A key that would break the header is refused without being echoed.
    let a = [
        "--endpoint",
        url,
        "--api-key",
        "abc\r\nX-Injected: 1",
        "--model",
        "m",
        "--dataset",
        d,
    ];
    let run = qpsbench(&a, tmp.path());
    assert_eq!(run.code(), 2);
    assert!(!run.stderr.contains("X-Injected"), "{}", run.stderr);
}

#[test]
fn every_dataset_error_names_file_sample_and_field() {
    let tmp = TempDir::new("dataset");
    let url = "http://127.0.0.1:9/v1/chat/completions";
    let missing = tmp.path().join("nope.json");
    expect_error(
        &base_args(url, missing.to_str().unwrap()),
        tmp.path(),
        &["cannot read dataset", "nope.json"],
    );
    let cases: &[(&str, &[&str])] = &[
        (
            "[\n  {\"prompt_content\": \"x\",\n  \"cut_chat_history\": [}\n]",
            &["invalid JSON at line 3 column"],
        ),
        (
            "{\"prompt_content\": \"x\"}",
            &["expected a JSON array of samples, found an object"],
        ),
        ("[]", &["empty"]),
        (
            r#"[{"prompt_content":"p","cut_chat_history":[]},{"cut_chat_history":[]}]"#,
            &["sample 1", "missing \"prompt_content\""],
        ),
        (
            r#"[{"prompt_content":"p"}]"#,
            &["sample 0", "missing \"cut_chat_history\""],
        ),
        (
            r#"[{"prompt_content":["p"],"cut_chat_history":[]}]"#,
            &["\"prompt_content\" must be a string, found an array"],
        ),
        (
            r#"[{"prompt_content":"p","cut_chat_history":"hi"}]"#,
            &["\"cut_chat_history\" must be an array of turns, found a string"],
        ),
        (
            r#"[{"prompt_content":"p","cut_chat_history":[{"role":"robot","content":"x"}]}]"#,
            &["sample 0", "turn 0", "unknown role \"robot\""],
        ),
        (
            r#"[{"prompt_content":"p","cut_chat_history":[{"role":"user","content":{"a":1}}]}]"#,
            &["turn 0", "\"content\" must be a string, found an object"],
        ),
        (
            r#"[{"prompt_content":"p","cut_chat_history":[{"role":"user"}]}]"#,
            &["turn 0", "missing \"content\""],
        ),
    ];
    for (i, (json, needles)) in cases.iter().enumerate() {
        let p = tmp.file(&format!("bad{i}.json"), json);
        let mut needles = needles.to_vec();
        let name = format!("bad{i}.json");
        needles.push(&name);
        expect_error(&base_args(url, p.to_str().unwrap()), tmp.path(), &needles);
    }
}

#[test]
fn help_lists_every_seed_flag() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--endpoint",
        "--api-key",
        "--model",
        "--dataset",
        "--qps",
        "--duration",
        "--percentiles",
        "--show-tokens",
        "--max-tokens",
        "--temperature",
        "--plot",
        "--output",
        "--plot-output",
        "--cores",
        "--arrival",
        "--seed",
        "--timeout",
        "--results-dir",
        "--no-usage-request",
        "serve-mock",
        "demo",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("[default: 1,5,10,20]"));
    assert!(help.contains("[default: 50,95,99]"));
}

#[test]
fn a_low_open_file_limit_is_reported_before_the_run() {
    let tmp = TempDir::new("nofile");
    let ds = tmp.file("d.json", DATASET);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"));
    cmd.args(base_args(
        "http://127.0.0.1:9/v1/chat/completions",
        ds.to_str().unwrap(),
    ))
    .args([
        "--qps",
        "100",
        "--duration",
        "0.05",
        "--no-probe",
        "--results-dir",
    ])
    .arg(tmp.path());
    limit_open_files(&mut cmd, 256);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // 100 QPS × up to 10 s may hold 1,000 connections: more than 256 files.
    let warning = stderr
        .lines()
        .position(|l| l.contains("the open-file limit is 256"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let started = stderr.lines().position(|l| l.contains("[1/1]")).unwrap();
    assert!(warning < started, "{stderr}");
    assert!(stderr.contains("ulimit -n"), "{stderr}");
}
