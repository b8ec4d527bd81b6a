//! The HTTP/1.1 client against small hand-written servers that answer in ways the built-in
//! endpoint does not: close-delimited HTTP/1.0 streams, `Connection: close`, Content-Length
//! bodies, keep-alive connections the server drops while idle, and garbage.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;

const SSE: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" there\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\ndata: [DONE]\n\n";

/// What the canned server does with each connection.
#[derive(Clone, Copy)]
enum Mode {
    /// HTTP/1.0, no length: the body ends when the server closes.
    Http10CloseDelimited,
    /// HTTP/1.1 chunked with `Connection: close`, then close.
    ChunkedConnectionClose,
    /// HTTP/1.1 with Content-Length, keep-alive; serves requests until the client closes.
    ContentLengthKeepAlive,
    /// Answers one request with keep-alive headers, then closes the socket anyway (an idle
    /// timeout on the server side).
    DropAfterOne,
    /// Not HTTP at all.
    Garbage,
    /// HTTP 500 with an HTML body.
    Html500,
    /// 200 with one JSON completion, as a server that ignores `stream: true` answers.
    JsonNotStream,
    /// Keep-alive like `ContentLengthKeepAlive`, but HTTP 400 to a body with `ignore_eos`, as
    /// a hosted API answers fields it does not know.
    RefuseIgnoreEos,
}

struct Canned {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Every request body received, in order.
    bodies: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads one request; returns its body (None: the client closed or the read failed).
fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut tmp).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            return Some(buf[end + 4..end + 4 + len].to_vec());
        }
    }
}

fn chunked(body: &str) -> String {
    let mut out = String::new();
    for part in body.split_inclusive("\n\n") {
        out.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
    }
    out + "0\r\n\r\n"
}

fn serve(mode: Mode) -> Canned {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, st, b) = (connections.clone(), stop.clone(), bodies.clone());
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !st.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
            let Ok((mut s, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            c.fetch_add(1, Ordering::Relaxed);
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let b = b.clone();
            std::thread::spawn(move || loop {
                let Some(body) = read_request(&mut s) else {
                    return;
                };
                let refused = matches!(mode, Mode::RefuseIgnoreEos)
                    && String::from_utf8_lossy(&body).contains("ignore_eos");
                b.lock().unwrap().push(body);
                let resp = match mode {
                    Mode::RefuseIgnoreEos if refused => {
                        let body = r#"{"error":{"message":"Unrecognized request argument supplied: ignore_eos"}}"#;
                        format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    }
                    Mode::Http10CloseDelimited => format!("HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n{SSE}"),
                    Mode::ChunkedConnectionClose => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}",
                        chunked(SSE)
                    ),
                    Mode::ContentLengthKeepAlive | Mode::DropAfterOne | Mode::RefuseIgnoreEos => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{SSE}",
                        SSE.len()
                    ),
                    Mode::Garbage => "SSH-2.0-OpenSSH_9.2\r\n\r\n".to_string(),
                    Mode::JsonNotStream => {
                        let body = r#"{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]}"#;
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    }
                    Mode::Html500 => {
                        let body = "<html><body><h1>500 Internal Server Error</h1></body></html>";
                        format!("HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    }
                };
                if s.write_all(resp.as_bytes()).is_err() {
                    return;
                }
                match mode {
                    Mode::ContentLengthKeepAlive
                    | Mode::Html500
                    | Mode::JsonNotStream
                    | Mode::RefuseIgnoreEos => continue,
                    _ => return, // close (dropping the socket)
                }
            });
        }
    });
    Canned {
        url,
        connections,
        bodies,
        stop,
    }
}

fn run_against(server: &Canned, qps: &str) -> serde_json::Value {
    let tmp = TempDir::new("canned");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&server.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        qps,
        "--duration",
        "1",
        "--arrival",
        "constant",
        "--cores",
        "1",
        // These tests count the connections and requests a level makes itself (no warm-up
        // connections, no probe request), and see what a level makes of broken answers.
        "--warmup-connections",
        "0",
        "--continuous-usage",
        "off",
        "--no-probe",
    ]);
    let run = qpsbench(&args, tmp.path());
    let l = run.levels().remove(0);
    // No success anywhere: exit status 4 (no capacity to name).
    let want = if l["successful_requests"] == 0 { 4 } else { 0 };
    assert_eq!(run.code(), want, "{}", run.stderr);
    l
}

