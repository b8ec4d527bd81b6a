//! A level's memory does not grow with its number of requests: each request's task is freed
//! when it finishes. (Its own test binary, so that the peak RSS of the children it measures is
//! this run's alone.)

mod common;

use common::*;

#[test]
fn memory_stays_flat_over_20000_requests_in_one_level() {
    let mock = Mock::start(&["--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "1"]);
    let tmp = TempDir::new("memory");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    // A slow (debug, loaded) client still sends all 20,000; being late is not what this checks.
    set_arg(&mut args, "--max-send-lag-ms", "100000");
    args.extend([
        "--qps",
        "4000",
        "--duration",
        "5",
        "--cores",
        "1",
        "--min-rate-ratio",
        "0.01",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(f(l, "total_requests"), 20_000.0, "{l}");
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    // Each request's task is ~3.5 KiB: held to the level's end, 20,000 of them took the peak
    // from ~25 MiB to ~95 MiB (release build). What a level rightly holds per arrival is ~110
    // bytes (its plan, and its own request's parts: prompts never repeat by accident), 2 MiB
    // here; this debug build peaks at ~61-64 MiB on the 2-core dev VM.
    let rss = children_max_rss_mib();
    assert!(rss < 75.0, "peak RSS {rss:.0} MiB");
}

/// Runs qpsbench with `args` and returns its results and its own peak RSS (MiB), read with
/// `wait4` for that child alone (the endpoint, another child, holds as many streams).
fn measured(args: &[&str], results: &std::path::Path) -> (Run, f64) {
    use std::os::unix::process::ExitStatusExt;
    let log = |name: &str| std::fs::File::create(results.join(name)).unwrap();
    let before: Vec<_> = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    // Reaped by the wait4 below, which reads its rusage (std's wait would not).
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(BIN)
        .args(args)
        .arg("--results-dir")
        .arg(results)
        .stdout(log("stdout.txt"))
        .stderr(log("stderr.txt"))
        .spawn()
        .unwrap();
    let (mut status, pid) = (0, child.id() as libc::pid_t);
    // SAFETY: wait4 only writes the status and the struct passed; the child is ours, and std
    // never waits for it after this (the handle is dropped unwaited).
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut u) }, pid);
    let dir = std::fs::read_dir(results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && !before.contains(p));
    let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap_or_default();
    let run = Run {
        output: std::process::Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: Vec::new(),
            stderr: Vec::new(),
        },
        stdout: read("stdout.txt"),
        stderr: read("stderr.txt"),
        dir,
    };
    (run, u.ru_maxrss as f64 / 1024.0)
}

/// What the client holds per open stream stays within the documented bound
/// (docs/architecture.md, "Invariants of the hot path"): the same 1,600 requests once as short
/// streams and once all open together (each ~5.8 s long, sent over 4 s), on one client core; the
/// difference in the client's peak RSS, per stream.
#[test]
fn memory_per_open_stream_stays_within_the_bound() {
    let peak = |itl_ms: &str| {
        let mock = Mock::start(&[
            "--ttft-ms",
            "50",
            "--itl-ms",
            itl_ms,
            "--output-tokens",
            "20",
        ]);
        let tmp = TempDir::new("stream-memory");
        let ds = tmp.file("d.json", DATASET);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        set_arg(&mut args, "--max-send-lag-ms", "100000");
        args.extend([
            "--qps",
            "400",
            "--duration",
            "4",
            "--cores",
            "1",
            "--min-rate-ratio",
            "0.01",
            "--continuous-usage",
            "off",
        ]);
        let (run, rss) = measured(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(f(l, "total_requests"), 1600.0, "{l}");
        assert_eq!(f(l, "success_rate"), 100.0, "{l}");
        rss
    };
    let (short, open) = (peak("0"), peak("300"));
    let per_stream_kib = (open - short) * 1024.0 / 1600.0;
    eprintln!("peak RSS {short:.1} MiB with short streams, {open:.1} MiB with 1,600 open: {per_stream_kib:.1} KiB per open stream");
    // The bound: 24 KiB per open stream, twice what this debug build measured on the 2-core dev
    // VM (11.0 KiB; a release build's ~19k open streams take ~9.2 KiB each).
    assert!(
        per_stream_kib < 24.0,
        "{per_stream_kib:.1} KiB per open stream"
    );
}
