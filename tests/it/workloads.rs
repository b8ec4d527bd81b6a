//! Workloads against the built-in endpoint: synthetic prompts of given lengths with exact answer
//! lengths (`--dataset-name random`, `ignore_eos`), and a Mooncake trace replayed at its own
//! times (`--replay`, `--replay-speed`, a `--duration` cut).

use crate::common::*;

fn random_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = endpoint_args(url);
    args.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "200",
        "--random-output-len",
        "30",
        "--qps",
        "10",
        "--duration",
        "2",
        "--save-requests",
    ]);
    args.extend_from_slice(extra);
    args
}

/// The endpoint answers 8 tokens unless asked for more with ignore_eos, so only ignore_eos can
/// make every answer 30 tokens long; the prompts are ~200 tokens as the server counts them.
#[test]
fn random_prompts_get_exactly_their_answer_length_with_ignore_eos() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "8"]);
    let tmp = TempDir::new("random");
    let run = qpsbench(&random_args(&mock.url, &[]), tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let recs = run.records();
    assert_eq!(recs.len(), 20);
    for r in &recs {
        assert_eq!(r["output_tokens"], 30, "{r}");
        let p = r["prompt_tokens"].as_u64().unwrap();
        assert!((150..=250).contains(&p), "{r}");
    }
    let l = &run.levels()[0];
    let p50 = l["prompt_tokens"]["p50"].as_f64().unwrap();
    assert!((150.0..=250.0).contains(&p50), "prompt_tokens p50 {p50}");
    assert_eq!(l["output_tokens"]["p99"], 30.0, "{l}");
    let m = run.metadata();
    assert_eq!(m["dataset_name"], "random");
    assert_eq!(m["dataset_params"]["random_input_len"], 200);
    // No pool unless asked: every prompt drawn anew.
    assert_eq!(
        m["dataset_params"]["random_pool_size"],
        serde_json::Value::Null
    );
    let samples: std::collections::HashSet<_> = recs.iter().map(|r| r["sample"].clone()).collect();
    assert_eq!(samples.len(), 20, "each request its own prompt");
    assert!(
        m["ignore_eos"].as_str().unwrap().starts_with("requested"),
        "{m}"
    );

    // Without ignore_eos the endpoint stops where it likes (8 tokens).
    let run = qpsbench(&random_args(&mock.url, &["--no-ignore-eos"]), tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(run.records().iter().all(|r| r["output_tokens"] == 8));
    assert_eq!(run.metadata()["ignore_eos"], "off");
}

/// 50 rows 100 ms apart, as a trace file of the Mooncake format.
fn trace(tmp: &TempDir) -> std::path::PathBuf {
    let mut rows = String::new();
    for i in 0..50 {
        rows.push_str(&format!(
            "{{\"timestamp\": {}, \"input_length\": {}, \"output_length\": 4, \"hash_ids\": [7, {}]}}\n",
            i * 100,
            300 + i,
            1000 + i
        ));
    }
    tmp.file("trace.jsonl", &rows)
}

/// The intended send times of a replay are the trace's times ÷ the speed, within 1 ms, and the
/// level's JSON says what was replayed.
#[test]
fn a_trace_is_replayed_at_its_times_and_speed() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("replay");
    let file = trace(&tmp);
    for (speed, factor) in [("1", 1.0), ("2", 0.5)] {
        let mut args = base_args(&mock.url, file.to_str().unwrap());
        args.extend(["--replay", "--replay-speed", speed, "--save-requests"]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let recs = run.records();
        assert_eq!(recs.len(), 50);
        for r in &recs {
            let row = r["trace_row"].as_f64().unwrap();
            let want_us = (row - 1.0) * 100_000.0 * factor;
            let got = r["intended_us"].as_f64().unwrap();
            assert!((got - want_us).abs() <= 1000.0, "{r}: want {want_us} µs");
        }
        let l = &run.levels()[0];
        assert_eq!(l["replay"]["rows"], 50);
        assert_eq!(l["replay"]["span_s"], 4.9 * factor);
        assert_eq!(l["total_requests"], 50);
        assert!(
            (f(l, "qps_target") - 50.0 / (4.9 * factor)).abs() < 1e-6,
            "{l}"
        );
        assert_eq!(run.metadata()["dataset_name"], "mooncake");
        assert!(run.metadata()["ignore_eos"]
            .as_str()
            .unwrap()
            .starts_with("requested"));
    }
    // A shorter --duration cuts the trace, and says so.
    let mut args = base_args(&mock.url, file.to_str().unwrap());
    args.extend(["--replay", "--duration", "1"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cuts the replay: 11 of the trace's 50 rows"),
        "{}",
        run.stderr
    );
    assert_eq!(run.levels()[0]["total_requests"], 11);
}

#[test]
fn bad_traces_and_misused_flags_exit_2_naming_the_problem() {
    let tmp = TempDir::new("bad-trace");
    let url = "http://127.0.0.1:9/v1/chat/completions";
    let cases: [(&str, &[&str], &str); 5] = [
        (
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": \"many\", \"output_length\": 1}\n",
            &[],
            "line 2: \"input_length\" must be a whole number",
        ),
        (
            "{\"timestamp\": 5, \"input_length\": 5, \"output_length\": 1}\n{\"timestamp\": 1, \"input_length\": 5, \"output_length\": 1}\n",
            &["--replay"],
            "line 2: timestamp 1 is before",
        ),
        (
            "{\"input_length\": 5, \"output_length\": 1}\n",
            &["--replay"],
            "line 1 has neither",
        ),
        (
            "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1}\n",
            &["--replay"],
            "spans 0 ms",
        ),
        (
            "[{\"prompt_content\": \"p\", \"cut_chat_history\": [{\"role\": \"user\", \"content\": \"q\"}]}]",
            &["--replay"],
            "--replay needs a trace",
        ),
    ];
    for (i, (text, extra, want)) in cases.iter().enumerate() {
        let ext = if text.starts_with('[') {
            "json"
        } else {
            "jsonl"
        };
        let file = tmp.file(&format!("t{i}.{ext}"), text);
        let mut args = base_args(url, file.to_str().unwrap());
        args.extend_from_slice(extra);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 2, "{want}: {}", run.stderr);
        assert!(run.stderr.contains(want), "want {want:?} in {}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
        assert!(run.dir.is_none(), "no results folder for bad input");
    }
    // Without --dataset, only random runs; the others keep the spec format's message.
    let run = qpsbench(
        &["--endpoint", url, "--api-key", "k", "--model", "m"],
        tmp.path(),
    );
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr.contains("Missing --dataset argument"),
        "{}",
        run.stderr
    );
}
