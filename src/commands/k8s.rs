//! `qpsbench k8s-manifest`: the Kubernetes recipe for a sharded run, printed as YAML — a
//! ReadWriteMany volume claim for the results, an Indexed Job whose pod K is shard K (`--shard
//! auto` reads `JOB_COMPLETION_INDEX`) with every shard starting at one `--start-at`, and the
//! merge Job, created suspended and resumed once the shards' Job is complete (the two `kubectl
//! wait` steps the header comment gives). The API key comes from a Secret, never a flag.
//!
//! The benchmark flags are checked here as the benchmark would parse them, so a typo fails now
//! and not in N pods later. The YAML is written by hand (every string as a JSON string, which
//! YAML reads as a double-quoted scalar) to keep a YAML crate out of the binary.

use std::fmt::Write as _;

use clap::Parser;
use serde_json::json;

use crate::cli::{Cli, K8sManifestArgs};
use crate::foundation::clock::unix_now_s;
use crate::foundation::error::{Result, UserError};

/// The image's non-root user (the Dockerfile's `qpsbench`), who must be able to write the
/// results volume.
const USER_ID: u32 = 10001;

/// Flags the manifests set themselves; given after `--` they would fight them.
const SET_HERE: [&str; 8] = [
    "--api-key",
    "--progress",
    "--shard",
    "--shards",
    "--start-at",
    "--start-in",
    "--results-dir",
    "--cores",
];

pub fn run(args: K8sManifestArgs) -> Result<i32> {
    check(&args)?;
    warn_about_local_dataset(&args.bench);
    let start_at = (unix_now_s() + args.start_in).ceil() as u64;
    crate::out!("{}", render(&args, start_at));
    Ok(0)
}

/// A `--dataset` that names a file on this machine is not in the pods: it must be in the image
/// or on a volume at that path. Said on stderr, so the manifests on stdout stay clean.
fn warn_about_local_dataset(bench: &[String]) {
    let path = bench.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--dataset=")
            .map(str::to_string)
            .or_else(|| {
                (a == "--dataset")
                    .then(|| bench.get(i + 1).cloned())
                    .flatten()
            })
    });
    if let Some(p) = path {
        if std::path::Path::new(&p).exists() {
            eprintln!(
                "warning: --dataset {p} is a file on this machine; the pods read it at that path inside their container: build it into the image (the Dockerfile's COPY) or mount it there"
            );
        }
    }
}

