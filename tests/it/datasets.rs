//! Big inputs and unwritable outputs: a 100,000-sample dataset and 10 MB prompts run with
//! bounded memory; an unwritable results folder is refused before the first request.

use crate::common::*;

#[test]
fn a_100k_sample_dataset_and_10_mb_prompts_run_in_bounded_memory() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("big");
    // 100,000 short conversations.
    let mut many = String::from("[");
    for i in 0..100_000 {
        if i > 0 {
            many.push(',');
        }
        many.push_str(&format!(
            r#"{{"prompt_content":"You are assistant {i}.","cut_chat_history":[{{"role":"user","content":"Question {i}?"}}]}}"#
        ));
    }
    many.push(']');
    let many = tmp.file("many.json", &many);
    // Two conversations with 10 MB prompts.
    let big = "lorem ipsum ".repeat(10 * 1024 * 1024 / 12);
    let huge = tmp.file(
        "huge.json",
        &format!(
            r#"[{{"prompt_content":"{big}","cut_chat_history":[{{"role":"user","content":"sum up"}}]}},{{"prompt_content":"short","cut_chat_history":[{{"role":"user","content":"{big}"}}]}}]"#
        ),
    );
    for (ds, qps) in [(&many, "50"), (&huge, "4")] {
        let mut args = base_args(&mock.url, ds.to_str().unwrap());
        args.extend(["--qps", qps, "--duration", "1", "--continuous-usage", "off"]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(f(l, "success_rate"), 100.0, "{l}");
        // Input tokens reported by the endpoint, which counts words: each 10 MB prompt holds
        // 1.75 M of them, and the endpoint saw them all.
        if qps == "4" {
            assert!(f(l, "prompt_tokens_total") > 4.0 * 1_740_000.0, "{l}");
        }
    }
    let rss = children_max_rss_mib();
    assert!(rss < 1536.0, "peak RSS {rss:.0} MiB");
}

#[test]
fn an_unwritable_results_folder_is_refused_before_the_run() {
    let tmp = TempDir::new("unwritable");
    let ds = tmp.file("d.json", DATASET);
    // A file where the results folder should be: nothing can be created under it (this holds
    // even for root, unlike a read-only mode).
    let blocker = tmp.file("not-a-dir", "x");
    let results = blocker.join("results");
    let mut args = base_args(
        "http://127.0.0.1:9/v1/chat/completions",
        ds.to_str().unwrap(),
    );
    let r = results.to_str().unwrap().to_string();
    args.extend(["--qps", "1", "--duration", "1"]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"))
        .args(&args)
        .args(["--results-dir", &r])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot create results folder"), "{stderr}");
    assert!(stderr.contains("not-a-dir"), "{stderr}");
    // Refused before the first level started.
    assert!(!stderr.contains("[1/1]"), "{stderr}");
}

/// ShareGPT and JSONL files, detected from their contents or named with --dataset-name: good
/// ones run (a line's own `max_tokens` caps its answer), bad ones stop before the run with the
/// file, the line and the field named.
#[test]
fn sharegpt_and_jsonl_datasets_run_and_bad_ones_name_the_line() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "20"]);
    let tmp = TempDir::new("formats");
    let sharegpt = tmp.file(
        "sg.json",
        r#"[{"conversations":[{"from":"human","value":"hi"},{"from":"gpt","value":"hello"},{"from":"human","value":"bye"}]},
            {"conversations":[{"from":"gpt","value":"no question"}]}]"#,
    );
    let jsonl = tmp.file(
        "d.jsonl",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":3}\n{\"prompt\":\"Once upon a time\",\"max_tokens\":3}\n",
    );
    for (file, name, skipped) in [(&sharegpt, "sharegpt", 1), (&jsonl, "jsonl", 0)] {
        let mut args = base_args(&mock.url, file.to_str().unwrap());
        args.extend(["--qps", "4", "--duration", "1", "--continuous-usage", "off"]);
        let run = qpsbench(&args, tmp.path());
        assert_eq!(run.code(), 0, "{name}: {}", run.stderr);
        let l = &run.levels()[0];
        assert_eq!(f(l, "success_rate"), 100.0, "{name}: {l}");
        let meta = run.metadata();
        assert_eq!(meta["dataset_name"], name);
        assert_eq!(meta["dataset_skipped"], skipped);
        if name == "jsonl" {
            assert_eq!(f(l, "output_tokens_total"), 4.0 * 3.0, "{l}");
        }
    }
    let bad = tmp.file("bad.jsonl", "{\"prompt\":\"ok\"}\n{\"prompt\":7}\n");
    let mut args = base_args(&mock.url, bad.to_str().unwrap());
    args.extend(["--dataset-name", "jsonl"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("bad.jsonl' (jsonl): line 2: \"prompt\" must be a string"),
        "{}",
        run.stderr
    );
    assert!(
        run.dir.is_none(),
        "no results folder for a run that never started"
    );
}
