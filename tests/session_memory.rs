//! Open sessions hold their histories and nothing more: many sessions with long histories open at
//! once stay within the documented bound per open session (docs/workloads.md, "Sessions"). (Its
//! own test binary, so that the peak RSS of the children it measures is this run's alone.)

mod common;

use common::*;

#[test]
fn many_open_sessions_with_long_histories_stay_within_the_bound() {
    let mock = Mock::start(&["--ttft-ms", "0", "--itl-ms", "0", "--output-tokens", "64"]);
    let tmp = TempDir::new("session-memory");
    let mut args = endpoint_args(&mock.url);
    set_arg(&mut args, "--max-send-lag-ms", "100000");
    // 500 sessions over 5 s, each thinking 4 s between its 3 turns: all open at once near the
    // window's end. A first prompt of 2,000 words (~12 KB) and later messages of 1,000 (~6 KB).
    args.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "2000",
        "--random-output-len",
        "64",
        "--turn-input-len",
        "1000",
        "--session-turns",
        "3",
        "--think-time-ms",
        "4000",
        "--qps",
        "300",
        "--duration",
        "5",
        "--cores",
        "1",
        "--min-rate-ratio",
        "0.01",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let l = &run.levels()[0];
    assert_eq!(l["sessions"]["sessions_completed"], 500, "{l}");
    let last = l["per_turn"][2]["prompt_tokens"].as_f64().unwrap();
    assert!(last > 4000.0, "{l}");
    // The bound (docs/workloads.md): per open session its history once (its turns' requests
    // share it), its answer and ~4 KiB of task, ~31 KB here, 15 MiB for 500; and per client
    // core ~0.4 MB per turn bucket (8) for the per-turn histograms, with the level's merged copy.
    // The same run's client without sessions peaks at ~60 MiB (a debug build); this one at ~75.
    let rss = children_max_rss_mib();
    assert!(
        rss < 60.0 + 2.0 * 8.0 * 0.4 + 500.0 * 31.0 / 1024.0,
        "peak RSS {rss:.0} MiB"
    );
    eprintln!("peak RSS {rss:.1} MiB");
}