/// Every input checked, with the flag it came from.
fn check(a: &K8sManifestArgs) -> Result<()> {
    if a.shards == 0 || a.shards > 10_000 {
        return Err(UserError::input(format!(
            "--shards {}: expected 1 to 10000 shards",
            a.shards
        )));
    }
    crate::foundation::flag_ranges::check(
        "--start-in",
        a.start_in,
        crate::foundation::flag_ranges::Low::From(0.0),
        crate::foundation::flag_ranges::MAX_SECONDS,
        "a number of seconds",
    )?;
    let dns_label = |s: &str| {
        !s.is_empty()
            && s.len() <= 40
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !dns_label(&a.name) {
        return Err(UserError::input(format!(
            "--name {:?}: expected a DNS label of at most 40 characters: lowercase letters, digits and '-'",
            a.name
        )));
    }
    if !dns_label(&a.api_key_secret) {
        return Err(UserError::input(format!(
            "--api-key-secret {:?}: expected a Secret's name: lowercase letters, digits and '-'",
            a.api_key_secret
        )));
    }
    if a.image.trim().is_empty() || a.image.contains(char::is_whitespace) {
        return Err(UserError::input(format!(
            "--image {:?}: expected an image reference such as registry.example.com/qpsbench:1.0",
            a.image
        )));
    }
    if a.cores == 0 || a.cores > 1024 {
        return Err(UserError::input(format!(
            "--cores {}: expected 1 to 1024",
            a.cores
        )));
    }
    check_bench_flags(&a.bench)
}

/// The benchmark flags after `--`: none the manifests set, and all of them what the benchmark
/// accepts.
fn check_bench_flags(bench: &[String]) -> Result<()> {
    if bench.is_empty() {
        return Err(UserError::input(
            "no benchmark flags: give them after `--`, e.g. -- --endpoint URL --model M --qps 10,20",
        ));
    }
    if let Some(f) = bench
        .iter()
        .find(|f| SET_HERE.contains(&f.split('=').next().unwrap_or(f)))
    {
        return Err(UserError::input(format!(
            "{f} after `--`: the manifests set it (the key comes from the Secret, the shard from the pod's index, the start from --start-in, the results go to the volume claim)"
        )));
    }
    let cli =
        Cli::try_parse_from(std::iter::once("qpsbench").chain(bench.iter().map(String::as_str)))
            .map_err(|e| {
                UserError::input(format!("the benchmark flags after `--`: {}", e.render()))
            })?;
    if cli.command.is_some() {
        return Err(UserError::input(
            "the flags after `--` are the benchmark's, not another command's",
        ));
    }
    if cli
        .bench
        .qps
        .iter()
        .any(|q| q.trim().eq_ignore_ascii_case("auto"))
    {
        return Err(UserError::input(
            "--qps auto: a capacity search cannot be split across shards; give the levels (--qps 10,20,40)",
        ));
    }
    Ok(())
}

/// A string as a YAML scalar.
fn q(s: &str) -> String {
    json!(s).to_string()
}

/// The manifests, with the first level at `start_at` (Unix seconds).
pub fn render(a: &K8sManifestArgs, start_at: u64) -> String {
    let mut y = String::new();
    header(&mut y, a, start_at);
    volume_claim(&mut y, a);
    y.push_str("---\n");
    shards_job(&mut y, a, start_at);
    y.push_str("---\n");
    merge_job(&mut y, a);
    y
}

fn header(y: &mut String, a: &K8sManifestArgs, start_at: u64) {
    let n = &a.name;
    let _ = writeln!(
        y,
        "# qpsbench on Kubernetes: {} shards of one schedule and their merge.\n\
         # The first level starts at {start_at} (Unix seconds): apply these before then.\n\
         #\n\
         #   kubectl create secret generic {secret} --from-literal=api-key=\"$OPENAI_API_KEY\"\n\
         #   kubectl apply -f this.yaml\n\
         #   kubectl wait --for=condition=complete job/{n}-shards --timeout=24h\n\
         #   kubectl patch job/{n}-merge --type=merge -p '{{\"spec\":{{\"suspend\":false}}}}'\n\
         #   kubectl wait --for=condition=complete job/{n}-merge --timeout=1h\n\
         #\n\
         # The merged run lands in /results/merged/ on the volume claim {n}-results; each shard's\n\
         # own run in /results/shard-K/. A client-limited shard (exit 3) still completes: its\n\
         # results are kept for the merge, which names it.",
        a.shards,
        secret = a.api_key_secret,
    );
}

fn labels(y: &mut String, a: &K8sManifestArgs, indent: &str, component: &str) {
    let _ = writeln!(
        y,
        "{indent}labels:\n{indent}  app.kubernetes.io/name: qpsbench\n{indent}  app.kubernetes.io/instance: {}\n{indent}  app.kubernetes.io/component: {component}",
        q(&a.name)
    );
}

fn volume_claim(y: &mut String, a: &K8sManifestArgs) {
    let _ = writeln!(
        y,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {}",
        q(&format!("{}-results", a.name))
    );
    labels(y, a, "  ", "results");
    let _ = writeln!(
        y,
        "spec:\n  accessModes:\n    - ReadWriteMany\n  resources:\n    requests:\n      storage: {}",
        q(&a.storage)
    );
}

/// The shell each shard runs: qpsbench with the benchmark flags and its shard, and a
/// client-limited exit (3) turned into completion, since its results are still to be merged.
fn shard_script(a: &K8sManifestArgs, start_at: u64) -> String {
    format!(
        "qpsbench \"$@\" --shard auto --shards {} --start-at {start_at} --cores {} --progress never --results-dir \"/results/shard-$JOB_COMPLETION_INDEX\"; rc=$?; if [ \"$rc\" -eq 3 ]; then echo 'qpsbench: this shard was client-limited; its results are kept for the merge'; exit 0; fi; exit \"$rc\"",
        a.shards, a.cores
    )
}

/// A Job up to its pod's containers: its name (`NAME-shards`, `NAME-merge`), its labels, the
/// lines of its `spec` particular to it, no retries, and a non-root pod that never restarts.
fn job_opening(y: &mut String, a: &K8sManifestArgs, component: &str, spec: &str) {
    let name = match component {
        "shard" => format!("{}-shards", a.name),
        _ => format!("{}-{component}", a.name),
    };
    let _ = writeln!(
        y,
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {}",
        q(&name)
    );
    labels(y, a, "  ", component);
    let _ = writeln!(
        y,
        "spec:\n{spec}\n  backoffLimit: 0\n  template:\n    metadata:"
    );
    labels(y, a, "      ", component);
    let _ = writeln!(
        y,
        "    spec:\n      restartPolicy: Never\n      securityContext:\n        runAsNonRoot: true\n        runAsUser: {USER_ID}\n        runAsGroup: {USER_ID}\n        fsGroup: {USER_ID}"
    );
}

fn results_volume(y: &mut String, a: &K8sManifestArgs) {
    let _ = writeln!(
        y,
        "      volumes:\n        - name: results\n          persistentVolumeClaim:\n            claimName: {}",
        q(&format!("{}-results", a.name))
    );
}

fn shards_job(y: &mut String, a: &K8sManifestArgs, start_at: u64) {
    let spec = format!(
        "  completionMode: Indexed\n  completions: {n}\n  parallelism: {n}\n  # A retried shard would start late and miss levels: no retries.",
        n = a.shards
    );
    job_opening(y, a, "shard", &spec);
    // Shards on different nodes where the cluster has them: the point is more than one box.
    let _ = writeln!(
        y,
        "      affinity:\n        podAntiAffinity:\n          preferredDuringSchedulingIgnoredDuringExecution:\n            - weight: 100\n              podAffinityTerm:\n                topologyKey: kubernetes.io/hostname\n                labelSelector:\n                  matchLabels:\n                    app.kubernetes.io/instance: {}\n                    app.kubernetes.io/component: shard",
        q(&a.name)
    );
    let _ = writeln!(
        y,
        "      containers:\n        - name: qpsbench\n          image: {}\n          command: [\"/bin/sh\", \"-c\", {}, \"qpsbench\"]\n          args:",
        q(&a.image),
        q(&shard_script(a, start_at))
    );
    for arg in &a.bench {
        let _ = writeln!(y, "            - {}", q(arg));
    }
    let _ = writeln!(
        y,
        "          env:\n            - name: QPSBENCH_API_KEY\n              valueFrom:\n                secretKeyRef:\n                  name: {}\n                  key: api-key\n          resources:\n            requests:\n              cpu: {}\n          volumeMounts:\n            - name: results\n              mountPath: /results",
        q(&a.api_key_secret),
        q(&a.cores.to_string())
    );
    results_volume(y, a);
}

fn merge_job(y: &mut String, a: &K8sManifestArgs) {
    let spec = format!(
        "  # Resumed (kubectl patch) once job/{}-shards is complete.\n  suspend: true",
        a.name
    );
    job_opening(y, a, "merge", &spec);
    let _ = writeln!(
        y,
        "      containers:\n        - name: merge\n          image: {}\n          command: [\"/bin/sh\", \"-c\", {}]\n          volumeMounts:\n            - name: results\n              mountPath: /results",
        q(&a.image),
        q("exec qpsbench merge /results/shard-*/*/ --results-dir /results/merged --plot")
    );
    results_volume(y, a);
}
