//! The built-in endpoint speaks HTTP/1.1 like a real OpenAI-compatible server: keep-alive,
//! OpenAI-style error bodies for a wrong path (404), method (405) or body (400), non-streaming
//! answers, usage only when asked for, the completions API, `/v1/models` and `/health`, vLLM's
//! `ignore_eos` and `min_tokens`, and a prefill time that grows with the prompt.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// Sends one raw request on `s` and reads one response (Content-Length or chunked).
fn exchange(s: &mut TcpStream, req: &str) -> (u16, String, String) {
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let n = s.read(&mut tmp).unwrap();
        assert!(
            n > 0,
            "connection closed early; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let status: u16 = head[9..12].parse().unwrap();
        let lower = head.to_ascii_lowercase();
        if let Some(len) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
        {
            if body.len() >= len.trim().parse::<usize>().unwrap() {
                return (status, head.to_string(), body.to_string());
            }
        } else if body.ends_with("0\r\n\r\n") {
            return (status, head.to_string(), body.to_string());
        }
    }
}

/// A connection to `authority` whose reads give up after `secs` seconds.
fn connect(authority: &str, secs: u64) -> TcpStream {
    let s = TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(secs))).unwrap();
    s
}

fn post(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[test]
fn errors_are_openai_shaped_and_keep_the_connection() {
    let mock = Mock::start(&["--ttft-ms", "1", "--itl-ms", "1", "--output-tokens", "3"]);
    let addr = mock.authority();
    let mut s = connect(&addr, 10);
    let ok_body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":10,"stream":true,"stream_options":{"include_usage":true}}"#;
    for (req, code, needle) in [
        (post("/v1/rerank", ok_body), 404, "Not found"),
        (
            "GET /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            405,
            "Method not allowed",
        ),
        (
            post("/v1/chat/completions", "{not json"),
            400,
            "Invalid JSON",
        ),
        (
            post("/v1/chat/completions", r#"{"model":"m"}"#),
            400,
            "messages",
        ),
    ] {
        let (status, head, body) = exchange(&mut s, &req);
        assert_eq!(status, code, "{req}");
        assert!(head
            .to_ascii_lowercase()
            .contains("content-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains(needle),
            "{body}"
        );
        assert_eq!(v["error"]["code"], code);
    }
    // The same connection still serves a streamed completion, with usage as asked.
    let (status, head, body) = exchange(&mut s, &post("/v1/chat/completions", ok_body));
    assert_eq!(status, 200);
    assert!(head.contains("text/event-stream") && head.contains("Transfer-Encoding: chunked"));
    assert!(body.contains("\"completion_tokens\":3") && body.contains("data: [DONE]"));
    assert!(body.contains("\"finish_reason\":\"stop\""));
    // Non-streaming: one JSON completion.
    let (status, _, body) = exchange(
        &mut s,
        &post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[],"max_tokens":2}"#,
        ),
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // No usage chunk unless asked for.
    let (_, _, body) = exchange(
        &mut s,
        &post(
            "/v1/chat/completions",
            r#"{"model":"m","messages":[],"stream":true}"#,
        ),
    );
    assert!(!body.contains("usage") && body.contains("[DONE]"));
}

#[test]
fn bad_serve_mock_flags_exit_2() {
    let out = std::process::Command::new(BIN)
        .args(["serve-mock", "--ttft-ms", "-5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ttft-ms"));
}

/// The send stamps (`qpsbench_sent_ns`) of one streamed answer, in order.
fn stamps(body: &str) -> Vec<u64> {
    body.match_indices("\"qpsbench_sent_ns\":")
        .map(|(i, k)| {
            let rest = &body[i + k.len()..];
            let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
            rest[..end].parse().unwrap()
        })
        .collect()
}

/// CLOCK_MONOTONIC in ns: the clock of the endpoint's `qpsbench_sent_ns` stamps.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec passed.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn chunks_follow_absolute_deadlines_and_never_leave_early() {
    // TTFT 2 ms, then 0.25 ms per token: chunk k (from 0) is due at arrival + 2 ms + k × 0.25
    // ms, on absolute deadlines, and must never leave before. The request is written after
    // `t_req`, so it arrived after it: each stamp must be at least t_req + 2 ms + k × 0.25 ms.
    // Both timers: a timerfd per sleeping stream, and the spin loop's own check with
    // --busy-poll. (How close to its deadline a chunk leaves is the machine's business: the
    // selftest measures it.)
    for extra in [None, Some("--busy-poll")] {
        let mut args = vec![
            "--ttft-ms",
            "2",
            "--itl-ms",
            "0.25",
            "--output-tokens",
            "40",
            "--stamp-chunks",
        ];
        args.extend(extra);
        let mock = Mock::start(&args);
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":40,"stream":true}"#;
        let mut s = connect(&mock.authority(), 10);
        let t_req = monotonic_ns();
        let (status, _, text) = exchange(&mut s, &post("/v1/chat/completions", body));
        assert_eq!(status, 200);
        let st = stamps(&text);
        assert_eq!(st.len(), 40, "{extra:?}: one stamp per content chunk");
        for (k, &stamp) in st.iter().enumerate() {
            let due = t_req + 2_000_000 + k as u64 * 250_000;
            assert!(
                stamp >= due,
                "{extra:?}: chunk {k} left {} µs before its deadline",
                (due - stamp) / 1000
            );
        }
        // The endpoint counted its own lateness for each of them (`/metrics`).
        let (_, _, metrics) = exchange(&mut s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            metrics.contains("qpsbench_mock_chunk_lateness_seconds_count 40\n"),
            "{metrics}"
        );
        assert!(metrics.contains("qpsbench_mock_chunk_lateness_seconds{quantile=\"0.99\"}"));
    }
}

/// `serve-mock` says how late its chunks left when it exits.
#[test]
fn serve_mock_reports_its_chunk_lateness_on_exit() {
    let mut child = std::process::Command::new(BIN)
        .args([
            "serve-mock",
            "--port",
            "0",
            "--exit-after",
            "2",
            "--ttft-ms",
            "1",
        ])
        .args(["--itl-ms", "1", "--output-tokens", "5"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line.trim().rsplit(' ').next().unwrap();
    let authority = url.split('/').nth(2).unwrap();
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
    let (status, _, _) = exchange(
        &mut connect(authority, 10),
        &post("/v1/chat/completions", body),
    );
    assert_eq!(status, 200);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serve-mock: 5 content chunks; lateness (send − deadline) p50 "),
        "{err}"
    );
}

/// The text an SSE body's chunks carry, and the number of chunks that carried some.
fn streamed_text(body: &str, field: &str) -> (String, usize) {
    let mut text = String::new();
    let mut chunks = 0;
    for line in body.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let piece = if field == "text" {
            v["choices"][0]["text"].as_str()
        } else {
            v["choices"][0]["delta"]["content"].as_str()
        };
        if let Some(p) = piece.filter(|p| !p.is_empty()) {
            text.push_str(p);
            chunks += 1;
        }
    }
    (text, chunks)
}

#[test]
fn completions_models_health_and_exact_lengths() {
    let mock = Mock::start(&[
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
        "--output-tokens",
        "8",
        "--served-model-name",
        "served-x",
    ]);
    let mut s = connect(&mock.authority(), 10);
    // Other clients check these before they start.
    let (status, _, body) = exchange(&mut s, "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "served-x");
    let (status, _, _) = exchange(&mut s, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    // The completions API streams `text`, with usage counting the prompt's words.
    let body = r#"{"model":"m","prompt":"one two three four five","max_tokens":5,"stream":true,"stream_options":{"include_usage":true}}"#;
    let (status, _, text) = exchange(&mut s, &post("/v1/completions", body));
    assert_eq!(status, 200);
    assert!(text.contains("\"object\":\"text_completion\""), "{text}");
    assert_eq!(streamed_text(&text, "text").1, 5, "{text}");
    assert!(
        text.contains("\"prompt_tokens\":5,\"completion_tokens\":5"),
        "{text}"
    );
    assert!(text.contains("\"finish_reason\":\"length\"") && text.contains("[DONE]"));
    let body = r#"{"model":"m","prompt":"hi","max_tokens":3}"#;
    let (_, _, answer) = exchange(&mut s, &post("/v1/completions", body));
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["choices"][0]["text"].as_str().unwrap().len() > 3,
        "{answer}"
    );
    // ignore_eos runs to max_tokens past --output-tokens (8); min_tokens raises the length.
    for (extra, want) in [
        (r#","ignore_eos":true"#, 30),
        (r#","min_tokens":12"#, 12),
        ("", 8),
    ] {
        let body = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"max_tokens":30,"stream":true{extra}}}"#
        );
        let (_, _, text) = exchange(&mut s, &post("/v1/chat/completions", &body));
        assert_eq!(streamed_text(&text, "content").1, want, "{extra}: {text}");
    }
}

#[test]
fn prefill_time_grows_with_the_prompt() {
    // 1000 ms per 1000 prompt tokens: a 500-word prompt waits at least 0.5 s for its first
    // token (a lower bound only: a loaded machine may be later, never earlier).
    let mock = Mock::start(&[
        "--ttft-ms",
        "1",
        "--itl-ms",
        "1",
        "--output-tokens",
        "2",
        "--prefill-ms-per-1k-tokens",
        "1000",
    ]);
    let mut s = connect(&mock.authority(), 20);
    let long = "word ".repeat(500);
    let body = format!(r#"{{"model":"m","prompt":"{long}","stream":true}}"#);
    let started = std::time::Instant::now();
    let (status, _, _) = exchange(&mut s, &post("/v1/completions", &body));
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

/// `--max-num-seqs`: requests past the batch wait in a FIFO queue, and `/metrics` shows them as
/// waiting (Prometheus text, vLLM's names); the token counters follow what was served.
#[test]
fn a_full_batch_queues_requests_and_metrics_show_it() {
    let mock = Mock::start(&[
        "--ttft-ms",
        "1000",
        "--itl-ms",
        "1",
        "--output-tokens",
        "3",
        "--max-num-seqs",
        "1",
    ]);
    let body =
        r#"{"model":"m","messages":[{"role":"user","content":"one two three"}],"stream":true}"#;
    // Two requests at once on two connections: one generates, the other waits.
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (url, body) = (mock.authority(), body.to_string());
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(url).unwrap();
                let (status, _, _) = exchange(&mut s, &post("/v1/chat/completions", &body));
                (status, started.elapsed())
            })
        })
        .collect();
    // Both have arrived, the first is still before its first token.
    std::thread::sleep(Duration::from_millis(400));
    let mut s = TcpStream::connect(mock.authority()).unwrap();
    let (status, head, text) = exchange(&mut s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    assert!(
        text.contains("vllm:num_requests_running{model_name=\"qpsbench-mock\"} 1.0\n"),
        "{text}"
    );
    assert!(
        text.contains("vllm:num_requests_waiting{model_name=\"qpsbench-mock\"} 1.0\n"),
        "{text}"
    );
    let mut times: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    times.sort();
    assert!(times.iter().all(|(status, _)| *status == 200));
    // The second waited for the first: its answer ended after two TTFTs.
    assert!(times[1].1 >= Duration::from_millis(2000), "{times:?}");
    let (_, _, text) = exchange(&mut s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        text.contains("vllm:num_requests_waiting{model_name=\"qpsbench-mock\"} 0.0\n"),
        "{text}"
    );
    assert!(
        text.contains("vllm:generation_tokens_total{model_name=\"qpsbench-mock\"} 6.0\n"),
        "{text}"
    );
    assert!(
        text.contains("vllm:prompt_tokens_total{model_name=\"qpsbench-mock\"} 14.0\n"),
        "{text}"
    );
}
