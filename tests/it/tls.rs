//! HTTPS against the built-in endpoint over loopback: private CAs, --insecure, readable handshake
//! failures counted per level, IPv6; plus --header, secret masking and warm-up connections.

use std::path::Path;

use crate::common::*;
use qpsbench::http::tls::write_self_signed;

/// The built-in endpoint serving TLS with a fresh self-signed CA (written under `tmp`); returns
/// it and the CA file clients should trust.
fn tls_mock(tmp: &TempDir, host: &str, args: &[&str]) -> (Mock, std::path::PathBuf) {
    let certs = tmp.path().join("certs");
    let dir = certs.to_str().unwrap().to_string();
    let mut args = args.to_vec();
    args.extend(["--tls-self-signed", &dir]);
    (Mock::start_on(host, &args), certs.join("ca.pem"))
}

fn run_https(url: &str, extra: &[&str], tmp: &TempDir) -> Run {
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(url, ds.to_str().unwrap());
    args.extend(["--qps", "10", "--duration", "1"]);
    args.extend(extra);
    qpsbench(&args, tmp.path())
}

fn only_error(l: &serde_json::Value) -> (String, u64) {
    let errors = l["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{l}");
    let (k, v) = errors.iter().next().unwrap();
    (k.clone(), v.as_u64().unwrap())
}

#[test]
fn private_ca_insecure_and_unknown_issuer() {
    let _g = serial();
    let tmp = TempDir::new("tls");
    let (mock, ca) = tls_mock(
        &tmp,
        "127.0.0.1",
        &["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "8"],
    );
    assert!(mock.url.starts_with("https://127.0.0.1:"), "{}", mock.url);

    let ok = run_https(&mock.url, &["--ca-cert", ca.to_str().unwrap()], &tmp);
    assert_eq!(ok.code(), 0, "{}", ok.stderr);
    let l = &ok.levels()[0];
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(l, "output_tokens_total"), 80.0);
    let conns = &l["connections"];
    assert!(conns["warmed_up"].as_u64().unwrap() >= 1, "{l}");
    assert!(
        conns["warmup_tls_handshake_us"]["p50"].as_f64().unwrap() > 0.0,
        "{l}"
    );
    assert_eq!(ok.metadata()["tls"]["insecure"], false);

    // Synthetic prompts are written as several parts (head, shared text, tail): over TLS each
    // part is encrypted in order, and the server reads the prompt whole.
    let ca_arg = ca.to_str().unwrap();
    let parts = [
        "--ca-cert",
        ca_arg,
        "--dataset-name",
        "random",
        "--random-input-len",
        "3000",
        "--random-output-len",
        "12",
    ];
    let synthetic = run_https(&mock.url, &parts, &tmp);
    assert_eq!(synthetic.code(), 0, "{}", synthetic.stderr);
    let l = &synthetic.levels()[0];
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(l, "output_tokens_total"), 120.0, "{l}");
    // The endpoint counts the prompt's 3,000 words, plus 4 for the chat message.
    assert_eq!(l["prompt_tokens"]["p50"], 3004.0, "{l}");

    // An untrusted certificate stops the run at the endpoint check, with what to do.
    let refused = run_https(&mock.url, &[], &tmp);
    assert_eq!(refused.code(), 4, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("TLS: unknown issuer"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("--ca-cert"), "{}", refused.stderr);
    assert!(refused.dir.is_none());
    // Without the check, a TLS failure is a per-level error category.
    let untrusted = run_https(&mock.url, &["--no-probe"], &tmp);
    assert_eq!(untrusted.code(), 4, "no success: {}", untrusted.stderr);
    assert_eq!(
        only_error(&untrusted.levels()[0]),
        ("TLS: unknown issuer".into(), 10)
    );
    assert!(untrusted
        .stdout
        .contains("TLS: unknown issuer: 10 occurrences"));

    let insecure = run_https(&mock.url, &["--insecure"], &tmp);
    assert_eq!(insecure.code(), 0);
    assert_eq!(f(&insecure.levels()[0], "success_rate"), 100.0);
    assert_eq!(
        insecure.stderr.matches("--insecure").count(),
        1,
        "one warning per run: {}",
        insecure.stderr
    );
}

fn mock_with_cert(
    dir: &Path,
    names: &[&str],
    not_after: (i32, u8, u8),
) -> (Mock, std::path::PathBuf) {
    let c = write_self_signed(dir, names, not_after).unwrap();
    let mock = Mock::start(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "1",
        "--output-tokens",
        "4",
        "--tls-cert",
        c.server_cert.to_str().unwrap(),
        "--tls-key",
        c.server_key.to_str().unwrap(),
    ]);
    (mock, c.ca_cert)
}

