//! Abandoned requests (`--cancel-rate`, `--cancel-after-ms`) against the built-in endpoint:
//! exactly the share asked for is abandoned, each at its time; they are counted apart from
//! successes and errors and never lower the success rate; the endpoint stops generating for
//! them (by its own token counter); the connections they closed are never reused (every other
//! answer arrives whole); an abandoned turn ends its session; bad flags are refused.

use crate::common::*;

/// 200 ms answers: 20 tokens, 5 ms to the first, 10 ms apart.
fn mock() -> Mock {
    Mock::start(&["--ttft-ms", "5", "--itl-ms", "10", "--output-tokens", "20"])
}

fn args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = endpoint_args(url);
    args.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "50",
        "--random-output-len",
        "20",
        "--save-requests",
    ]);
    args.extend_from_slice(extra);
    args
}

#[test]
fn abandoned_requests_are_counted_apart_and_the_server_stops_for_them() {
    let _g = serial();
    let mock = mock();
    let tmp = TempDir::new("cancel");
    let flags = [
        "--qps",
        "20",
        "--duration",
        "2",
        "--cancel-rate",
        "25",
        "--cancel-after-ms",
        "20-100",
    ];
    let run = qpsbench(&args(&mock.url, &flags), tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    // Exactly round(25% × 40) = 10, in the total and nowhere else.
    assert_eq!(l["total_requests"], 40, "{l}");
    assert_eq!(l["cancelled_requests"], 10, "{l}");
    assert_eq!(l["successful_requests"], 30, "{l}");
    assert_eq!(l["failed_requests"], 0, "{l}");
    assert_eq!(l["errors"], serde_json::json!({}), "{l}");
    assert_eq!(l["success_rate"], 100.0, "{l}");
    // Every other answer arrived whole: no connection an abandoned request left half-read was
    // used again.
    assert_eq!(l["output_tokens_total"], 600, "{l}");
    // The latencies are the successes' own (200 ms answers), not the abandoned ones'.
    assert!(f(&l["e2e_latency"], "p50") > 0.15, "{l}");
    assert_eq!(run.metadata()["cancel"]["share"], 0.25);
    let records = run.records();
    let cancelled: Vec<_> = records.iter().filter(|r| r["cancelled"] == true).collect();
    assert_eq!(cancelled.len(), 10);
    for r in &cancelled {
        assert!(r["error"].is_null(), "{r}");
        let at_ms = (f(r, "done_us") - f(r, "intended_us")) / 1000.0;
        assert!(
            (20.0..250.0).contains(&at_ms),
            "abandoned after {at_ms} ms: {r}"
        );
    }
    // The endpoint stopped generating for each at its next token: at most ~10 of its 20 tokens
    // each (the probe's 20 and the 30 whole answers' 600 besides).
    let generated = mock.generated_tokens();
    assert!(
        generated <= 620.0 + 10.0 * 12.0,
        "{generated} tokens generated"
    );
    assert!(generated >= 620.0, "{generated} tokens generated");
}

#[test]
fn an_abandoned_turn_ends_its_session() {
    let _g = serial();
    let mock = mock();
    let tmp = TempDir::new("cancel-sessions");
    let flags = [
        "--qps",
        "12",
        "--duration",
        "2",
        "--session-turns",
        "3",
        "--turn-input-len",
        "10",
        "--cancel-rate",
        "50",
        "--cancel-after-ms",
        "50",
    ];
    let run = qpsbench(&args(&mock.url, &flags), tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    let s = &l["sessions"];
    // 8 sessions, 4 of whose first turns are abandoned; later turns with probability 1/2.
    assert_eq!(s["sessions_started"], 8, "{s}");
    let by_cancel = s["sessions_ended_by_cancel"].as_u64().unwrap();
    assert!(by_cancel >= 4, "{s}");
    assert_eq!(
        s["sessions_completed"].as_u64().unwrap() + by_cancel,
        8,
        "{s}"
    );
    assert_eq!(l["failed_requests"], 0, "{l}");
    assert_eq!(l["total_requests"], s["turns_sent"], "{l}");
    // No turn follows an abandoned one in its session.
    let records = run.records();
    for r in records.iter().filter(|r| r["cancelled"] == true) {
        let later = records
            .iter()
            .any(|o| o["session"] == r["session"] && o["turn"].as_u64() > r["turn"].as_u64());
        assert!(!later, "a turn after an abandoned one: {r}");
    }
}

#[test]
fn cancel_flags_that_cannot_hold_are_refused() {
    let tmp = TempDir::new("cancel-refused");
    let url = "http://127.0.0.1:9/v1/chat/completions";
    for (extra, want) in [
        (
            vec!["--cancel-rate", "150", "--cancel-after-ms", "10"],
            "--cancel-rate 150",
        ),
        (vec!["--cancel-rate", "10"], "add --cancel-after-ms"),
        (
            vec!["--cancel-rate", "10", "--cancel-after-ms", "200-20"],
            "--cancel-after-ms 200-20",
        ),
        (
            vec!["--cancel-after-ms", "10"],
            "applies with --cancel-rate",
        ),
    ] {
        let mut a = args(url, &["--qps", "1", "--duration", "1"]);
        a.extend(extra);
        let run = qpsbench(&a, tmp.path());
        assert_eq!(run.code(), 2, "{want}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{want}: {}", run.stderr);
    }
}
