//! The receive path: by default a client core reads responses in place from its receive ring
//! (multishot `recv` on a second io_uring); `QPSBENCH_RECV_PATH=monoio` forces the fallback a
//! kernel without multishot receive gets (monoio reads). Both read the same answers, keep the
//! same connections and see the same faults, and `metadata.json` names the path that ran.

use crate::common::*;

const RING: &str = "io_uring multishot recv";
const MONOIO: &str = "monoio reads";

/// One level against `url` with the receive path forced to `path` (None: the default).
fn run_with(path: Option<&str>, url: &str, tmp: &TempDir, ds: &str, extra: &[&str]) -> Run {
    let mut args = base_args(url, ds);
    args.extend([
        "--duration",
        "1",
        "--cores",
        "1",
        "--continuous-usage",
        "off",
    ]);
    args.extend(extra);
    let env: Vec<(&str, &str)> = path
        .map(|p| ("QPSBENCH_RECV_PATH", p))
        .into_iter()
        .collect();
    let run = qpsbench_env(&args, tmp.path(), &env);
    assert_eq!(run.code(), 0, "{path:?}: {}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    run
}

#[test]
fn both_paths_read_every_answer_and_metadata_names_the_one_that_ran() {
    let _g = serial();
    let tmp = TempDir::new("recv-path");
    let ds = tmp.file("d.json", DATASET);
    let ds = ds.to_str().unwrap();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "2", "--output-tokens", "12"]);
    for path in [None, Some("ring"), Some("monoio")] {
        let run = run_with(path, &mock.url, &tmp, ds, &["--qps", "40"]);
        let meta = run.metadata();
        let got = meta["receive_path"].as_str().unwrap_or_default();
        if path == Some("monoio") {
            assert_eq!(got, MONOIO);
        } else if std::env::var_os("QPSBENCH_REQUIRE_IO_URING").is_some() {
            // CI's kernel has io_uring with multishot receive (Linux 6.0 or later).
            assert_eq!(got, RING, "{path:?}");
        } else {
            assert!(got == RING || got == MONOIO, "{path:?}: {got}");
        }
        let l = &run.levels()[0];
        let total = f(l, "total_requests");
        assert!(total >= 30.0, "{path:?}: {l}");
        assert_eq!(f(l, "successful_requests"), total, "{path:?}: {l}");
        assert_eq!(f(l, "output_tokens_total"), 12.0 * total, "{path:?}: {l}");
        // Keep-alive works on both: connections are reused, not opened per request.
        assert!(f(l, "new_connections") < total / 2.0, "{path:?}: {l}");
        let ttft = f(&l["ttft"], "p50");
        assert!((0.004..0.5).contains(&ttft), "{path:?}: TTFT {ttft}");
    }
}

#[test]
fn faults_get_the_same_categories_on_both_paths() {
    let _g = serial();
    let tmp = TempDir::new("recv-path-faults");
    let ds = tmp.file("d.json", DATASET);
    let ds = ds.to_str().unwrap();
    let cases: [(&str, &[&str], &str); 5] = [
        ("reset-mid-stream", &[], "Connection reset"),
        ("close-before-head", &[], "Connection closed"),
        ("truncated-chunk", &[], "Truncated stream"),
        ("garbage", &[], "Malformed response:"),
        (
            "stall-between-tokens",
            &["--idle-timeout", "0.3"],
            "Timeout (idle)",
        ),
    ];
    for (mode, flags, want) in cases {
        let mock = faulty_mock(mode);
        for path in ["ring", "monoio"] {
            // Half the requests fail on purpose: the endpoint check could draw a fault itself.
            let mut extra = vec!["--qps", "20", "--no-probe"];
            extra.extend(flags);
            let run = run_with(Some(path), &mock.url, &tmp, ds, &extra);
            let l = &run.levels()[0];
            let errors = &l["errors"];
            let hits = errors_starting_with(l, want);
            assert!(hits >= 1, "{mode} on {path}: no '{want}' in {errors:?}");
            assert_eq!(
                hits,
                f(l, "failed_requests") as u64,
                "{mode} on {path}: other categories too: {errors:?}"
            );
            assert!(f(l, "successful_requests") >= 1.0, "{mode} on {path}: {l}");
        }
    }
}

#[test]
fn an_unknown_receive_path_is_refused_with_exit_2() {
    let tmp = TempDir::new("recv-path-bad");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(
        "http://127.0.0.1:9/v1/chat/completions",
        ds.to_str().unwrap(),
    );
    args.extend(["--qps", "1", "--duration", "1"]);
    let run = qpsbench_env(&args, tmp.path(), &[("QPSBENCH_RECV_PATH", "uring")]);
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("QPSBENCH_RECV_PATH is `uring`; expected `ring` or `monoio`"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
