//! Replicas without a load balancer: `--endpoint` given twice spreads arrivals over two
//! built-in endpoints (round-robin: half each, as both the client's `endpoints` and the
//! servers' own token counters say; random: drawn from the seed), each level reports each
//! endpoint's requests and TTFT, and shards of such a run merge per endpoint too.

use crate::common::*;

fn args<'a>(a: &'a Mock, b: &'a Mock, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = endpoint_args(&a.url);
    v.extend(["--endpoint", &b.url]);
    v.extend([
        "--dataset-name",
        "random",
        "--random-input-len",
        "8",
        "--random-output-len",
        "4",
        "--continuous-usage",
        "off",
        "--duration",
        "2",
        "--seed",
        "3",
    ]);
    v.extend_from_slice(extra);
    v
}

#[test]
fn two_replicas_get_half_the_requests_each() {
    let _g = serial();
    let fast = Mock::start(&["--ttft-ms", "10", "--itl-ms", "1"]);
    let slow = Mock::start(&["--ttft-ms", "60", "--itl-ms", "1"]);
    let tmp = TempDir::new("replicas");
    let run = qpsbench(&args(&fast, &slow, &["--qps", "20"]), tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let level = &run.levels()[0];
    assert_eq!(level["total_requests"], 40);
    let eps = level["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 2);
    for (e, mock) in eps.iter().zip([&fast, &slow]) {
        assert_eq!(e["url"], mock.url.as_str());
        assert_eq!(e["total_requests"], 20, "{e}");
        assert_eq!(e["successful_requests"], 20, "{e}");
    }
    // Each endpoint's TTFT is its own: 10 ms and 60 ms.
    let p50 = |i: usize| f(&eps[i]["ttft"], "p50");
    assert!(p50(0) < 0.05 && p50(1) >= 0.06, "{eps:?}");
    // The servers' own counts: 20 answers of 4 tokens each (the first endpoint also answered
    // the probe sent before the run, which goes to the first endpoint only).
    let (a, b) = (fast.generated_tokens(), slow.generated_tokens());
    assert_eq!(b, 80.0);
    assert!((80.0..=80.0 + 3.0 * 4.0).contains(&a), "{a}");
    let meta = run.metadata();
    assert_eq!(meta["endpoints"].as_array().unwrap().len(), 2);
    assert_eq!(meta["endpoint_strategy"], "round-robin");

    // Random: drawn per arrival from the seed, so both get some, together all.
    let run = qpsbench(
        &args(
            &fast,
            &slow,
            &["--qps", "50", "--endpoint-strategy", "random"],
        ),
        tmp.path(),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let level = &run.levels()[0];
    let counts: Vec<u64> = level["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["total_requests"].as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 100);
    assert!(counts.iter().all(|&n| (30..=70).contains(&n)), "{counts:?}");
    assert_ne!(counts, [50, 50], "random is not round-robin");
}

#[test]
fn shards_of_a_replicated_run_merge_per_endpoint() {
    let _g = serial();
    let (a, b) = (
        Mock::start(&["--ttft-ms", "10"]),
        Mock::start(&["--ttft-ms", "10"]),
    );
    let tmp = TempDir::new("replicas-merge");
    let mut dirs = Vec::new();
    for k in ["0/2", "1/2"] {
        let run = qpsbench(
            &args(&a, &b, &["--qps", "15", "--shard", k]),
            &tmp.path().join(k.replace('/', "-")),
        );
        assert_eq!(run.code(), 0, "{}", run.stderr);
        dirs.push(run.dir.unwrap());
    }
    let mut margs = vec!["merge"];
    margs.extend(dirs.iter().map(|d| d.to_str().unwrap()));
    let merged = qpsbench(&margs, &tmp.path().join("merged"));
    assert_eq!(merged.code(), 0, "{}", merged.stderr);
    let level = &merged.levels()[0];
    assert_eq!(level["total_requests"], 30);
    // Arrival i goes to endpoint i mod 2 whichever shard sends it: 15 each.
    let eps = level["endpoints"].as_array().unwrap();
    let totals: Vec<u64> = eps
        .iter()
        .map(|e| e["total_requests"].as_u64().unwrap())
        .collect();
    assert_eq!(totals, [15, 15]);
    assert!(eps
        .iter()
        .all(|e| e["ttft"]["p99"].as_f64().unwrap() >= 0.01));
}