#[test]
fn name_mismatch_and_expired_certificates_are_categorised() {
    let _g = serial();
    let tmp = TempDir::new("tls-bad");
    let (mock, ca) = mock_with_cert(&tmp.path().join("other"), &["other.example"], (2099, 1, 1));
    let ca_arg = ca.to_str().unwrap();
    let run = run_https(&mock.url, &["--ca-cert", ca_arg], &tmp);
    assert_eq!(run.code(), 4, "the endpoint check stops it: {}", run.stderr);
    assert!(run.stderr.contains("TLS: name mismatch"), "{}", run.stderr);
    let run = run_https(&mock.url, &["--ca-cert", ca_arg, "--no-probe"], &tmp);
    assert_eq!(run.code(), 4, "{}", run.stderr);
    assert_eq!(
        only_error(&run.levels()[0]),
        ("TLS: name mismatch".into(), 10)
    );
    drop(mock);
    let (mock, ca) = mock_with_cert(&tmp.path().join("old"), &["127.0.0.1"], (2001, 1, 1));
    let run = run_https(
        &mock.url,
        &["--ca-cert", ca.to_str().unwrap(), "--no-probe"],
        &tmp,
    );
    assert_eq!(
        only_error(&run.levels()[0]),
        ("TLS: expired certificate".into(), 10)
    );
}

#[test]
fn https_over_ipv6_loopback() {
    let _g = serial();
    let tmp = TempDir::new("tls6");
    let (mock, ca) = tls_mock(
        &tmp,
        "::1",
        &["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"],
    );
    assert!(mock.url.starts_with("https://[::1]:"), "{}", mock.url);
    let run = run_https(&mock.url, &["--ca-cert", ca.to_str().unwrap()], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(f(&run.levels()[0], "success_rate"), 100.0);
}

#[test]
fn bad_tls_and_header_input_exits_2_without_leaking() {
    let tmp = TempDir::new("tls-input");
    let pem = tmp.file("junk.pem", "not a certificate");
    let url = "https://127.0.0.1:9/v1/chat/completions";
    let run = run_https(url, &["--ca-cert", pem.to_str().unwrap()], &tmp);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr.contains("--ca-cert") && run.stderr.contains("junk.pem"),
        "{}",
        run.stderr
    );
    let run = run_https(url, &["--header", "X-Api-Key: s3cr3t\rX-Evil: 1"], &tmp);
    assert_eq!(run.code(), 2);
    assert!(!run.stderr.contains("s3cr3t"), "{}", run.stderr);
    let run = run_https(url, &["--header", "Host: elsewhere"], &tmp);
    assert_eq!(run.code(), 2);
    assert!(run.stderr.contains("set by qpsbench"), "{}", run.stderr);
}

#[test]
fn headers_reach_the_server_and_secrets_are_masked_everywhere() {
    let _g = serial();
    use std::io::{Read, Write};
    // A one-shot server that records the request head and answers one short stream.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions?api-key=q5ecret",
        l.local_addr().unwrap()
    );
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut b).unwrap();
            head.extend_from_slice(&b[..n]);
        }
        // The whole body too: closing with unread bytes would reset the connection, and the
        // answer with it.
        let text = String::from_utf8_lossy(&head).into_owned();
        let at = text.find("\r\n\r\n").unwrap() + 4;
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut have = head.len() - at;
        while have < length {
            have += s.read(&mut b).unwrap();
        }
        let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sse}",
            sse.len()
        );
        String::from_utf8_lossy(&head).into_owned()
    });
    let tmp = TempDir::new("headers");
    let ds = tmp.file("d.json", DATASET);
    let args = [
        "--endpoint",
        &url,
        "--api-key",
        "sk-main-k3y",
        "--model",
        "m",
        "--dataset",
        ds.to_str().unwrap(),
        "--qps",
        "1",
        "--duration",
        "1",
        "--warmup-connections",
        "0",
        "--header",
        "X-Tenant: acme",
        "--header",
        "X-Api-Key: h3ader-secret",
        // The server answers one request: the level's, not the endpoint check's.
        "--no-probe",
    ];
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let head = server.join().unwrap();
    assert!(head.contains("\r\nX-Tenant: acme\r\n"), "{head}");
    assert!(head.contains("\r\nX-Api-Key: h3ader-secret\r\n"), "{head}");
    assert!(
        head.contains("\r\nAuthorization: Bearer sk-main-k3y\r\n"),
        "{head}"
    );
    let meta = run.metadata();
    assert_eq!(
        meta["headers"],
        serde_json::json!(["X-Tenant: acme", "X-Api-Key: ****"])
    );
    assert!(meta["endpoint"]
        .as_str()
        .unwrap()
        .ends_with("?api-key=****"));
    for entry in std::fs::read_dir(run.dir.as_ref().unwrap()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for secret in ["h3ader-secret", "sk-main-k3y", "q5ecret"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
    for secret in ["h3ader-secret", "sk-main-k3y", "q5ecret"] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "{secret} leaked to the console"
        );
    }
}

