//! The server's own gauges (`--server-metrics`) against the built-in endpoint's `/metrics`: a
//! queue that builds above capacity is seen and cited by the analysis, none builds below it,
//! and a `/metrics` that fails or hangs never disturbs the run.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::common::*;

/// Four streams generate at once, each for ~0.2 s: capacity ~18 QPS.
const QUEUED: &[&str] = &[
    "--ttft-ms",
    "20",
    "--itl-ms",
    "10",
    "--output-tokens",
    "20",
    "--max-num-seqs",
    "4",
];

fn metrics_url(mock: &Mock) -> String {
    format!("http://{}/metrics", mock.authority())
}

#[test]
fn a_queue_that_builds_above_capacity_is_seen_and_cited() {
    let _g = serial();
    let mock = Mock::start(QUEUED);
    let tmp = TempDir::new("server-metrics");
    let ds = tmp.file("d.json", DATASET);
    let url = metrics_url(&mock);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    // Below a quarter of capacity, then above it.
    args.extend([
        "--qps",
        "4,40",
        "--duration",
        "4",
        "--arrival",
        "constant",
        "--continuous-usage",
        "off",
        "--server-metrics",
        &url,
    ]);
    let run = qpsbench(&args, tmp.path());
    assert!(matches!(run.code(), 0 | 3), "{}", run.stderr);
    assert_eq!(run.metadata()["server_metrics"]["url"], url.as_str());
    let levels = run.levels();
    let waiting = |l: &serde_json::Value| l["server_metrics"]["vllm:num_requests_waiting"].clone();
    assert_eq!(waiting(&levels[0])["max"], 0.0, "{}", levels[0]);
    assert!(
        waiting(&levels[1])["max"].as_f64().unwrap() > 0.0,
        "{}",
        levels[1]
    );
    assert_eq!(
        levels[1]["server_metrics"]["vllm:num_requests_running"]["max"],
        4.0
    );
    assert_eq!(levels[1]["server_metrics_errors"], 0);
    // Counters are rates: the endpoint generated ~18 QPS × 20 tokens per second.
    let rate = levels[1]["server_metrics"]["vllm:generation_tokens_total"]["mean"]
        .as_f64()
        .unwrap();
    assert!((100.0..1000.0).contains(&rate), "{rate}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.dir.as_ref().unwrap().join("summary.json")).unwrap(),
    )
    .unwrap();
    let text = summary.to_string();
    assert!(
        text.contains("waiting requests (vllm:num_requests_waiting) grew from"),
        "{text}"
    );
    // The timeline carries the samples.
    let timeline =
        std::fs::read_to_string(run.dir.as_ref().unwrap().join("timeline.jsonl")).unwrap();
    assert!(
        timeline.contains("\"vllm:num_requests_waiting\""),
        "{timeline}"
    );
}

/// A `/metrics` server that answers HTTP 500, or accepts and never answers.
fn bad_metrics(hang: bool) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/metrics", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().take(200) {
            let Ok(mut s) = s else { continue };
            if hang {
                held.push(s);
                continue;
            }
            let mut buf = [0u8; 1024];
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\noops");
        }
    });
    url
}

#[test]
fn a_failing_or_hanging_metrics_endpoint_never_disturbs_the_run() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("bad-metrics");
    let ds = tmp.file("d.json", DATASET);
    for hang in [false, true] {
        let url = bad_metrics(hang);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "10",
            "--duration",
            "3",
            "--continuous-usage",
            "off",
            "--server-metrics",
            &url,
        ]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(l["success_rate"], 100.0, "{l}");
        assert!(
            l["server_metrics_errors"].as_u64().unwrap() >= 1,
            "hang {hang}: {l}"
        );
        assert!(
            run.stderr.contains("warning: --server-metrics"),
            "{}",
            run.stderr
        );
    }
    // A bad URL is refused before the run.
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--server-metrics", "https://127.0.0.1:1/metrics"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("--server-metrics"), "{}", run.stderr);
}
