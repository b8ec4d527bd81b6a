//! Every fault mode of the built-in endpoint (`serve-mock --fault MODE:0.5`) gets its error
//! category, the run finishes within its time bound, and the healthy requests of the same level
//! succeed.

use crate::common::*;

#[test]
fn every_fault_mode_gets_its_category_and_spares_healthy_requests() {
    let _g = serial();
    let tmp = TempDir::new("faults");
    let ds = tmp.file("d.json", DATASET);
    // (mode, extra client flags, the category expected; None: a valid answer, no errors)
    let cases: [(&str, &[&str], Option<&str>); 16] = [
        ("garbage", &[], Some("Malformed response:")),
        ("close-before-head", &[], Some("Connection closed")),
        ("reset-mid-stream", &[], Some("Connection reset")),
        ("truncated-chunk", &[], Some("Truncated stream")),
        (
            "stall-head",
            &["--ttft-timeout", "0.5"],
            Some("Timeout (first token)"),
        ),
        (
            "stall-first-token",
            &["--ttft-timeout", "0.5"],
            Some("Timeout (first token)"),
        ),
        (
            "stall-between-tokens",
            &["--idle-timeout", "0.5"],
            Some("Timeout (idle)"),
        ),
        (
            "huge-head",
            &[],
            Some("Response too large: response head over"),
        ),
        ("endless", &["--timeout", "1"], Some("Timeout (total)")),
        (
            "bad-json",
            &[],
            Some("Malformed response: stream chunk is not JSON"),
        ),
        ("error-event", &[], Some("Stream error")),
        (
            "json-answer",
            &[],
            Some("Malformed response: not an event stream"),
        ),
        ("html502", &[], Some("HTTP 502")),
        ("retry429", &[], Some("HTTP 429")),
        ("http10", &[], None),
        ("chunk-extensions", &[], None),
    ];
    for (mode, flags, want) in cases {
        let mock = faulty_mock(mode);
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        // One client core: the faulty and the healthy requests share it.
        args.extend([
            "--qps",
            "20",
            "--duration",
            "1",
            "--continuous-usage",
            "off",
            "--cores",
            "1",
        ]);
        args.extend(flags);
        let started = std::time::Instant::now();
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{mode}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{mode}: {}", run.stderr);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{mode}: {:?}",
            started.elapsed()
        );
        let l = &run.levels()[0];
        let errors = l["errors"].as_object().unwrap();
        let ok = f(l, "successful_requests");
        assert!(ok >= 1.0, "{mode}: healthy requests must succeed: {l}");
        match want {
            Some(prefix) => {
                let hits = errors_starting_with(l, prefix);
                assert!(hits >= 1, "{mode}: no '{prefix}' in {errors:?}");
                assert_eq!(
                    hits,
                    f(l, "failed_requests") as u64,
                    "{mode}: other categories too: {errors:?}"
                );
                assert_eq!(ok + hits as f64, f(l, "total_requests"), "{mode}: {l}");
                if mode == "error-event" {
                    // One category; the message is counted beside it.
                    assert_eq!(
                        l["stream_error_messages"][0]["message"], "mock fault: model overloaded",
                        "{l}"
                    );
                    assert_eq!(l["stream_error_messages"][0]["count"].as_u64(), Some(hits));
                }
            }
            None => {
                assert!(errors.is_empty(), "{mode}: {errors:?}");
                assert_eq!(ok, f(l, "total_requests"), "{mode}");
            }
        }
    }
}

/// Requests the server drops after reading them are failures, every one: none is resent on a
/// fresh connection and hidden. With P = 0.5 over 100 requests the failures are Binomial(100,
/// 0.5): 30 to 70 holds with probability 1 − 8e-5.
#[test]
fn every_request_the_server_drops_is_counted() {
    let _g = serial();
    let tmp = TempDir::new("drops");
    let ds = tmp.file("d.json", DATASET);
    let mock = faulty_mock("close-before-head");
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "50", "--duration", "2", "--cores", "1"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(f(l, "total_requests"), 100.0);
    let failed = f(l, "failed_requests");
    assert!(
        (30.0..=70.0).contains(&failed),
        "{failed} of 100 failed: {l}"
    );
    assert_eq!(
        l["errors"]["Connection closed"].as_f64(),
        Some(failed),
        "{l}"
    );
    assert_eq!(f(l, "successful_requests") + failed, 100.0);
}

#[test]
fn bad_fault_specs_are_refused() {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"))
        .args(["serve-mock", "--port", "0", "--fault", "sometimes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown mode 'sometimes'") && stderr.contains("garbage"));
}
