//! End-to-end client cost: runs the `qpsbench` binary against `qpsbench serve-mock` over
//! loopback and prints, per configuration, the achieved rate, the client's send lag and its CPU
//! time per request and per streamed token (from each core thread's own CPU clock, so the
//! endpoint's CPU is not counted).
//!
//! Run: `cargo bench --bench e2e`. Environment overrides: `E2E_QPS` (default 1000),
//! `E2E_DURATION` (default 5), `E2E_TOKENS` (default 64), `E2E_SCHEMES` (default `http,https`:
//! the endpoint serves TLS with a fresh self-signed CA), `E2E_CHUNKS` (tokens per chunk, default
//! `1,4,16`), `E2E_PROGRESS` (`--progress`, default `never`; `always` redraws the live line
//! every second, to compare its cost), `E2E_CORES` (client cores, default 1;
//! they are the first cores), `E2E_MOCK_THREADS` (default 1). The endpoint is pinned to the last
//! core with `taskset` when it is installed, so it does not share the client's core.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_qpsbench");

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let qps = env("E2E_QPS", "1000");
    let duration = env("E2E_DURATION", "5");
    let tokens = env("E2E_TOKENS", "64");
    let cores = env("E2E_CORES", "1");
    let mock_threads = env("E2E_MOCK_THREADS", "1");
    let schemes = env("E2E_SCHEMES", "http,https");
    let chunks = env("E2E_CHUNKS", "1,4,16");
    let progress = env("E2E_PROGRESS", "never");
    for (scheme, tokens_per_chunk) in schemes
        .split(',')
        .flat_map(|s| chunks.split(',').map(move |c| (s, c)))
    {
        let certs = std::env::temp_dir().join(format!("qpsbench-e2e-certs-{}", std::process::id()));
        let tls_args: Vec<String> = if scheme == "https" {
            vec!["--tls-self-signed".into(), certs.display().to_string()]
        } else {
            vec![]
        };
        let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
        let pin = Command::new("taskset").arg("-V").output().is_ok() && last_cpu > 0;
        let mut mock = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", &last_cpu.to_string(), BIN]);
            c
        } else {
            Command::new(BIN)
        };
        let mut mock = mock
            .args([
                "serve-mock",
                "--port",
                "0",
                "--exit-after",
                "120",
                "--ttft-ms",
                "10",
                "--itl-ms",
                "1",
                "--output-tokens",
                &tokens,
                "--tokens-per-chunk",
                tokens_per_chunk,
                "--threads",
                &mock_threads,
            ])
            .args(&tls_args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start serve-mock");
        let mut line = String::new();
        BufReader::new(mock.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        let results = std::env::temp_dir().join(format!("qpsbench-e2e-{}", std::process::id()));
        let dataset = results.join("d.json");
        std::fs::create_dir_all(&results).unwrap();
        std::fs::write(
            &dataset,
            r#"[{"prompt_content":"You are a helpful assistant.","cut_chat_history":[{"role":"user","content":"Hello"}]}]"#,
        )
        .unwrap();
        let out = Command::new(BIN)
            .args([
                "--endpoint",
                &url,
                "--api-key",
                "bench",
                "--model",
                "m",
                "--dataset",
            ])
            .arg(&dataset)
            .args([
                "--qps",
                &qps,
                "--duration",
                &duration,
                "--cores",
                &cores,
                "--arrival",
                "poisson",
                "--progress",
                &progress,
                "--results-dir",
            ])
            .arg(&results)
            .args(if scheme == "https" {
                vec![
                    "--ca-cert".to_string(),
                    certs.join("ca.pem").display().to_string(),
                ]
            } else {
                vec![]
            })
            .output()
            .expect("run qpsbench");
        let _ = mock.kill();
        let _ = mock.wait();
        // Exit 3: every level was client-limited. The figures are still the client's cost, which
        // is what this bench measures; the line says so.
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = std::fs::read_dir(&results)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.is_dir())
            .expect("results folder");
        let levels: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run.join("benchmark_qps_results.json")).unwrap(),
        )
        .unwrap();
        let l = &levels[0];
        println!(
            "e2e {scheme} {qps} QPS × {duration} s, progress {progress}, {tokens} tokens/stream, {tokens_per_chunk} token(s)/chunk, {cores} client core(s), endpoint {}: \
             actual {:.1} QPS, success {:.1}%, send lag p50 {:.1} µs p99 {:.1} µs max {:.1} µs, \
             client CPU {:.1} µs/request {:.2} µs/token (pacer spin {:.3} s of {:.3} s), TTFT p50 {:.1} ms, \
             connections warmed {} (TLS handshake p50 {:.0} µs p99 {:.0} µs), opened in window {}, errors {}{}",
            if pin { format!("pinned to cpu {last_cpu}") } else { "unpinned".to_string() },
            l["actual_qps"].as_f64().unwrap(),
            l["success_rate"].as_f64().unwrap(),
            l["send_lag_us"]["p50"].as_f64().unwrap(),
            l["send_lag_us"]["p99"].as_f64().unwrap(),
            l["send_lag_us"]["max"].as_f64().unwrap(),
            l["client_cpu_us_per_request"].as_f64().unwrap_or(f64::NAN),
            l["client_cpu_us_per_token"].as_f64().unwrap_or(f64::NAN),
            l["pacer_spin_s"].as_f64().unwrap(),
            l["client_cpu_s"].as_f64().unwrap(),
            l["ttft"]["p50"].as_f64().unwrap_or(f64::NAN) * 1000.0,
            l["connections"]["warmed_up"],
            l["connections"]["warmup_tls_handshake_us"]["p50"].as_f64().unwrap_or(f64::NAN),
            l["connections"]["warmup_tls_handshake_us"]["p99"].as_f64().unwrap_or(f64::NAN),
            l["connections"]["opened_in_window"],
            l["errors"],
            if l["client_limited"] == true {
                format!(", CLIENT-LIMITED: {}", l["client_limited_reasons"])
            } else {
                String::new()
            },
        );
        let _ = std::fs::remove_dir_all(&certs);
        let _ = std::fs::remove_dir_all(&results);
    }
}
