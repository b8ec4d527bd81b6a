//! Through a real reverse proxy: nginx (Debian's `nginx-light`) terminates TLS with a test CA and
//! proxies HTTP/1.1 keep-alive to `serve-mock`. With `proxy_buffering off` the stream arrives as
//! sent (same token counts as a direct run, TTFT near the endpoint's); with `proxy_buffering on`
//! qpsbench warns that the stream looks buffered.
//!
//! nginx is started by the test with a config in a temporary folder, on loopback ports only, and
//! stopped afterwards. Without nginx installed the tests say so and pass, unless
//! `QPSBENCH_REQUIRE_NGINX=1` (set by `.ci/run`, which installs it), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use qpsbench::http::tls::write_self_signed;

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn require_nginx() -> Option<PathBuf> {
    match nginx_binary() {
        Some(p) => Some(p),
        None if std::env::var("QPSBENCH_REQUIRE_NGINX").as_deref() == Ok("1") => {
            panic!("nginx is required (QPSBENCH_REQUIRE_NGINX=1) but not installed: apt-get install nginx-light")
        }
        None => {
            eprintln!(
                "SKIPPED: nginx is not installed (apt-get install nginx-light to run this test)"
            );
            None
        }
    }
}

/// nginx in the foreground with its own prefix folder; stopped (SIGTERM to the master, which
/// stops its workers) on drop.
struct Nginx {
    child: Child,
    pub url: String,
}

impl Nginx {
    fn start(
        bin: &Path,
        dir: &Path,
        upstream: &str,
        buffering: bool,
        cert: &Path,
        key: &Path,
        server_extra: &str,
    ) -> Self {
        let port = free_port();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let conf = format!(
            r#"worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream mock {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        {server_extra}
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering {buffering};
        }}
    }}
}}
"#,
            dir = dir.display(),
            cert = cert.display(),
            key = key.display(),
            buffering = if buffering { "on" } else { "off" },
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: format!("https://127.0.0.1:{port}/v1/chat/completions"),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn level(url: &str, extra: &[&str], tmp: &TempDir) -> (serde_json::Value, String) {
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(url, ds.to_str().unwrap());
    args.extend(["--qps", "5", "--duration", "2", "--arrival", "constant"]);
    args.extend(extra);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    (run.levels().remove(0), run.stderr)
}

#[test]
fn through_nginx_tls_termination_streams_unbuffered_and_buffering_is_diagnosed() {
    let _g = serial();
    let Some(bin) = require_nginx() else { return };
    let tmp = TempDir::new("nginx");
    let certs = write_self_signed(
        &tmp.path().join("certs"),
        &["127.0.0.1", "localhost"],
        (2099, 1, 1),
    )
    .unwrap();
    let mock = Mock::start(&[
        "--ttft-ms",
        "150",
        "--itl-ms",
        "10",
        "--output-tokens",
        "20",
        "--role-chunk",
    ]);
    let upstream = mock.authority();
    let ca = certs.ca_cert.to_str().unwrap().to_string();

    let (direct, _) = level(&mock.url, &[], &tmp);
    assert_eq!(f(&direct, "success_rate"), 100.0, "{direct}");

    let proxy = Nginx::start(
        &bin,
        &tmp.path().join("nginx-off"),
        &upstream,
        false,
        &certs.server_cert,
        &certs.server_key,
        "",
    );
    let (via, stderr) = level(&proxy.url, &["--ca-cert", &ca], &tmp);
    assert_eq!(f(&via, "success_rate"), 100.0, "{via}");
    assert_eq!(
        f(&via, "output_tokens_total"),
        f(&direct, "output_tokens_total")
    );
    assert_eq!(via["token_count_source"], "usage");
    let ttft = via["ttft"]["p50"].as_f64().unwrap();
    assert!((0.145..0.4).contains(&ttft), "TTFT through nginx {ttft}");
    assert!(via["warnings"].as_array().unwrap().is_empty(), "{via}");
    assert!(!stderr.contains("looks buffered"));
    assert!(
        via["connections"]["warmup_tls_handshake_us"]["p50"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    drop(proxy);

    let proxy = Nginx::start(
        &bin,
        &tmp.path().join("nginx-on"),
        &upstream,
        true,
        &certs.server_cert,
        &certs.server_key,
        "",
    );
    let (buffered, stderr) = level(&proxy.url, &["--ca-cert", &ca], &tmp);
    assert_eq!(f(&buffered, "success_rate"), 100.0, "{buffered}");
    let warnings = buffered["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("looks buffered")),
        "{buffered}"
    );
    assert!(stderr.contains("looks buffered"), "{stderr}");
    // Buffered: the first token arrives with the last, so TTFT ≈ E2E (~0.34 s here).
    assert!(
        buffered["ttft"]["p50"].as_f64().unwrap() > 0.3,
        "{buffered}"
    );
}

/// nginx closes idle keep-alive connections after `keepalive_timeout` (over TLS with a
/// close_notify first). Requests spaced beyond it must each find their idle connection closed
/// before writing to it, and succeed on a fresh one: 100% success, no `Connection closed`.
/// Once with the plain timeout (found by the idle check alone), once with the `Keep-Alive:
/// timeout=1` header nginx sends when given a header timeout (honoured before any check).
#[test]
fn requests_spaced_beyond_nginx_keepalive_timeout_all_succeed() {
    let _g = serial();
    let Some(bin) = require_nginx() else { return };
    let tmp = TempDir::new("nginx-keepalive");
    let certs = write_self_signed(&tmp.path().join("certs"), &["127.0.0.1"], (2099, 1, 1)).unwrap();
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "5", "--output-tokens", "4"]);
    let ca = certs.ca_cert.to_str().unwrap().to_string();
    for (name, keepalive) in [
        ("plain", "keepalive_timeout 1s;"),
        ("header", "keepalive_timeout 1s 1s;"),
    ] {
        let proxy = Nginx::start(
            &bin,
            &tmp.path().join(format!("nginx-{name}")),
            &mock.authority(),
            false,
            &certs.server_cert,
            &certs.server_key,
            keepalive,
        );
        let ds = tmp.file("d.json", DATASET);
        let mut args = base_args(&proxy.url, ds.to_str().unwrap());
        // 4 requests 1.5 s apart, on one core so that each finds the previous one's connection.
        args.extend([
            "--qps",
            "0.6667",
            "--duration",
            "6",
            "--arrival",
            "constant",
            "--cores",
            "1",
            "--ca-cert",
            &ca,
        ]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{name}: {}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(f(l, "total_requests"), 4.0, "{name}: {l}");
        assert_eq!(f(l, "success_rate"), 100.0, "{name}: {l}");
        assert!(l["errors"].as_object().unwrap().is_empty(), "{name}: {l}");
        assert!(
            f(l, "idle_connections_closed_by_server") >= 3.0,
            "{name}: every reuse found its connection closed: {l}"
        );
    }
}
