//! The Slurm recipe, run for real: a single-node cluster (`deploy/slurm/single-node.sh`: munged,
//! slurmctld and slurmd on this machine), the array job of 4 one-core shards against the
//! built-in endpoint submitted with `deploy/slurm/submit.sh`, the merge job after it, and the
//! merged run checked against what one process would have measured.
//!
//! Needs root and the Debian packages slurm-wlm and munge. Without them the test says SKIPPED,
//! except where `QPSBENCH_REQUIRE_SLURM=1` (CI), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/slurm");

/// Why Slurm cannot run here, if it cannot.
fn missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the single-node cluster needs root".into());
    }
    ["munged", "slurmctld", "slurmd", "sbatch", "squeue"]
        .into_iter()
        .find(|bin| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|bin| format!("{bin} not found (apt-get install slurm-wlm munge)"))
}

/// The running cluster; stopped (by PID) when dropped.
struct Cluster(PathBuf);

impl Cluster {
    fn start(dir: &Path) -> Self {
        let out = Command::new(format!("{SCRIPTS}/single-node.sh"))
            .args(["start", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let cluster = Cluster(dir.to_path_buf());
        assert!(out.status.success(), "cluster did not start: {out:?}");
        cluster
    }

    fn conf(&self) -> String {
        self.0.join("slurm.conf").display().to_string()
    }

    /// Jobs of `ids` still known to the controller.
    fn queued(&self, ids: &str) -> String {
        let out = Command::new("squeue")
            .args(["-h", "-j", ids, "-o", "%i %T %r"])
            .env("SLURM_CONF", self.conf())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(format!("{SCRIPTS}/single-node.sh"))
            .args(["stop", self.0.to_str().unwrap()])
            .status();
    }
}

#[test]
fn array_job_of_four_shards_merges_to_the_single_process_expectation() {
    if let Some(why) = missing() {
        if std::env::var("QPSBENCH_REQUIRE_SLURM").as_deref() == Ok("1") {
            panic!("Slurm is required here (QPSBENCH_REQUIRE_SLURM=1) but {why}");
        }
        eprintln!("SKIPPED: Slurm array test: {why}");
        return;
    }
    let _g = serial();
    let tmp = TempDir::new("slurm");
    let cluster = Cluster::start(&tmp.path().join("cluster"));
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "6"]);
    let results = tmp.path().join("run");
    let (qps, duration): ([f64; 2], f64) = ([10.0, 20.0], 3.0);
    let submitted = Command::new(format!("{SCRIPTS}/submit.sh"))
        .args(["4", "6", results.to_str().unwrap(), "--"])
        .args(["--endpoint", &mock.url, "--model", "m"])
        .args(["--dataset-name", "random", "--random-input-len", "16"])
        .args(["--random-output-len", "6", "--continuous-usage", "off"])
        .args(["--qps", "10,20", "--duration", "3", "--cooldown", "2"])
        .args(["--max-send-lag-ms", "100", "--save-requests"])
        .env("SLURM_CONF", cluster.conf())
        .env("QPSBENCH_BIN", BIN)
        .env("QPSBENCH_API_KEY", "sk-slurm-secret")
        .output()
        .unwrap();
    assert!(submitted.status.success(), "{submitted:?}");
    let ids = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .replace(' ', ",");
    println!("submitted array and merge jobs: {ids}");
    // The run takes 6 s to start and 3 + 2 + 3 s of levels; the wait is bounded, never forever.
    let started = Instant::now();
    loop {
        let q = cluster.queued(&ids);
        if q.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "jobs still queued after 180 s: {q}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    println!(
        "array and merge jobs ended after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let merge_log = std::fs::read_dir(&results)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("qpsbench-merge-")
        })
        .expect("the merge job's output");
    let log = std::fs::read_to_string(&merge_log).unwrap();
    println!("--- {}\n{log}", merge_log.display());
    let merged: Vec<PathBuf> = std::fs::read_dir(results.join("merged"))
        .expect("a merged folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(merged.len(), 1, "{log}");
    let run = Run {
        output: submitted,
        stdout: log,
        stderr: String::new(),
        dir: Some(merged[0].clone()),
    };
    assert_eq!(run.metadata()["merged"]["shards"], 4);
    let records = run.records();
    for (i, level) in run.levels().iter().enumerate() {
        let want = (qps[i] * duration).round() as u64;
        assert_eq!(level["total_requests"], want, "{level}");
        let ttft = ttft_of_level(&records, i + 1);
        assert_eq!(ttft.len() as u64, want);
        for p in [50.0, 90.0, 99.0] {
            let (got, direct) = (f(&level["ttft"], &format!("p{p}")), percentile(&ttft, p));
            println!(
                "level {} TTFT p{p}: merged {got:.6} s, from requests.jsonl {direct:.6} s",
                i + 1
            );
            assert!((got - direct).abs() <= direct * 2e-3 + 2e-6);
        }
    }
    // The key went by the environment: nothing the jobs wrote holds it.
    for e in walk(&results) {
        let text = String::from_utf8_lossy(&std::fs::read(&e).unwrap()).into_owned();
        assert!(
            !text.contains("sk-slurm-secret"),
            "{} holds the key",
            e.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