#[test]
fn close_delimited_http10_stream_succeeds_on_fresh_connections() {
    let _g = serial();
    let s = serve(Mode::Http10CloseDelimited);
    let l = run_against(&s, "5");
    assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(&l, "output_tokens_total"), 10.0);
    assert_eq!(l["token_count_source"], "usage");
    assert_eq!(
        f(&l, "new_connections"),
        5.0,
        "no reuse of a close-delimited connection"
    );
    assert_eq!(f(&l, "idle_connections_closed_by_server"), 0.0);
}

#[test]
fn connection_close_is_honoured() {
    let _g = serial();
    let s = serve(Mode::ChunkedConnectionClose);
    let l = run_against(&s, "5");
    assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(&l, "new_connections"), 5.0);
    assert_eq!(f(&l, "idle_connections_closed_by_server"), 0.0);
    assert_eq!(s.connections.load(Ordering::Relaxed), 5);
}

#[test]
fn content_length_body_reuses_one_connection() {
    let _g = serial();
    let s = serve(Mode::ContentLengthKeepAlive);
    let l = run_against(&s, "5");
    assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(&l, "new_connections"), 1.0, "{l}");
    assert_eq!(s.connections.load(Ordering::Relaxed), 1);
    // This server writes each whole stream at once: every response's tokens come in one read.
    assert_eq!(f(&l, "single_read_responses"), 5.0);
    assert!(
        l["warnings"][0]
            .as_str()
            .unwrap()
            .contains("looks buffered"),
        "{l}"
    );
}

#[test]
fn idle_connection_closed_by_the_server_is_found_before_a_request_is_written_to_it() {
    let _g = serial();
    let s = serve(Mode::DropAfterOne);
    let l = run_against(&s, "5");
    // The server closes each connection after one response; the next request finds it closed
    // while idle (before writing), discards it and opens another: no request failed or resent.
    assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
    assert_eq!(f(&l, "idle_connections_closed_by_server"), 4.0, "{l}");
    assert!(l["errors"].as_object().unwrap().is_empty());
}

#[test]
fn garbage_and_html_errors_are_categorised() {
    let _g = serial();
    let s = serve(Mode::Garbage);
    let l = run_against(&s, "3");
    let errors = l["errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{l}");
    let (k, v) = errors.iter().next().unwrap();
    assert!(k.starts_with("Malformed response: "), "{k}");
    assert_eq!(v, 3);
    let s = serve(Mode::Html500);
    let l = run_against(&s, "3");
    assert_eq!(l["errors"]["HTTP 500"], 3, "{l}");
    assert!(l["error_samples"]["HTTP 500"]
        .as_str()
        .unwrap()
        .contains("<h1>500"));
    assert_eq!(
        f(&l, "new_connections"),
        1.0,
        "a fully read error response keeps the connection"
    );
}

#[test]
fn a_json_answer_instead_of_a_stream_is_malformed_not_truncated() {
    let _g = serial();
    let s = serve(Mode::JsonNotStream);
    let l = run_against(&s, "3");
    assert_eq!(
        l["errors"]["Malformed response: not an event stream (no data: events)"], 3,
        "{l}"
    );
}

