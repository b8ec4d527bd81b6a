//! The saturation analysis (`summary.json` and the console block) against the built-in endpoint
//! with a known capacity.

mod common;

use common::*;

fn summary(run: &Run) -> serde_json::Value {
    let p = run.dir.as_ref().unwrap().join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn summary_finds_the_limit_of_an_endpoint_with_a_known_capacity() {
    let _g = serial();
    // ~0.19 s per request and 503 beyond 4 in flight: ~20 QPS of capacity. Constant arrivals keep
    // 5 and 10 QPS (1–2 in flight) clear of it and put 60 QPS (~11 in flight) far past it.
    let mock = Mock::start(&[
        "--ttft-ms",
        "100",
        "--itl-ms",
        "10",
        "--output-tokens",
        "10",
        "--max-concurrency",
        "4",
    ]);
    let tmp = TempDir::new("summary");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "5,10,60",
        "--duration",
        "1.5",
        "--arrival",
        "constant",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    assert_eq!(s["max_qps_without_503"], 10.0, "{s}");
    assert_eq!(s["saturation_qps"], 60.0, "{s}");
    assert_eq!(s["optimal_qps"], 10.0, "{s}");
    assert_eq!(s["recommended_limit_qps"], 7.5, "{s}");
    assert!(s["reasons"]["saturation_qps"]
        .as_str()
        .unwrap()
        .contains("QPS 60: success"));
    assert!(
        run.stdout.contains("SUMMARY AND RECOMMENDATIONS"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Recommended production limit  7.5 QPS"),
        "{}",
        run.stdout
    );
    // Goodput without SLOs is every successful request.
    for l in run.levels() {
        assert_eq!(f(&l, "goodput_qps"), f(&l, "throughput_qps"));
    }

    // A TTFT SLO of 50 ms that no level meets (TTFT is ~100 ms): no optimal level, no goodput.
    let mut strict = args.clone();
    strict.extend(["--slo-ttft", "0.05"]);
    let run = qpsbench(&strict, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    assert!(
        s["optimal_qps"].is_null() && s["recommended_limit_qps"].is_null(),
        "{s}"
    );
    assert!(s["reasons"]["optimal_qps"]
        .as_str()
        .unwrap()
        .contains("SLO"));
    assert_eq!(f(&run.levels()[0], "goodput_qps"), 0.0);
    assert_eq!(run.metadata()["slo_ttft_s"], 0.05);
}
