//! Helpers for the integration tests: the built-in endpoint as a child process, the qpsbench
//! binary run with a private results folder, and loaders for what it wrote.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

pub mod llama;

pub const BIN: &str = env!("CARGO_BIN_EXE_qpsbench");

/// A loopback port nothing listens on (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that the run warned once, and only once, with a line starting `warning: {what}`.
pub fn assert_warned_once(run: &Run, what: &str) {
    let n = run.stderr.matches(&format!("warning: {what}")).count();
    assert_eq!(n, 1, "{}", run.stderr);
}

/// Load tests take this lock so that two of them never share the 2 cores of a CI machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `qpsbench serve-mock` on a free loopback port; killed on drop (and exits by itself after 300 s).
pub struct Mock {
    child: Child,
    pub url: String,
}

impl Mock {
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1", args)
    }

    pub fn start_on(host: &str, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args([
                "serve-mock",
                "--host",
                host,
                "--port",
                "0",
                "--exit-after",
                "300",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start serve-mock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read serve-mock address");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("serve-mock prints its URL")
            .to_string();
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "unexpected serve-mock output: {line}"
        );
        Self { child, url }
    }
}

impl Mock {
    /// `vllm:generation_tokens_total`: what the endpoint generated, by its own count.
    #[allow(dead_code)]
    pub fn generated_tokens(&self) -> f64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.authority()).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.authority()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        metric(&text, "vllm:generation_tokens_total")
    }

    /// `host:port` of the endpoint (IPv6 in brackets), as a socket address string.
    pub fn authority(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest).to_string()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of series `name` (its first sample) in a Prometheus text page; panics, showing
/// the page, when it is not there.
#[allow(dead_code)]
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}

/// A scratch folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p =
            std::env::temp_dir().join(format!("qpsbench-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a file in the folder and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const DATASET: &str = r#"[
  {"prompt_content": "You are a helpful assistant.", "cut_chat_history": [{"role": "user", "content": "Hello"}]},
  {"prompt_content": "You are a helpful AI assistant.", "cut_chat_history": [
    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What's the weather?"}]}
]"#;

/// A finished qpsbench run.
pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
    /// The run's own results folder, if one was created.
    pub dir: Option<PathBuf>,
}

impl Run {
    pub fn levels(&self) -> Vec<serde_json::Value> {
        let p = self
            .dir
            .as_ref()
            .expect("results folder")
            .join("benchmark_qps_results.json");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v.as_array().expect("results are an array").clone()
    }

    pub fn metadata(&self) -> serde_json::Value {
        let p = self
            .dir
            .as_ref()
            .expect("results folder")
            .join("metadata.json");
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    /// The lines of the run's requests.jsonl (`--save-requests`).
    #[allow(dead_code)]
    pub fn records(&self) -> Vec<serde_json::Value> {
        let p = self
            .dir
            .as_ref()
            .expect("results folder")
            .join("requests.jsonl");
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
}

/// Runs qpsbench with `args`; results go under `results` (a fresh folder per call is best).
pub fn qpsbench(args: &[&str], results: &Path) -> Run {
    qpsbench_env(args, results, &[])
}

pub fn qpsbench_env(args: &[&str], results: &Path, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .arg("--results-dir")
        .arg(results)
        .env_remove("QPSBENCH_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .envs(env.iter().copied());
    run_command(cmd, results)
}

/// Runs a prepared qpsbench command whose results go under `results`.
pub fn run_command(mut cmd: Command, results: &Path) -> Run {
    let before: Vec<PathBuf> = list(results);
    let output = cmd.output().expect("run qpsbench");
    let dir = list(results).into_iter().find(|p| !before.contains(p));
    Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
        dir,
    }
}

fn list(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

/// The standard arguments for a run against `url` with the dataset at `dataset`.
/// Sets `flag` to `value` in `args`: replaces its value if the flag is there (clap refuses a
/// repeated flag), else appends both.
#[allow(dead_code)]
pub fn set_arg<'a>(args: &mut Vec<&'a str>, flag: &'a str, value: &'a str) {
    match args.iter().position(|a| *a == flag) {
        Some(i) => args[i + 1] = value,
        None => args.extend([flag, value]),
    }
}

pub fn base_args<'a>(url: &'a str, dataset: &'a str) -> Vec<&'a str> {
    let mut args = endpoint_args(url);
    args.extend(["--dataset", dataset]);
    args
}

/// The standard arguments for a run against `url`, without a dataset (for
/// `--dataset-name random`).
pub fn endpoint_args(url: &str) -> Vec<&str> {
    vec![
        "--endpoint",
        url,
        "--api-key",
        "sk-test",
        "--model",
        "m",
        // Debug builds on a loaded 2-core machine see send-lag outliers of milliseconds; the
        // client-limited gate is tested on its own (tests/it/validity.rs), so here it only catches
        // a client that fell far behind.
        "--max-send-lag-ms",
        "100",
    ]
}

pub fn f(v: &serde_json::Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Peak resident memory of the children this test process has waited for, in MiB (the largest
/// one's, not their sum). Only meaningful in a test binary whose other tests start no bigger
/// children.
pub fn children_max_rss_mib() -> f64 {
    // SAFETY: getrusage only writes the struct passed.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    u.ru_maxrss as f64 / 1024.0
}

/// Lowers the open-file limit (soft and hard) of the process `cmd` starts to `n`, for that
/// process only: the endpoint a test starts keeps its own.
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe and only lowers this child's own limit.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            Ok(())
        });
    }
}

/// The nearest-rank percentile `p` of `v` (sorted).
#[allow(dead_code)]
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank - 1]
}

/// The TTFTs (seconds, sorted) of level `level`'s records in a `requests.jsonl`.
#[allow(dead_code)]
pub fn ttft_of_level(records: &[serde_json::Value], level: usize) -> Vec<f64> {
    let mut ttft: Vec<f64> = records
        .iter()
        .filter(|r| r["level"] == level)
        .map(|r| (f(r, "first_token_us") - f(r, "intended_us")) / 1e6)
        .collect();
    ttft.sort_by(f64::total_cmp);
    ttft
}

/// Now, in Unix seconds (the wall clock `--start-at` counts in).
#[allow(dead_code)]
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `serve-mock` with fault `mode` on half its answers, each a 4-token stream (5 ms TTFT and ITL).
pub fn faulty_mock(mode: &str) -> Mock {
    let spec = format!("{mode}:0.5");
    Mock::start(&[
        "--ttft-ms",
        "5",
        "--itl-ms",
        "5",
        "--output-tokens",
        "4",
        "--fault",
        &spec,
    ])
}

/// The errors of level `l` whose category starts with `prefix`.
pub fn errors_starting_with(l: &serde_json::Value, prefix: &str) -> u64 {
    l["errors"]
        .as_object()
        .expect("errors")
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}