/// `--extra-body` reaches the server in every request body: its keys added, and winning over
/// qpsbench's own defaults (`max_tokens`); the keys qpsbench owns are refused before the run.
#[test]
fn extra_body_fields_arrive_in_every_request() {
    let _g = serial();
    let s = serve(Mode::ContentLengthKeepAlive);
    let tmp = TempDir::new("extra-body");
    let ds = tmp.file("d.json", DATASET);
    let extra =
        r#"{"top_p": 0.9, "max_tokens": 7, "chat_template_kwargs": {"enable_thinking": false}}"#;
    let mut args = base_args(&s.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "4",
        "--duration",
        "1",
        "--continuous-usage",
        "off",
        "--extra-body",
        extra,
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let bodies = s.bodies.lock().unwrap().clone();
    // The probe's three (the endpoint check and the unloaded baseline), then the level's four.
    assert_eq!(bodies.len(), 3 + 4);
    for b in &bodies {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["top_p"], 0.9, "{v}");
        assert_eq!(v["max_tokens"], 7, "{v}");
        assert_eq!(v["chat_template_kwargs"]["enable_thinking"], false, "{v}");
        assert_eq!(
            (v["model"].as_str(), v["stream"].as_bool()),
            (Some("m"), Some(true))
        );
    }
    assert_eq!(run.metadata()["extra_body"]["top_p"], 0.9);
    for bad in [r#"{"stream": false}"#, r#"{"model": "x"}"#, "[1]", "{oops"] {
        let mut a = base_args(&s.url, ds.to_str().unwrap());
        a.extend(["--extra-body", bad]);
        let run = qpsbench(&a, tmp.path());
        assert_eq!(run.code(), 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--extra-body"), "{}", run.stderr);
    }
}

/// An endpoint that refuses `ignore_eos` (HTTP 400) still gets a run: the probe before the first
/// level finds the refused fields, drops them, says so, and records it in metadata.
#[test]
fn refused_ignore_eos_is_dropped_after_the_probe() {
    let _g = serial();
    let s = serve(Mode::RefuseIgnoreEos);
    let tmp = TempDir::new("refuse-eos");
    let mut args = endpoint_args(&s.url);
    args.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "20",
        "--random-output-len",
        "5",
        "--qps",
        "4",
        "--duration",
        "1",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("refused a request with ignore_eos"),
        "{}",
        run.stderr
    );
    let m = run.metadata();
    assert_eq!(
        m["ignore_eos"], "not requested (refused by the endpoint: HTTP 400)",
        "{m}"
    );
    assert_eq!(run.levels()[0]["success_rate"], 100.0);
    let bodies = s.bodies.lock().unwrap().clone();
    // The refused probe, the accepted one and the baseline's other two, then the level's four.
    assert_eq!(bodies.len(), 8);
    assert!(String::from_utf8_lossy(&bodies[0]).contains("\"ignore_eos\":true"));
    for b in &bodies[1..] {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        assert!(
            v.get("ignore_eos").is_none() && v.get("min_tokens").is_none(),
            "{v}"
        );
        assert_eq!(v["max_tokens"], 5);
    }
}

/// Rows of a trace that share hash ids reach the server with identical prompt prefixes, one
/// 512-token block per shared id, and differ where their ids do.
#[test]
fn shared_hash_ids_arrive_as_identical_prompt_prefixes() {
    let _g = serial();
    let s = serve(Mode::ContentLengthKeepAlive);
    let tmp = TempDir::new("prefix");
    // Each row's output_length tells its body apart at the server.
    let rows = [
        (1, "[1, 2, 3]", 1300),
        (2, "[1, 2, 4]", 1300),
        (3, "[1, 5]", 1000),
        (4, "[6]", 700),
    ];
    let text: String = rows
        .iter()
        .map(|(id, ids, len)| {
            format!("{{\"timestamp\": {}, \"input_length\": {len}, \"output_length\": {id}, \"hash_ids\": {ids}}}\n", id * 50)
        })
        .collect();
    let trace = tmp.file("prefix.jsonl", &text);
    let mut args = base_args(&s.url, trace.to_str().unwrap());
    args.extend(["--replay", "--continuous-usage", "off", "--no-ignore-eos"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let mut prompts = std::collections::BTreeMap::new();
    for b in s.bodies.lock().unwrap().iter() {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        let words: Vec<String> = v["messages"][0]["content"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect();
        prompts.insert(v["max_tokens"].as_u64().unwrap(), words);
    }
    assert_eq!(prompts.len(), 4);
    let shared = |a: u64, b: u64| {
        prompts[&a]
            .iter()
            .zip(&prompts[&b])
            .take_while(|(x, y)| x == y)
            .count()
    };
    assert_eq!(prompts[&1].len(), 1300);
    assert_eq!(prompts[&4].len(), 700);
    // Blocks 1 and 2 are shared; the third differs from its first word (or nearly: two distinct
    // texts may begin with the same common word by chance).
    assert!((1024..1030).contains(&shared(1, 2)), "{}", shared(1, 2));
    assert!((512..518).contains(&shared(1, 3)), "{}", shared(1, 3));
    assert!(shared(1, 4) < 6, "{}", shared(1, 4));
}
