//! Verdicts on an endpoint that queues instead of refusing, as vLLM, SGLang and TGI do: the
//! built-in endpoint's capacity model shares 1000 tokens/s among all streams, so with TTFT 50 ms,
//! ITL 10 ms and 20 tokens it completes at most 1000 × 0.01 ÷ (0.05 + 19 × 0.01) ≈ 41.7
//! requests/s, and every request still succeeds. Throughput must say so (completions over the
//! time they took), and the saturation rule must fire on it without any failure.
//!
//! Also: the client's own open-file limit ends a level with its own error category, the level
//! flagged, and every results file written.

use crate::common::*;

const CAPACITY: f64 = 1000.0 * 0.01 / (0.05 + 19.0 * 0.01);

fn queueing_mock() -> Mock {
    Mock::start(&[
        "--capacity-tokens-per-sec",
        "1000",
        "--ttft-ms",
        "50",
        "--itl-ms",
        "10",
        "--output-tokens",
        "20",
    ])
}

fn summary(run: &Run) -> serde_json::Value {
    let p = run.dir.as_ref().unwrap().join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn throughput_is_what_a_queueing_endpoint_completes() {
    let _g = serial();
    let mock = queueing_mock();
    let tmp = TempDir::new("queueing");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    // Half the capacity, then twice it; the TTFT rule is out of the way, so only throughput can
    // call the second level saturated.
    args.extend([
        "--qps",
        "20,83",
        "--duration",
        "4",
        "--arrival",
        "constant",
        "--saturation-ttft-growth",
        "1000",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let levels = run.levels();
    let (half, double) = (&levels[0], &levels[1]);
    for l in &levels {
        assert_eq!(
            f(l, "success_rate"),
            100.0,
            "a queueing endpoint answers every request: {l}"
        );
    }
    // Twice the capacity: completions over the time they took, within 20% of the capacity.
    let tp = f(double, "throughput_qps");
    assert!(
        (0.8 * CAPACITY..=1.2 * CAPACITY).contains(&tp),
        "throughput {tp} vs capacity {CAPACITY:.1}: {double}"
    );
    assert!(f(double, "drain_s") > 1.0, "{double}");
    assert!(
        f(double, "in_window_throughput_qps") <= 1.2 * CAPACITY,
        "{double}"
    );
    // (Each figure is rounded to the µs on its own.)
    let window = f(double, "completion_window_s");
    assert!((window - (f(double, "duration_s") + f(double, "drain_s"))).abs() < 1e-5);
    let tokens = f(double, "output_tokens_per_sec");
    assert!((tokens - 20.0 * tp).abs() < 1.0, "{tokens} vs {tp}");
    // Half the capacity keeps up.
    assert!(f(half, "throughput_qps") > 18.0, "{half}");
    let s = summary(&run);
    assert_eq!(s["saturation_qps"], 83.0, "{s}");
    let why = s["reasons"]["saturation_qps"].as_str().unwrap();
    assert!(
        why.contains("throughput") && why.contains("offered"),
        "{why}"
    );
    assert_eq!(s["optimal_qps"], 20.0, "{s}");
}

#[test]
fn qps_auto_brackets_the_capacity_of_a_queueing_endpoint_without_the_ttft_rule() {
    let _g = serial();
    let mock = queueing_mock();
    let tmp = TempDir::new("queueing-auto");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "auto",
        "--auto-start",
        "10",
        "--auto-max-qps",
        "160",
        "--duration",
        "3",
        "--arrival",
        "constant",
        "--saturation-ttft-growth",
        "1000",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    let bracket = s["auto_bracket"]
        .as_array()
        .unwrap_or_else(|| panic!("{s}"));
    let (lo, hi) = (bracket[0].as_f64().unwrap(), bracket[1].as_f64().unwrap());
    // The throughput rule fires once completions fall 10% short of the offered load, so the
    // bracket sits at or a little above the capacity: it must hold it within 20%.
    assert!(
        lo <= 1.2 * CAPACITY && hi >= 0.8 * CAPACITY,
        "bracket [{lo}, {hi}] vs capacity {CAPACITY:.1}: {}",
        run.stderr
    );
    for l in run.levels() {
        assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
    }
}

#[test]
fn a_client_out_of_file_descriptors_keeps_every_result() {
    let _g = serial();
    // Each request holds its connection ~1 s: 1000 QPS for 1 s needs ~1000 at once, far more
    // than an open-file limit of 256 (set for the client process only).
    let mock = Mock::start(&[
        "--ttft-ms",
        "1000",
        "--itl-ms",
        "10",
        "--output-tokens",
        "2",
    ]);
    let tmp = TempDir::new("nofile-run");
    let ds = tmp.file("d.json", DATASET);
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(base_args(&mock.url, ds.to_str().unwrap()))
        .args([
            "--qps",
            "1000",
            "--duration",
            "1",
            "--cores",
            "1",
            "--save-requests",
            "--results-dir",
        ])
        .arg(tmp.path());
    limit_open_files(&mut cmd, 256);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0 || code == 3, "exit {code}: {stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("cannot write"),
        "{stderr}"
    );
    let dir = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_dir())
        .expect("a results folder");
    let read = |name: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}\n{stderr}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let _ = read("metadata.json");
    let _ = read("summary.json");
    let l = read("benchmark_qps_results.json")[0].clone();
    assert_eq!(f(&l, "total_requests"), 1000.0, "{l}");
    assert_eq!(
        f(&l, "successful_requests") + f(&l, "failed_requests"),
        1000.0,
        "every request counted: {l}"
    );
    let out_of_fds = l["errors"]["Client: out of file descriptors"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(out_of_fds > 0.0, "{l}");
    assert!(f(&l, "successful_requests") > 0.0, "{l}");
    assert_eq!(l["client_limited"], true, "{l}");
    let reasons = l["client_limited_reasons"].to_string();
    assert!(
        reasons.contains("Client: out of file descriptors"),
        "{reasons}"
    );
    let records = std::fs::read_to_string(dir.join("requests.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 1000);
}
