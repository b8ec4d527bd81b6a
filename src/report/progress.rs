//! The live progress line of a level, on stderr: sent / planned, ok, failed, in flight, the
//! achieved rate, send-lag p99 so far and the TTFT p50 of the last second.
//!
//! A reporter thread (not a client core) reads the cores' `live::LiveCounters` about once a
//! second; the cores only publish into them, so watching costs the hot path nothing. On a
//! terminal the line is redrawn in place every second and erased at the level's end (the
//! level's summary line follows); otherwise (a pipe, CI) a plain line is printed every 10 s,
//! with no escape codes.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::cli::Progress;
use crate::recording::live::{quantile, LiveCounters};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line redrawn in place every second.
    Live,
    /// A plain line every 10 s.
    Plain,
    Off,
}

impl Mode {
    /// `--progress`, with `auto` decided by whether stderr is a terminal.
    pub fn from_flag(p: Progress) -> Self {
        match p {
            Progress::Never => Mode::Off,
            Progress::Always => Mode::Live,
            Progress::Auto if std::io::stderr().is_terminal() => Mode::Live,
            Progress::Auto => Mode::Plain,
        }
    }
}

/// What the line says about the level.
#[derive(Debug, Clone)]
pub struct LevelInfo {
    /// `1/4`, or `auto 2`.
    pub label: String,
    pub qps: f64,
    pub duration_s: f64,
    /// Warm-up seconds before the measured window (the counters start after them).
    pub warmup_s: f64,
    pub planned: usize,
}

/// The running reporter of one level.
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    mode: Mode,
}

impl Reporter {
    /// Starts reporting on `live` (nothing is started with [`Mode::Off`]).
    pub fn start(live: &[Arc<LiveCounters>], info: LevelInfo, mode: Mode) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (mode != Mode::Off).then(|| {
            let (stop, live) = (stop.clone(), live.to_vec());
            std::thread::Builder::new()
                .name("qpsbench-progress".into())
                .spawn(move || report(&live, &info, mode, &stop))
                .ok()
        });
        Self {
            stop,
            thread: thread.flatten(),
            mode,
        }
    }

    /// Stops the reporter; a live line is erased, so the level's summary takes its place.
    pub fn finish(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            if self.mode == Mode::Live {
                eprint!("\r\x1b[2K");
                let _ = std::io::stderr().flush();
            }
        }
    }
}

/// The counters of every core, summed: (sent, ok, [failed, cancelled], send-lag buckets, TTFT
/// buckets).
fn read(live: &[Arc<LiveCounters>]) -> (u64, u64, [u64; 2], Vec<u64>, Vec<u64>) {
    let mut out = (0, 0, [0, 0], Vec::new(), Vec::new());
    for c in live {
        out.0 += c.sent.load(Relaxed);
        out.1 += c.ok.load(Relaxed);
        out.2[0] += c.failed.load(Relaxed);
        out.2[1] += c.cancelled.load(Relaxed);
        add(&mut out.3, &c.send_lag_ns.snapshot());
        add(&mut out.4, &c.ttft_ns.snapshot());
    }
    out
}

fn add(sum: &mut Vec<u64>, more: &[u64]) {
    if sum.is_empty() {
        sum.extend_from_slice(more);
    } else {
        sum.iter_mut().zip(more).for_each(|(s, m)| *s += m);
    }
}

/// The reporter thread: a line every second (live) or every 10 s (plain) until stopped.
fn report(live: &[Arc<LiveCounters>], info: &LevelInfo, mode: Mode, stop: &AtomicBool) {
    let started = Instant::now();
    let every = if mode == Mode::Live { 1 } else { 10 };
    let mut last_ttft: Vec<u64> = Vec::new();
    let mut tick = 0u64;
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let elapsed = started.elapsed().as_secs_f64();
        if elapsed < (tick + 1) as f64 {
            continue;
        }
        tick = elapsed as u64;
        let (sent, ok, [failed, cancelled], lag, ttft) = read(live);
        // TTFT of the requests completed since the last read.
        let recent: Vec<u64> = if last_ttft.is_empty() {
            ttft.clone()
        } else {
            ttft.iter()
                .zip(&last_ttft)
                .map(|(a, b)| a - b.min(a))
                .collect()
        };
        last_ttft = ttft;
        if !tick.is_multiple_of(every) {
            continue;
        }
        let window = (elapsed - info.warmup_s).max(0.0);
        let line = format!(
            "[{}] QPS {} · {:.0}/{} s · sent {sent}/{} · ok {ok} failed {failed}{} in flight {} · {:.1} QPS · lag p99 {} · TTFT p50 {}",
            info.label,
            crate::foundation::rate::text(info.qps),
            window.min(info.duration_s),
            info.duration_s,
            info.planned,
            if cancelled > 0 {
                format!(" cancelled {cancelled}")
            } else {
                String::new()
            },
            sent.saturating_sub(ok + failed + cancelled),
            if window > 0.0 { sent as f64 / window } else { 0.0 },
            quantile(&lag, 0.99).map_or("-".into(), |ns| format!("{:.0} µs", ns as f64 / 1e3)),
            quantile(&recent, 0.5).map_or("-".into(), |ns| format!("{:.3} s", ns as f64 / 1e9)),
        );
        match mode {
            Mode::Live => eprint!("\r\x1b[2K{line}"),
            _ => eprintln!("      {line}"),
        }
        let _ = std::io::stderr().flush();
    }
}
