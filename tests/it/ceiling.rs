//! `qpsbench selftest --ceiling` end to end: the built-in endpoint and the client on their own
//! CPUs, every setup searched, `selftest.json` written with both ceilings, their criteria, each
//! rate's figures on both sides and the bare floor. Figures are checked for shape and
//! consistency only (a loaded CI machine moves the ceilings themselves).

use crate::common::*;

#[test]
fn the_ceiling_searches_every_setup_and_writes_both_sides_figures() {
    let tmp = TempDir::new("ceiling");
    let run = qpsbench(&["selftest", "--ceiling", "--duration", "0.3"], tmp.path());
    if core_affinity_count() < 2 {
        assert_eq!(run.code(), 2, "{}", run.stderr);
        assert!(run.stderr.contains("two CPUs"), "{}", run.stderr);
        return;
    }
    assert_eq!(run.code(), 0, "{}", run.stderr);
    for title in [
        "CEILING, 1 token(s) per chunk, plain TCP",
        "CEILING, 16 token(s) per chunk, plain TCP",
        "CEILING, 1 token(s) per chunk, TLS",
    ] {
        assert!(run.stdout.contains(title), "{}", run.stdout);
    }
    let dir = run.dir.clone().expect("a results folder");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("selftest.json")).unwrap()).unwrap();
    for k in ["ceiling_qps_per_core", "endpoint_chunks_per_sec_per_core"] {
        assert!(json.get(k).is_some(), "{k}: {json}");
    }
    assert_eq!(json["criteria"]["output_tokens"], 32);
    assert_eq!(json["machine_stalls"].as_array().unwrap().len(), 2);
    let setups = json["setups"].as_array().unwrap();
    let shape: Vec<(u64, bool, u64)> = setups
        .iter()
        .map(|s| {
            (
                s["tokens_per_chunk"].as_u64().unwrap(),
                s["tls"].as_bool().unwrap(),
                s["chunks_per_request"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(shape, [(1, false, 32), (16, false, 2), (1, true, 32)]);
    for s in setups {
        check_setup(s);
    }
    // The headline figures are the first setup's.
    assert_eq!(
        json["ceiling_qps_per_core"],
        setups[0]["ceiling_qps_per_core"]
    );
}

/// One setup: its probes are consistent, its ceilings come from its probes, the floor ran
/// where the endpoint kept its schedule over plain TCP.
fn check_setup(s: &serde_json::Value) {
    let probes = s["probes"].as_array().unwrap();
    assert!(!probes.is_empty(), "{s}");
    let per_request = s["chunks_per_request"].as_f64().unwrap();
    for p in probes {
        let qps = p["qps"].as_f64().unwrap();
        assert!(qps > 0.0, "{p}");
        let late = &p["endpoint_lateness_us"];
        assert!(late["chunks"].as_u64().unwrap() > 0, "{p}");
        assert!(f(late, "p50_us") <= f(late, "p99_us"), "{p}");
        // Chunks sent over the level agree with the rate asked for (generously: short levels).
        let chunks = f(p, "chunks_per_sec");
        assert!(
            chunks > 0.3 * qps * per_request && chunks < 3.0 * qps * per_request,
            "{p}"
        );
        assert!(
            p["endpoint_cpu_us_per_chunk"].as_f64().unwrap() > 0.0,
            "{p}"
        );
        assert!(
            f(p, "client_spin_s") >= 0.0 && f(p, "client_cpu_s") > 0.0,
            "{p}"
        );
        let ok = p["client_ok"].as_bool().unwrap();
        assert_eq!(
            ok,
            p["client_reasons"].as_array().unwrap().is_empty(),
            "{p}"
        );
    }
    let passed = |p: &&serde_json::Value| {
        p["client_ok"].as_bool().unwrap() && p["endpoint_on_schedule"].as_bool().unwrap()
    };
    let best = probes
        .iter()
        .filter(passed)
        .map(|p| f(p, "qps"))
        .reduce(f64::max);
    assert_eq!(s["ceiling_qps_per_core"].as_f64(), best, "{s}");
    let on_schedule = probes
        .iter()
        .any(|p| p["endpoint_on_schedule"].as_bool().unwrap());
    let tls = s["tls"].as_bool().unwrap();
    assert_eq!(s["floor"].is_object(), on_schedule && !tls, "{s}");
    if s["floor"].is_object() {
        assert!(s["floor"]["messages"].as_u64().unwrap() > 0, "{s}");
        assert!(f(&s["floor"], "sender_us_per_message") > 0.0, "{s}");
    }
    assert!(!s["verdict"].as_str().unwrap().is_empty());
}

fn core_affinity_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
