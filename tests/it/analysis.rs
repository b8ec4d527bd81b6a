//! The saturation analysis (`summary.json` and the console block) against the built-in endpoint
//! with a known capacity.

use crate::common::*;

fn summary(run: &Run) -> serde_json::Value {
    let p = run.dir.as_ref().unwrap().join("summary.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The built-in endpoint with a known capacity: ~0.19 s per request (100 ms to the first of 10
/// tokens, 10 ms apart) and HTTP 503 beyond 4 in flight, so ≈ 4 ÷ 0.2 s = 20 QPS.
fn capacity_mock() -> Mock {
    Mock::start(&[
        "--ttft-ms",
        "100",
        "--itl-ms",
        "10",
        "--output-tokens",
        "10",
        "--max-concurrency",
        "4",
    ])
}

#[test]
fn summary_finds_the_limit_of_an_endpoint_with_a_known_capacity() {
    let _g = serial();
    // ~0.19 s per request and 503 beyond 4 in flight: ~20 QPS of capacity. Constant arrivals keep
    // 5 and 10 QPS (1–2 in flight) clear of it and put 60 QPS (~11 in flight) far past it.
    let mock = capacity_mock();
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
    let mut with_plot = args.clone();
    with_plot.push("--plot");
    let run = qpsbench(&with_plot, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    assert_eq!(s["max_qps_without_503"], 10.0, "{s}");
    assert_eq!(s["saturation_qps"], 60.0, "{s}");
    assert_eq!(s["optimal_qps"], 10.0, "{s}");
    assert_eq!(s["recommended_limit_qps"], 7.5, "{s}");
    assert!(s["reasons"]["saturation_qps"]
        .as_str()
        .unwrap()
        .contains("QPS 60.0: success"));
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
    let png = run.dir.as_ref().unwrap().join("benchmark_qps.png");
    assert!(run.stdout.contains("benchmark_qps.png"), "{}", run.stdout);
    let img = image::open(&png).expect("the PNG decodes");
    assert_eq!((img.width(), img.height()), (3200, 1200));
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

#[test]
fn plot_re_renders_a_saved_folder_and_refuses_other_folders() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "4"]);
    let tmp = TempDir::new("replot");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend(["--qps", "5,10", "--duration", "1"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let dir = run.dir.clone().unwrap();
    assert!(!dir.join("benchmark_qps.png").exists());
    let before = std::fs::read(dir.join("benchmark_qps_results.json")).unwrap();
    // Re-rendered with a TTFT SLO no level meets: the summary changes, the results do not.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"))
        .args(["plot", dir.to_str().unwrap(), "--slo-ttft", "0.001"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SUMMARY AND RECOMMENDATIONS"), "{stdout}");
    let img = image::open(dir.join("benchmark_qps.png")).expect("the PNG decodes");
    assert_eq!((img.width(), img.height()), (3200, 1200));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert!(s["optimal_qps"].is_null(), "{s}");
    assert_eq!(
        std::fs::read(dir.join("benchmark_qps_results.json")).unwrap(),
        before
    );

    // compare: a second run with other levels, matched by target QPS.
    let mut args2 = base_args(&mock.url, ds.to_str().unwrap());
    args2.extend(["--qps", "10,20", "--duration", "1"]);
    let run2 = qpsbench(&args2, tmp.path());
    assert_eq!(run2.code(), 0, "{}", run2.stderr);
    let dir2 = run2.dir.clone().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"))
        .args(["compare", dir.to_str().unwrap(), dir2.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("QPS 5.0\n  only in A"), "{stdout}");
    assert!(stdout.contains("QPS 20.0\n  only in B"), "{stdout}");
    let ten = stdout.split("QPS 10.0\n").nth(1).unwrap();
    assert!(
        ten.contains("TTFT P50 (s)") && ten.contains("B − A"),
        "{stdout}"
    );
    assert!(stdout.contains("Optimal QPS"), "{stdout}");

    // Not a results folder, and not a folder at all: exit 2 with the reason.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    for (cmd, path, want) in [
        ("plot", empty.clone(), "is not a qpsbench results folder"),
        ("plot", tmp.path().join("missing"), "not a folder"),
        ("compare", empty.clone(), "is not a qpsbench results folder"),
    ] {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_qpsbench"));
        c.args([cmd, path.to_str().unwrap()]);
        if cmd == "compare" {
            c.arg(dir.to_str().unwrap());
        }
        let out = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(!stderr.contains("panicked"));
    }
}

#[test]
fn qps_auto_brackets_a_known_capacity() {
    let _g = serial();
    // ~0.2 s per request and 503 beyond 4 in flight: capacity ≈ 4 ÷ 0.2 s = 20 QPS.
    let mock = capacity_mock();
    let tmp = TempDir::new("auto");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "auto",
        "--auto-start",
        "2",
        "--duration",
        "1.5",
        "--arrival",
        "constant",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let s = summary(&run);
    let b = s["auto_bracket"].as_array().expect("a bracket").clone();
    let (lo, hi) = (b[0].as_f64().unwrap(), b[1].as_f64().unwrap());
    // A level the client could not drive (a loaded machine) is left out, and the bracket cannot
    // narrow past it: the tolerance is then one bisection step wider.
    let limited = s["client_limited_levels"]
        .as_array()
        .is_some_and(|l| !l.is_empty());
    let tolerance = if limited { 0.2 } else { 0.1 };
    assert!(lo < hi && (hi - lo) / lo <= tolerance + 1e-9, "{s}");
    assert!(
        lo <= 24.0 && hi >= 16.0,
        "bracket [{lo}, {hi}] misses ~20 QPS: {s}"
    );
    // Every probed level is a normal level: the doubling 2, 4, 8, 16, 32 and then the bisection.
    let levels = run.levels();
    let targets: Vec<f64> = levels.iter().map(|l| f(l, "qps_target")).collect();
    assert_eq!(&targets[..4], &[2.0, 4.0, 8.0, 16.0], "{targets:?}");
    assert!(
        targets.contains(&lo) && targets.contains(&hi),
        "{targets:?}"
    );
    assert_eq!(run.metadata()["qps_levels"], "auto");
    assert!(
        run.stderr.contains("auto: capacity between"),
        "{}",
        run.stderr
    );
}

#[test]
fn qps_auto_stops_at_a_client_limited_level() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("auto-limited");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    // A send-lag threshold of 1 ns (and no share rule) flags every level as client-limited: the
    // search must stop at the first one instead of reading it as the endpoint's limit.
    set_arg(&mut args, "--max-send-lag-ms", "0.000001");
    set_arg(&mut args, "--max-send-lag-share", "0");
    args.extend(["--qps", "auto", "--auto-start", "10", "--duration", "1"]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("auto: QPS 10.0 is client-limited")
            && run.stderr.contains("stopping the search"),
        "{}",
        run.stderr
    );
    assert_eq!(run.levels().len(), 1);
    let s = summary(&run);
    assert!(
        s.get("auto_bracket").is_none() && s["saturation_qps"].is_null(),
        "{s}"
    );
}
