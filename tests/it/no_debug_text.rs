//! No Rust debug formatting reaches a user: many kinds of run (a failed endpoint, SLOs,
//! embeddings, sessions, `--qps auto`, an interrupt, compare, merge and plot) and every file
//! they write are scanned for `Some(` and a bare `None` in qpsbench's own words. The servers'
//! own error texts (`error_samples`, stream error messages) are left out of the scan: they are
//! quoted, not written by qpsbench.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Keys whose values are a server's words, not qpsbench's.
const SERVERS_WORDS: [&str; 3] = ["error_samples", "stream_error_messages", "sample"];

/// Where `text` holds `Some(` or `None` as a word: (the word, a little context) each.
fn debug_text(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in text.match_indices("Some(") {
        found.push(context(text, i));
    }
    for (i, _) in text.match_indices("None") {
        let before = text[..i].chars().next_back();
        let after = text[i + 4..].chars().next();
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !word(before) && !word(after) {
            found.push(context(text, i));
        }
    }
    found
}

fn context(text: &str, i: usize) -> String {
    let mut a = i.saturating_sub(60);
    while !text.is_char_boundary(a) {
        a -= 1;
    }
    let mut b = (i + 60).min(text.len());
    while !text.is_char_boundary(b) {
        b += 1;
    }
    text[a..b].to_string()
}

/// Every string of a JSON value, but the servers' words.
fn strings(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::String(s) => {
            out.push_str(s);
            out.push('\n');
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                out.push_str(k);
                out.push('\n');
                if !SERVERS_WORDS.contains(&k.as_str()) {
                    strings(x, out);
                }
            }
        }
        _ => {}
    }
}

/// qpsbench's own words in a results file.
fn words_of_file(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = String::new();
    let values: Vec<serde_json::Value> = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => serde_json::from_str(&text).into_iter().collect(),
        Some("jsonl") => text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        _ => return text,
    };
    values.iter().for_each(|v| strings(v, &mut out));
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("json" | "jsonl")
        ) {
            out.push(p);
        }
    }
}

#[test]
fn the_scan_finds_what_it_is_written_for() {
    assert_eq!(debug_text("TTFT p95 Some(0.05) s").len(), 1);
    assert_eq!(debug_text("the value was None.").len(), 1);
    assert!(debug_text("NoneSuch, Nonesense, no value").is_empty());
    let tmp = TempDir::new("planted");
    let planted = tmp.file("summary.json", r#"{"reasons": {"x": "TTFT Some(0.1) s"}}"#);
    assert_eq!(debug_text(&words_of_file(&planted)).len(), 1);
    let quoted = tmp.file("r.json", r#"{"error_samples": {"HTTP 500": "None"}}"#);
    assert!(
        debug_text(&words_of_file(&quoted)).is_empty(),
        "servers' words are left out"
    );
}

#[test]
fn no_run_of_any_kind_shows_debug_text() {
    let _g = serial();
    let tmp = TempDir::new("debug-text");
    let mock = Mock::start(&["--ttft-ms", "10", "--itl-ms", "2", "--output-tokens", "4"]);
    let embeddings = mock.url.replace("/chat/completions", "/embeddings");
    let closed = format!("http://127.0.0.1:{}/v1/chat/completions", free_port());
    let r = |url: &str, rest: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--endpoint",
            url,
            "--model",
            "m",
            "--dataset-name",
            "random",
        ]
        .map(String::from)
        .to_vec();
        a.extend(
            [
                "--random-input-len",
                "8",
                "--random-output-len",
                "4",
                "--duration",
                "1",
            ]
            .map(String::from),
        );
        a.extend(rest.iter().map(|s| s.to_string()));
        a
    };
    let runs: Vec<Vec<String>> = vec![
        r(&closed, &["--qps", "2"]),
        r(&closed, &["--qps", "2", "--no-probe"]),
        r(
            &mock.url,
            &[
                "--qps",
                "2,4",
                "--slo-ttft",
                "0.001",
                "--slo-e2e",
                "0.001",
                "--plot",
            ],
        ),
        r(
            &embeddings,
            &[
                "--qps",
                "2",
                "--embedding-batch",
                "2",
                "--slo-ttft",
                "0.5",
                "--plot",
            ],
        ),
        r(&mock.url, &["--qps", "2", "--session-turns", "2", "--plot"]),
        r(
            &mock.url,
            &["--qps", "auto", "--auto-start", "2", "--auto-max-qps", "4"],
        ),
        r(
            &mock.url,
            &["--qps", "2,4", "--shard", "0/1", "--save-requests"],
        ),
    ];
    let mut seen = String::new();
    let results = tmp.path().join("results");
    for args in &runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = qpsbench(&args, &results);
        seen.push_str(&run.stdout);
        seen.push_str(&run.stderr);
    }
    // An interrupt during a level.
    let child = Command::new(BIN)
        .args(r(&mock.url, &["--qps", "4", "--duration", "6"]))
        .arg("--results-dir")
        .arg(&results)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    seen.push_str(&String::from_utf8_lossy(&out.stderr));
    // compare, merge and plot over what was written.
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&results)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("benchmark_qps_results.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "{dirs:?}");
    let shard = dirs
        .iter()
        .find(|d| {
            d.join("metadata.json").is_file()
                && words_of_file(&d.join("metadata.json")).contains("shard")
        })
        .cloned();
    let mut commands: Vec<Vec<String>> = vec![
        vec![
            "compare".into(),
            dirs[0].display().to_string(),
            dirs[1].display().to_string(),
        ],
        vec![
            "plot".into(),
            dirs[0].display().to_string(),
            "--slo-ttft".into(),
            "0.001".into(),
        ],
    ];
    if let Some(s) = shard {
        let merged = tmp.path().join("merged");
        commands.push(vec![
            "merge".into(),
            s.display().to_string(),
            "--results-dir".into(),
            merged.display().to_string(),
            "--plot".into(),
        ]);
    }
    for c in &commands {
        let out = Command::new(BIN).args(c).output().unwrap();
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    let mut found = debug_text(&seen);
    let mut files = Vec::new();
    files_under(tmp.path(), &mut files);
    assert!(files.len() > 20, "{files:?}");
    for f in &files {
        found.extend(
            debug_text(&words_of_file(f))
                .into_iter()
                .map(|c| format!("{}: {c}", f.display())),
        );
    }
    assert!(
        found.is_empty(),
        "debug text shown to a user:\n{}",
        found.join("\n")
    );
}
