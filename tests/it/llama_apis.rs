//! The APIs beside chat against a real inference engine, llama.cpp's `llama-server` (as in
//! `tests/it/llama.rs`: SKIPPED without `QPSBENCH_LLAMA_DIR` unless `QPSBENCH_REQUIRE_LLAMA=1`):
//! OpenAI's Responses and Anthropic's Messages streams with exact usage, checked against the
//! server's own counters, and embeddings from a second instance started with `--embeddings
//! --pooling mean`, whose usage is checked against the server's own tokenizer.

use crate::common::llama::*;
use crate::common::*;

/// A counter from the server's `/metrics`.
fn counter(base: &str, name: &str) -> f64 {
    let (_, text) = get(base, "/metrics").expect("llama-server /metrics");
    metric(&text, name)
}

/// Each record's prompt tokens, by its prompt number.
fn prompt_tokens(run: &Run) -> std::collections::BTreeMap<u64, u64> {
    run.records()
        .iter()
        .map(|r| {
            (
                r["sample"].as_u64().unwrap(),
                r["prompt_tokens"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn responses_and_messages_stream_exact_usage_that_the_server_counted() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-apis");
    let server = Llama::start(&dir, tmp.path(), &[]);
    let rest = [
        "--dataset-name",
        "random",
        "--random-input-len",
        "48",
        "--random-output-len",
        "8",
        "--qps",
        "1",
        "--duration",
        "4",
        "--save-requests",
    ];
    let mut runs = Vec::new();
    // The same seed sends the same prompts: the second API's are answered from the cache.
    for path in ["/v1/responses", "/v1/messages"] {
        let predicted_before = counter(&server.base, "llamacpp:tokens_predicted_total");
        let url = format!("{}{path}", server.base);
        let run = qpsbench_pinned(&args(&url, &rest), tmp.path());
        assert_eq!(
            run.code(),
            0,
            "{path}: {}\n{}",
            run.stderr,
            server.log_tail()
        );
        let l = &run.levels()[0];
        assert_eq!(f(l, "success_rate"), 100.0, "{path}: {l}");
        assert_eq!(l["token_count_source"], "usage", "{path}");
        assert_eq!(
            run.metadata()["ignore_eos"],
            "requested (probe accepted)",
            "{path}"
        );
        // llama.cpp's own count of what it generated: the level's answers, as usage reported
        // them, and the probe's (the endpoint check and the unloaded baseline), in no level.
        let predicted = counter(&server.base, "llamacpp:tokens_predicted_total") - predicted_before;
        let probes = f(&run.metadata()["baseline"], "requests");
        let probe = (predicted - f(l, "output_tokens_total")) / probes;
        let out = (f(&l["output_tokens"], "p50"), f(&l["output_tokens"], "max"));
        if path == "/v1/responses" {
            // ignore_eos holds every answer, the probe's too, to the 8 tokens asked (each).
            assert_eq!(out, (8.0, 8.0), "{path}: {l}");
            assert_eq!(probe, 8.0, "{path}: {predicted} predicted");
        } else {
            // llama.cpp's Messages endpoint accepts ignore_eos but does not apply it: answers
            // may end sooner, and the server's count is what must agree.
            assert!(out.0 >= 1.0 && out.1 <= 8.0, "{path}: {l}");
            assert!(
                (1.0..=8.0).contains(&probe),
                "{path}: {predicted} predicted, {probe} per probe request"
            );
        }
        runs.push(run);
    }
    // The Messages prompts came from the cache, reported apart from input_tokens: the prompt
    // is their sum, the same count Responses gave for the same prompts.
    let messages = &runs[1].levels()[0];
    assert!(
        f(messages, "cached_prompt_tokens_total") > 0.0,
        "{messages}"
    );
    let (responses, messages) = (prompt_tokens(&runs[0]), prompt_tokens(&runs[1]));
    assert_eq!(responses.len(), 4);
    assert_eq!(responses, messages);
    assert!(responses.values().all(|&t| t > 48), "{responses:?}");
}

#[test]
fn embeddings_usage_matches_the_servers_tokenizer() {
    let Some(dir) = llama_dir() else { return };
    let _g = serial();
    let tmp = TempDir::new("llama-embeddings");
    // The model's own pooling is refused by /v1/embeddings as not OpenAI-compatible.
    let server = Llama::start(&dir, tmp.path(), &["--embeddings", "--pooling", "mean"]);
    let texts = [
        "The river runs past the old stone bridge.",
        "A lantern glows in the harbor at night.",
        "Winter comes early to the mountain valley.",
        "The market opens when the castle bell rings.",
    ];
    let rows: String = texts
        .iter()
        .map(|t| format!("{{\"prompt\":\"{t}\"}}\n"))
        .collect();
    let data = tmp.file("texts.jsonl", &rows);
    let tokens: Vec<u64> = texts
        .iter()
        .map(|t| {
            let body = format!("{{\"content\":\"{t}\"}}");
            let (_, answer) = post(&server.base, "/tokenize", &body).expect("/tokenize");
            let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
            v["tokens"].as_array().unwrap().len() as u64
        })
        .collect();
    let url = format!("{}/v1/embeddings", server.base);
    let rest = [
        "--dataset",
        data.to_str().unwrap(),
        "--embedding-batch",
        "2",
        // The rows as they are: a marker would add tokens (and embeddings keep no cache).
        "--unique-prompts",
        "off",
        "--qps",
        "0.5,1",
        "--duration",
        "4",
        "--save-requests",
        "--plot",
    ];
    let run = qpsbench_pinned(&args(&url, &rest), tmp.path());
    assert_eq!(run.code(), 0, "{}\n{}", run.stderr, server.log_tail());
    for l in run.levels() {
        assert_eq!(f(&l, "success_rate"), 100.0, "{l}");
        assert!(l["ttft"]["p50"].is_null(), "{l}");
        assert_eq!(
            l["embeddings"]["inputs"],
            f(&l, "successful_requests") as u64 * 2
        );
    }
    // Request k sends rows 2k, 2k+1 (mod 4): its usage is their tokens, as the server counts.
    for r in run.records() {
        let first = r["sample"].as_u64().unwrap() as usize;
        let want = tokens[first % 4] + tokens[(first + 1) % 4];
        assert_eq!(r["prompt_tokens"].as_u64(), Some(want), "{r} {tokens:?}");
    }
    assert!(run.dir.as_ref().unwrap().join("benchmark_qps.png").exists());
}
