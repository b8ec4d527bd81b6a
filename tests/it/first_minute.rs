//! The first minute with qpsbench, as a new user meets it: a broken endpoint stops the run at
//! once with the cause and a hint (exit status 4, no results folder); a busy one is waited for;
//! no capacity is claimed without evidence; bad input of every kind is refused with exit status
//! 2 and words that name it; every command survives a closed pipe; the help fits a screen.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A server that answers any connection with bytes that are not HTTP, for `secs` seconds.
fn garbage_server(secs: u64) -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/chat/completions", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let until = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < until {
            match l.accept() {
                Ok((mut s, _)) => {
                    let mut buf = [0u8; 4096];
                    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2 hello\r\n\r\n");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (url, h)
}

/// Two levels (2 and 4 QPS, or `--qps` in `extra`) of 2 s against `url`.
fn short_run(url: &str, extra: &[&str], tmp: &TempDir) -> (Run, Duration) {
    let mut args = vec![
        "--endpoint",
        url,
        "--model",
        "m",
        "--dataset-name",
        "random",
    ];
    args.extend(["--random-input-len", "16", "--random-output-len", "4"]);
    args.extend(["--duration", "2"]);
    args.extend(extra);
    if !extra.contains(&"--qps") {
        args.extend(["--qps", "2,4"]);
    }
    let started = Instant::now();
    let run = qpsbench(&args, tmp.path());
    (run, started.elapsed())
}

#[test]
fn a_broken_endpoint_stops_the_run_before_level_1_with_the_cause() {
    let _g = serial();
    let tmp = TempDir::new("broken");
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let keyed = Mock::start(&["--require-key", "s3cret-key", "--ttft-ms", "5"]);
    let closed = format!("http://127.0.0.1:{}/v1/chat/completions", free_port());
    let (garbage, server) = garbage_server(15);
    let base = mock.url.replace("/v1/chat/completions", "");
    let https = mock.url.replace("http://", "https://");
    let embeddings = mock.url.replace("/chat/completions", "/embeddings");
    // (url, extra flags, words the message must hold)
    let cases: [(&str, &[&str], &[&str]); 6] = [
        (
            &closed,
            &[],
            &["Connection refused", "is the server running"],
        ),
        (&garbage, &[], &["not HTTP", "does not answer HTTP/1.1"]),
        (&https, &[], &["TLS", "use http://"]),
        (
            &base,
            &[],
            &["HTTP 404", "Not found: /", "/v1/chat/completions"],
        ),
        (
            &embeddings,
            &["--api", "chat"],
            &["HTTP 400", "--api embeddings"],
        ),
        (
            &keyed.url,
            &[],
            &["HTTP 401", "Missing API key", "pass --api-key"],
        ),
    ];
    for (url, extra, words) in cases {
        let (run, took) = short_run(url, extra, &tmp);
        assert_eq!(run.code(), 4, "{url}: {}", run.stderr);
        assert!(took < Duration::from_secs(15), "{url}: {took:?}");
        for w in words {
            assert!(run.stderr.contains(w), "{url}: no {w:?} in {}", run.stderr);
        }
        assert!(run.stderr.contains("no level was run"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("[1/2]"),
            "no level ran: {}",
            run.stderr
        );
        assert!(run.dir.is_none(), "{url}: no results folder");
        assert!(run.stdout.is_empty(), "{url}: {}", run.stdout);
    }
    // The right key gets through; a wrong one is named as such, and never echoed.
    let (run, _) = short_run(&keyed.url, &["--api-key", "wr0ng-key-here"], &tmp);
    assert_eq!(run.code(), 4);
    assert!(run.stderr.contains("check --api-key"), "{}", run.stderr);
    assert!(!run.stderr.contains("wr0ng-key-here"), "{}", run.stderr);
    let (run, _) = short_run(&keyed.url, &["--api-key", "s3cret-key", "--qps", "2"], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let _ = server.join();
}

#[test]
fn a_busy_endpoint_is_waited_for_then_measured() {
    let _g = serial();
    let tmp = TempDir::new("busy");
    let mock = Mock::start(&[
        "--fail-first",
        "3",
        "--ttft-ms",
        "5",
        "--output-tokens",
        "4",
    ]);
    let (run, _) = short_run(&mock.url, &["--qps", "2"], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("the endpoint is busy (HTTP 503"),
        "{}",
        run.stderr
    );
    let m = run.metadata();
    assert_eq!(
        m["endpoint_check"], "answered after 3 busy answer(s)",
        "{m}"
    );
    assert_eq!(m["baseline"]["requests"], 3, "{m}");
    assert_eq!(run.levels()[0]["successful_requests"], 4);
    // Busy past --probe-wait: the run goes on with a warning.
    let mock = Mock::start(&["--fail-first", "1000", "--ttft-ms", "5"]);
    let (run, took) = short_run(&mock.url, &["--qps", "2", "--probe-wait", "2"], &tmp);
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        run.stderr.contains("still busy after 2 s"),
        "{}",
        run.stderr
    );
    assert_eq!(run.code(), 4, "every request got 503: {}", run.stderr);
    assert!(run.metadata()["baseline"].is_null());
}

fn summary(run: &Run) -> serde_json::Value {
    let p = run.dir.as_ref().unwrap().join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn no_capacity_is_claimed_without_evidence() {
    let _g = serial();
    let tmp = TempDir::new("evidence");
    // An endpoint far above the levels tried: it never saturates.
    // (TTFT 50 ms: a loaded test machine's jitter stays well under 3× of it.)
    let fast = Mock::start(&["--ttft-ms", "50", "--itl-ms", "1", "--output-tokens", "4"]);
    let (run, _) = short_run(&fast.url, &[], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    assert!(
        s["saturation_qps"].is_null() && s["optimal_qps"].is_null(),
        "{s}"
    );
    assert!(s["recommended_limit_qps"].is_null(), "{s}");
    assert!(
        s["next_step"]
            .as_str()
            .unwrap()
            .contains("Not saturated up to QPS 4.0"),
        "{s}"
    );
    assert!(
        run.stdout.contains("Recommended production limit  -"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the capacity is above 4.0 QPS"),
        "{}",
        run.stdout
    );
    // One answer at a time, ~0.25 s each: the lowest level (8 QPS) is already far past it.
    let slow = Mock::start(&[
        "--max-num-seqs",
        "1",
        "--ttft-ms",
        "50",
        "--itl-ms",
        "50",
        "--output-tokens",
        "4",
    ]);
    let (run, _) = short_run(&slow.url, &["--qps", "8,16"], &tmp);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    assert_eq!(s["saturation_qps"], 8.0, "{s}");
    assert!(
        s["optimal_qps"].is_null() && s["recommended_limit_qps"].is_null(),
        "{s}"
    );
    let next = s["next_step"].as_str().unwrap();
    assert!(
        next.contains("Saturated at the lowest level tried (QPS 8.0): test lower"),
        "{next}"
    );
    assert!(
        s["reasons"]["saturation_qps"]
            .as_str()
            .unwrap()
            .contains("the unloaded"),
        "{s}"
    );
}

/// Runs `args` with stdout piped into `head -1`; returns the qpsbench's exit status and stderr.
fn piped_into_head(args: &[&str], dir: &std::path::Path) -> (i32, String) {
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "'{BIN}' {} | head -1 >/dev/null; echo \"status=${{PIPESTATUS[0]}}\" >&2",
        quoted.join(" ")
    );
    let out = Command::new("bash")
        .args(["-c", &script])
        .current_dir(dir)
        .env_remove("QPSBENCH_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let status = stderr
        .rsplit("status=")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(-1);
    (status, stderr)
}

#[test]
fn every_command_survives_a_closed_pipe() {
    let _g = serial();
    let tmp = TempDir::new("pipes");
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let results = tmp.path().join("r");
    let r = results.to_str().unwrap();
    let bench = [
        "--endpoint",
        &mock.url,
        "--model",
        "m",
        "--dataset-name",
        "random",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--qps",
        "4,8",
        "--duration",
        "1",
        "--results-dir",
        r,
        "--plot",
        "--shard",
        "0/1",
    ];
    let (code, stderr) = piped_into_head(&bench, tmp.path());
    assert!(code == 0 || code == 141, "benchmark: {code} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let dir = std::fs::read_dir(&results)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let d = dir.to_str().unwrap().to_string();
    // Its files are whole: every JSON parses, both levels are there, the picture too.
    let levels: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("benchmark_qps_results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(levels.as_array().unwrap().len(), 2);
    for f in ["summary.json", "metadata.json", "histograms.json"] {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    assert!(dir.join("benchmark_qps.png").is_file());
    let merged = tmp.path().join("m");
    let m = merged.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["compare", &d, &d],
        &["plot", &d],
        &["merge", &d, "--results-dir", m],
        &[
            "selftest",
            "--rates",
            "50",
            "--duration",
            "0.3",
            "--busy-poll",
            "off",
            "--results-dir",
            m,
        ],
    ];
    for args in commands {
        let (code, stderr) = piped_into_head(args, tmp.path());
        assert!(code == 0 || code == 141, "{args:?}: {code} {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(
        dir.join("benchmark_qps.png").is_file(),
        "plot wrote its picture whole"
    );
    let merged_run = std::fs::read_dir(&merged)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("benchmark_qps_results.json").is_file())
        .expect("the merged folder");
    let text = std::fs::read_to_string(merged_run.join("summary.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap();
}

#[test]
fn a_bare_command_and_the_help_fit_a_screen() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let usage = String::from_utf8_lossy(&out.stderr);
    assert!(usage.contains("qpsbench demo"), "{usage}");
    assert!(usage.contains("--dataset-name random"), "{usage}");
    let short = Command::new(BIN).arg("-h").output().unwrap();
    let short = String::from_utf8_lossy(&short.stdout).into_owned();
    assert!(
        short.lines().count() <= 60,
        "{} lines:\n{short}",
        short.lines().count()
    );
    let long = Command::new(BIN).arg("--help").output().unwrap();
    let long = String::from_utf8_lossy(&long.stdout).into_owned();
    let headings = [
        "Endpoint and API:",
        "Load:",
        "Workload:",
        "Validity and saturation:",
        "Output:",
        "Server metrics:",
        "TLS and headers:",
        "Many boxes:",
        "Advanced:",
    ];
    let at: Vec<usize> = headings
        .iter()
        .map(|h| {
            long.find(h)
                .unwrap_or_else(|| panic!("{h} missing in --help"))
        })
        .collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "headings out of order: {at:?}"
    );
    // --qps comes before the dataset flags, as a person needs them.
    assert!(long.find("--qps").unwrap() < long.find("--dataset <").unwrap());
    // A pipe into head ends help cleanly too.
    let mut child = Command::new(BIN)
        .arg("--help")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!err.contains("panicked"), "{status:?} {err}");
}

/// (arguments, words the message must hold). Every one exits with status 2, before any request.
const BAD: &[(&[&str], &[&str])] = &[
    (
        &["--model", "m", "--dataset-name", "random"],
        &["Missing --endpoint argument"],
    ),
    (
        &["--endpoint", "U", "--dataset-name", "random"],
        &["Missing --model argument"],
    ),
    (
        &["--endpoint", "U", "--model", "m"],
        &["Missing --dataset argument"],
    ),
    (
        &["--qps", "1,x"],
        &["Missing --endpoint", "Missing --model", "Missing --dataset"],
    ),
    (
        &["R", "--qps", "1,x"],
        &["--qps x", "expected rates above 0"],
    ),
    (&["R", "--qps=-1"], &["--qps -1"]),
    (
        &["R", "--qps", "0.01", "--duration", "10"],
        &["sends no request"],
    ),
    (&["R", "--percentiles", "101"], &["--percentiles 101"]),
    (&["R", "--arrival", "gaussian"], &["--arrival", "gaussian"]),
    (
        &["R", "--burstiness", "2"],
        &["--burstiness 2", "--arrival gamma"],
    ),
    (&["R", "--duration", "0"], &["--duration 0"]),
    (&["R", "--timeout", "0"], &["--timeout 0"]),
    (&["R", "--probe-wait=-1"], &["--probe-wait -1"]),
    (&["R", "--slo-percentile", "0"], &["--slo-percentile 0"]),
    (&["R", "--cores", "0"], &["--cores 0"]),
    (
        &[
            "R",
            "--qps",
            "auto",
            "--auto-start",
            "10",
            "--auto-max-qps",
            "5",
        ],
        &["--auto-max-qps 5"],
    ),
    (
        &["R", "--output", "metadata.json"],
        &["--output 'metadata.json'", "expected a file name"],
    ),
    (&["R", "--extra-body", "{oops"], &["--extra-body"]),
    (
        &["R", "--extra-body", "{\"stream\": false}"],
        &["--extra-body", "\"stream\" is set by qpsbench"],
    ),
    (
        &["R", "--header", "no colon"],
        &["--header 'no colon'", "expected 'Name: value'"],
    ),
    (
        &["R", "--ignore-eos", "--no-ignore-eos"],
        &["--ignore-eos", "cannot be used with"],
    ),
    (
        &["R", "--start-at", "1000"],
        &["--start-at 1000", "was over", "s ago"],
    ),
    (
        &["R", "--start-at", "3999999999"],
        &["--start-at", "more than a day ahead"],
    ),
    (
        &["R", "--start-at", "1000", "--start-in", "5"],
        &["--start-at and --start-in"],
    ),
    (
        &["R", "--embedding-batch", "4"],
        &["--embedding-batch 4", "embeddings only"],
    ),
    (
        &["R", "--shard", "5/4"],
        &["--shard 5/4", "not one of 0 to N − 1"],
    ),
    (
        &["R", "--reset-prefix-cache", "ftp://x/"],
        &[
            "--reset-prefix-cache",
            "expected auto, off or an http:// URL",
        ],
    ),
    (&["R", "--no-such-flag"], &["--no-such-flag"]),
    (
        &[
            "--endpoint",
            "ftp://x/",
            "--model",
            "m",
            "--dataset-name",
            "random",
        ],
        &["--endpoint", "unsupported"],
    ),
    (
        &[
            "--endpoint",
            "http://[::1/x",
            "--model",
            "m",
            "--dataset-name",
            "random",
        ],
        &["--endpoint", "unclosed"],
    ),
    (
        &[
            "--endpoint",
            "http://no-such-host.invalid/v1",
            "--model",
            "m",
            "--dataset-name",
            "random",
        ],
        &["cannot resolve host"],
    ),
    (
        &["--endpoint", "U", "--model", "m", "--dataset", "MISSING"],
        &["cannot read dataset", "nope.json"],
    ),
    (
        &["--endpoint", "U", "--model", "m", "--dataset", "NOUSER"],
        &["sample 1 has no user message", "no-user.json"],
    ),
    (&["plot", "NOWHERE"], &["not a folder"]),
    (&["compare", "NOWHERE", "NOWHERE"], &["not a folder"]),
    (&["merge", "NOWHERE"], &["NOWHERE", "not a folder"]),
    (
        &[
            "k8s-manifest",
            "--shards",
            "0",
            "--start-in",
            "60",
            "--image",
            "i",
        ],
        &["--shards 0"],
    ),
    (&["serve-mock", "--port", "99999"], &["--port", "99999"]),
];

#[test]
fn bad_input_of_every_kind_exits_2_naming_it() {
    let tmp = TempDir::new("bad-input");
    let url = format!("http://127.0.0.1:{}/v1/chat/completions", free_port());
    let missing = tmp.path().join("nope.json");
    let no_user = tmp.file(
        "no-user.json",
        r#"[{"prompt_content": "p", "cut_chat_history": [{"role": "user", "content": "hi"}]},
            {"prompt_content": "p", "cut_chat_history": [{"role": "assistant", "content": "x"}]}]"#,
    );
    let nowhere = tmp.path().join("nowhere");
    assert!(BAD.len() >= 30, "{} cases", BAD.len());
    for (args, words) in BAD {
        let mut full: Vec<String> = Vec::new();
        for a in args.iter() {
            match *a {
                // A valid run's flags, for the cases about one more flag.
                "R" => full.extend(
                    [
                        "--endpoint",
                        &url,
                        "--model",
                        "m",
                        "--dataset-name",
                        "random",
                    ]
                    .map(String::from),
                ),
                "U" => full.push(url.clone()),
                "MISSING" => full.push(missing.display().to_string()),
                "NOUSER" => full.push(no_user.display().to_string()),
                "NOWHERE" => full.push(nowhere.display().to_string()),
                a => full.push(a.to_string()),
            }
        }
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let sub = ["plot", "compare", "merge", "k8s-manifest", "serve-mock"];
        let run = if sub.contains(&full[0]) {
            let mut cmd = Command::new(BIN);
            cmd.args(&full).current_dir(tmp.path());
            run_command(cmd, &tmp.path().join("results"))
        } else {
            qpsbench(&full, tmp.path())
        };
        assert_eq!(run.code(), 2, "{full:?}: {}", run.stderr);
        for w in words.iter() {
            let w = w.replace("NOWHERE", "nowhere");
            assert!(
                run.stderr.contains(&w),
                "{full:?}: no {w:?} in {}",
                run.stderr
            );
        }
        assert!(!run.stderr.contains("panicked"), "{full:?}: {}", run.stderr);
        assert!(run.dir.is_none(), "{full:?}: a results folder was made");
    }
}
