//! A real inference engine for the tests: llama.cpp's `llama-server` with the SmolLM2-135M GGUF,
//! as `scripts/prepare-llama.sh` prepares them, found through `QPSBENCH_LLAMA_DIR`. Without it
//! the tests print SKIPPED and pass, unless `QPSBENCH_REQUIRE_LLAMA=1` (set by `.ci/run`), where
//! they fail. The server runs on a free loopback port, pinned to the last CPU, with qpsbench
//! pinned to the others; it is stopped by its PID when dropped.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The prepared folder (`bin/llama-server`, `model.gguf`), or None: the test is skipped.
pub fn llama_dir() -> Option<PathBuf> {
    let required = std::env::var("QPSBENCH_REQUIRE_LLAMA").as_deref() == Ok("1");
    let dir = std::env::var_os("QPSBENCH_LLAMA_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("bin/llama-server").is_file() && d.join("model.gguf").is_file() => Some(d),
        Some(d) if required => panic!(
            "QPSBENCH_LLAMA_DIR={} has no bin/llama-server and model.gguf: run scripts/prepare-llama.sh",
            d.display()
        ),
        None if required => panic!(
            "a real engine is required (QPSBENCH_REQUIRE_LLAMA=1) but QPSBENCH_LLAMA_DIR is not set: export QPSBENCH_LLAMA_DIR=$(scripts/prepare-llama.sh)"
        ),
        _ => {
            eprintln!("SKIPPED: no llama.cpp server (export QPSBENCH_LLAMA_DIR=$(scripts/prepare-llama.sh) to run this test)");
            None
        }
    }
}

/// The CPUs this process may use.
fn cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into `set`, which
    // is a properly sized, zero-initialized cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the set's size in CPUs.
        .filter(|&i| ok && unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Runs `cmd` on `cpus` only.
fn pin(cmd: &mut Command, cpus: Vec<usize>) {
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (CPU_SET on a local set, sched_setaffinity).
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &c in &cpus {
                libc::CPU_SET(c, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The CPU the server runs on (the last), and the ones qpsbench runs on (the others; all of
/// them on a one-CPU machine).
pub fn split_cpus() -> (Vec<usize>, Vec<usize>) {
    let all = cpus();
    match all.split_last() {
        Some((&last, rest)) if !rest.is_empty() => (vec![last], rest.to_vec()),
        _ => (all.clone(), all),
    }
}

/// A running `llama-server`; killed by its PID on drop.
pub struct Llama {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Llama {
    /// Starts the server with `--parallel 4 -c 8192 --threads 1 --metrics` plus `extra`, and
    /// waits until it answers `/health`.
    pub fn start(dir: &Path, scratch: &Path, extra: &[&str]) -> Self {
        let port = super::free_port();
        let log = scratch.join(format!("llama-{port}.log"));
        let mut cmd = Command::new(dir.join("bin/llama-server"));
        cmd.args(["-m"])
            .arg(dir.join("model.gguf"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--parallel",
                "4",
                "-c",
                "8192",
                "--threads",
                "1",
                "--metrics",
            ])
            .args(["--threads-batch", "1"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap());
        pin(&mut cmd, split_cpus().0);
        let child = cmd.spawn().expect("start llama-server");
        let me = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        me.wait_healthy();
        me
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if get(&self.base, "/health").is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("llama-server did not become healthy: {}", self.log_tail());
    }

    /// The server's log, last lines (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn chat(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }

    pub fn completions(&self) -> String {
        format!("{}/v1/completions", self.base)
    }

    pub fn metrics(&self) -> String {
        format!("{}/metrics", self.base)
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// qpsbench's flags for a run against `url` (model `smollm2`), then `rest`.
#[allow(dead_code)]
pub fn args<'a>(url: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "--endpoint",
        url,
        "--api-key",
        "sk-test",
        "--model",
        "smollm2",
    ];
    // The one CPU left to the client may be shared with the machine's other work: the
    // client-limited gate is tested elsewhere (tests/it/validity.rs).
    a.extend(["--max-send-lag-ms", "200", "--min-rate-ratio", "0.5"]);
    a.extend_from_slice(rest);
    a
}

/// One GET on a connection of its own: (status, body).
pub fn get(base: &str, path: &str) -> Option<(u16, String)> {
    exchange(base, "GET", path, None)
}

/// One POST of a JSON `body` on a connection of its own: (status, body).
#[allow(dead_code)]
pub fn post(base: &str, path: &str, body: &str) -> Option<(u16, String)> {
    exchange(base, "POST", path, Some(body))
}

fn exchange(base: &str, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let authority = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(authority).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let content = body.map_or(String::new(), |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        )
    });
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{content}Connection: close\r\n\r\n{}",
        body.unwrap_or("")
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// qpsbench pinned away from the server's CPU, with `args` and a private results folder.
pub fn qpsbench_pinned(args: &[&str], results: &Path) -> super::Run {
    let mut cmd = Command::new(super::BIN);
    cmd.args(args)
        .arg("--results-dir")
        .arg(results)
        .env_remove("QPSBENCH_API_KEY")
        .env_remove("OPENAI_API_KEY");
    pin(&mut cmd, split_cpus().1);
    super::run_command(cmd, results)
}
