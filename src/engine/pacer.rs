//! The pacer: wakes a core at each arrival's intended time, precisely.
//!
//! monoio's timer wheel has ~1 ms resolution, far too coarse (DESIGN.md). On io_uring the pacer
//! sleeps on a timerfd armed with an absolute `CLOCK_MONOTONIC` deadline a little before the
//! arrival, then yields in a loop until the deadline. Yielding lets the core's other tasks run
//! and the runtime reap completions, so responses keep flowing while the pacer waits.
//!
//! How early to wake is learned, not fixed: any kernel sleep on a VM wakes late by the vCPU's
//! wake-up latency (on the 2-core dev VM a 10 ms sleep wakes ~150 µs late at p50, ~250 µs at p99,
//! and the wake itself costs ~40 µs of CPU), while on bare metal it is a few µs. The margin jumps
//! up to cover any late wake seen and decays slowly, clamped to 30–500 µs, so the spin is as
//! short as the machine allows. Without io_uring (epoll
//! fallback) it sleeps on monoio's timer until ~2 ms before the deadline and yields from there:
//! more CPU spent waiting, same precision.

use std::future::Future;
use std::os::fd::FromRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::clock::now_ns;

/// Below this much time to go, yield instead of sleeping.
const SPIN_NS: u64 = 50_000;
/// Bounds and start of the learned early-wake margin for the timerfd.
const EARLY_MIN_NS: u64 = 30_000;
const EARLY_MAX_NS: u64 = 500_000;
const EARLY_START_NS: u64 = 200_000;
/// The coarse timer (epoll fallback) is ~1 ms late; stop sleeping this long before the deadline.
const COARSE_EARLY_NS: u64 = 2_000_000;

/// Yields once to the runtime: other ready tasks run and completions are reaped.
pub fn yield_now() -> impl Future<Output = ()> {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    Yield(false)
}

struct TimerFd {
    file: monoio::fs::File,
    fd: i32,
    buf: Option<Vec<u8>>,
}

/// One per core, used only by that core's pacing task. That task must be spawned
/// (`monoio::spawn`), not be the `block_on` future: yielding only lets other tasks run from a
/// spawned task.
pub struct Pacer {
    timer: Option<TimerFd>,
    /// Current early-wake margin for the timerfd.
    early_ns: u64,
    /// Wall time spent yielding in a loop close to deadlines (the visible cost of precision).
    pub spin_ns: u64,
}

impl Pacer {
    /// `use_timerfd`: the runtime is on io_uring (a timerfd read is asynchronous only there).
    pub fn new(use_timerfd: bool) -> Self {
        let timer = use_timerfd.then(open_timerfd).flatten();
        Self {
            timer,
            early_ns: EARLY_START_NS,
            spin_ns: 0,
        }
    }

    /// The learned early-wake margin, in ns (for benches and diagnostics).
    pub fn early_ns(&self) -> u64 {
        self.early_ns
    }

    /// Returns at or just after `deadline_ns` (monotonic clock); at once if it has passed, or as
    /// soon as `still_due()` turns false (another task of the core already sent the arrival, so
    /// there is nothing to wait for).
    pub async fn wait_until(&mut self, deadline_ns: u64, still_due: impl Fn() -> bool) {
        let mut spin_from = None;
        loop {
            let now = now_ns();
            if now >= deadline_ns || !still_due() {
                if let Some(from) = spin_from {
                    self.spin_ns += now - from;
                }
                return;
            }
            let left = deadline_ns - now;
            if left <= SPIN_NS {
                spin_from.get_or_insert(now);
                yield_now().await;
                continue;
            }
            match &mut self.timer {
                Some(t) if left > self.early_ns => {
                    let target = deadline_ns - self.early_ns;
                    t.sleep_until(target).await;
                    if !still_due() {
                        // Sent by a busy core's other tasks: this wake says nothing about how
                        // late the kernel wakes an idle core.
                        continue;
                    }
                    let late = now_ns().saturating_sub(target);
                    // Cover the lateness just seen (plus a quarter and 20 µs), else decay by 1/64.
                    let want = late + late / 4 + 20_000;
                    self.early_ns = want
                        .max(self.early_ns - self.early_ns / 64)
                        .clamp(EARLY_MIN_NS, EARLY_MAX_NS);
                }
                Some(_) => {
                    spin_from.get_or_insert(now);
                    yield_now().await
                }
                None if left > COARSE_EARLY_NS => {
                    monoio::time::sleep(Duration::from_nanos(left - COARSE_EARLY_NS)).await
                }
                None => {
                    spin_from.get_or_insert(now);
                    yield_now().await
                }
            }
        }
    }
}

fn open_timerfd() -> Option<TimerFd> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created by timerfd_create and is owned by nothing else; the File
    // takes sole ownership and closes it on drop.
    let std_file = unsafe { std::fs::File::from_raw_fd(fd) };
    let file = monoio::fs::File::from_std(std_file).ok()?;
    Some(TimerFd {
        file,
        fd,
        buf: Some(Vec::with_capacity(8)),
    })
}

impl TimerFd {
    async fn sleep_until(&mut self, at_ns: u64) {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `self.fd` is the live timerfd owned by `self.file`; `spec` is a valid
        // itimerspec and the old-value pointer may be null.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            yield_now().await;
            return;
        }
        let mut buf = self.buf.take().unwrap_or_else(|| Vec::with_capacity(8));
        buf.clear();
        let (_res, buf) = self.file.read_at(buf, 0).await;
        self.buf = Some(buf);
    }
}