#[test]
fn warm_up_opens_connections_before_the_window() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "50", "--itl-ms", "5", "--output-tokens", "10"]);
    let tmp = TempDir::new("warm");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "20",
        "--duration",
        "2",
        "--arrival",
        "constant",
        "--cores",
        "1",
    ]);
    let run = qpsbench(&args, tmp.path());
    let c = &run.levels()[0]["connections"];
    // 20 QPS × 1 s expected latency × 1.25 = 25 connections, all opened before the window.
    assert_eq!(c["warmed_up"], 25, "{c}");
    assert_eq!(c["opened_in_window"], 0, "{c}");
    assert!(c["warmup_connect_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(c["tls_handshake_us"]["p50"].is_null(), "no TLS on http://");
    args.extend(["--warmup-connections", "0"]);
    let run = qpsbench(&args, tmp.path());
    let c = &run.levels()[0]["connections"];
    assert_eq!(c["warmed_up"], 0);
    assert!(c["opened_in_window"].as_u64().unwrap() >= 1);
    assert!(c["connect_us"]["p50"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_host_name_is_resolved_and_verified_by_name() {
    let _g = serial();
    // TLS verifies the DNS name (a SAN of the certificate) and sends it as SNI.
    let tmp = TempDir::new("tls-name");
    let (mock, ca) = tls_mock(
        &tmp,
        "127.0.0.1",
        &["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"],
    );
    let port = mock
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let url = format!("https://localhost:{port}/v1/chat/completions");
    let run = run_https(&url, &["--ca-cert", ca.to_str().unwrap()], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert_eq!(
        f(&run.levels()[0], "success_rate"),
        100.0,
        "{}",
        run.levels()[0]
    );
}

#[test]
fn addresses_are_tried_in_order_until_one_accepts() {
    use qpsbench::http::conn::{Conn, Target};
    let mock = Mock::start(&["--ttft-ms", "1", "--output-tokens", "1"]);
    let good: std::net::SocketAddr = mock.authority().parse().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The port is free again once the listener is dropped: connecting to it is refused.
    let target = Target {
        addrs: vec![closed, good].into(),
        tls: None,
    };
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    let ok = rt.block_on(async move { Conn::connect(&target).await.is_ok() });
    assert!(ok, "the second address accepts");
    let only_closed = Target {
        addrs: vec![closed].into(),
        tls: None,
    };
    let err = rt.block_on(async move { Conn::connect(&only_closed).await.err() });
    assert!(
        matches!(err, Some(qpsbench::http::conn::ConnectError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    );
}

#[test]
fn connections_opened_during_the_level_lose_no_request() {
    let _g = serial();
    // Without warm-up every connection is opened mid-level: the first request often reaches the
    // endpoint in the same read as the client's last handshake message, and must not be lost.
    let tmp = TempDir::new("tls-early");
    let (mock, ca) = tls_mock(
        &tmp,
        "127.0.0.1",
        &["--ttft-ms", "10", "--itl-ms", "1", "--output-tokens", "8"],
    );
    for _ in 0..3 {
        let ds = tmp.file("d.json", DATASET);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend([
            "--qps",
            "20",
            "--duration",
            "2",
            "--cores",
            "1",
            "--arrival",
            "constant",
            "--warmup-connections",
            "0",
            "--timeout",
            "10",
        ]);
        args.extend(["--ca-cert", ca.to_str().unwrap()]);
        let run = qpsbench(&args, tmp.path());
        let l = &run.levels()[0];
        assert_eq!(f(l, "success_rate"), 100.0, "{l}");
        assert!(f(&l["connections"], "opened_in_window") >= 1.0);
    }
}

#[test]
fn a_long_prompt_is_sent_whole_over_tls() {
    let _g = serial();
    // Far more than rustls buffers at once (64 KiB): the request is encrypted in pieces.
    let tmp = TempDir::new("tls-big");
    let (mock, ca) = tls_mock(
        &tmp,
        "127.0.0.1",
        &["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"],
    );
    let prompt = "lorem ipsum ".repeat(25_000);
    let ds = tmp.file(
        "big.json",
        &serde_json::json!([{"prompt_content": prompt, "cut_chat_history": [{"role": "user", "content": "Summarise"}]}]).to_string(),
    );
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "4",
        "--duration",
        "1",
        "--ca-cert",
        ca.to_str().unwrap(),
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(f(l, "success_rate"), 100.0, "{l}");
    // The endpoint counts words: it saw all 50,000 of the prompt's.
    assert!(f(l, "prompt_tokens_total") > 4.0 * 50_000.0, "{l}");
}
