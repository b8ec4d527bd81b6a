//! Reasoning measured apart, against the built-in endpoint as a reasoning model
//! (`serve-mock --reasoning-tokens`): TTFT stays the first token of any kind, TTFOT is the first
//! answer token after the reasoning, and the gap between them is the reasoning's time; the
//! reasoning tokens come from usage. Without reasoning, neither field appears.

use crate::common::*;

/// A level against the built-in endpoint with `mock_extra`; the folder lives as long as the
/// returned `TempDir`.
fn run(mock_extra: &[&str]) -> (Run, TempDir) {
    let mut margs = vec!["--ttft-ms", "20", "--itl-ms", "10", "--output-tokens", "8"];
    margs.extend_from_slice(mock_extra);
    let mock = Mock::start(&margs);
    let tmp = TempDir::new("reasoning");
    let mut args = endpoint_args(&mock.url);
    args.extend(["--dataset-name", "random", "--random-input-len", "20"]);
    args.extend(["--random-output-len", "8", "--qps", "4", "--duration", "2"]);
    args.push("--save-requests");
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    (run, tmp)
}

#[test]
fn ttfot_comes_after_the_reasoning_and_ttft_before_it() {
    let _g = serial();
    // 10 reasoning tokens 10 ms apart before an 8-token answer.
    let (run, _tmp) = run(&["--reasoning-tokens", "10"]);
    let l = &run.levels()[0];
    assert_eq!(l["reasoning_requests"], 8, "{l}");
    assert_eq!(f(&l["reasoning_tokens"], "p50"), 10.0, "{l}");
    // Usage counts the reasoning in completion_tokens, as servers do.
    assert_eq!(f(&l["output_tokens"], "p50"), 18.0, "{l}");
    let (ttft, ttfot) = (f(&l["ttft"], "p50"), f(&l["ttfot"], "p50"));
    // The gap is the reasoning: 10 tokens × 10 ms (generous bounds for a loaded machine).
    let gap = ttfot - ttft;
    assert!((0.08..0.6).contains(&gap), "TTFT {ttft} TTFOT {ttfot}");
    for r in run.records() {
        let first = f(&r, "first_token_us");
        let answer = f(&r, "first_output_token_us");
        assert!(answer - first >= 80_000.0, "{r}");
        assert_eq!(r["reasoning_tokens"], 10, "{r}");
    }
}

#[test]
fn without_reasoning_no_ttfot_is_reported() {
    let _g = serial();
    let (run, _tmp) = run(&[]);
    let l = &run.levels()[0];
    assert!(l.get("ttfot").is_none(), "{l}");
    assert!(l.get("reasoning_tokens").is_none(), "{l}");
    assert!(run
        .records()
        .iter()
        .all(|r| r.get("first_output_token_us").is_none()));
}
