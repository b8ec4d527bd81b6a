//! The pacer: wakes a core at each arrival's intended time, precisely.
//!
//! monoio's timer wheel has ~1 ms resolution, far too coarse. On io_uring the pacer
//! sleeps on a timerfd armed with an absolute `CLOCK_MONOTONIC` deadline a little before the
//! arrival, then yields in a loop until the deadline. Yielding lets the core's other tasks run
//! and the runtime reap completions, so responses keep flowing while the pacer waits — provided
//! the yield really goes behind the other tasks: monoio re-runs a task that wakes itself *first*,
//! so a self-waking spin starved every stream on the core for the whole spin (milliseconds of
//! added delay at a few thousand requests/s). The spin yields through an io_uring read of
//! `/dev/zero` instead ([`FairYield`]), which puts the pacer at the back of the queue.
//!
//! With `--busy-poll` the core's spin loop checks the pacer's deadline on every round and wakes
//! it then ([`crate::rt::timer::sleep_until_ns`]): no kernel timer (whose interrupt is a VM exit on a
//! VM), no early wake, no spin of the pacer's own. Where that loop cannot run, a polled pacer
//! falls back to the timerfd, waking a fixed 150 µs early (covering the expiry's own lateness on
//! a VM) instead of a learned margin.
//!
//! How early to wake is learned, not fixed: any kernel sleep on a VM wakes late by the vCPU's
//! wake-up latency (on the 2-core dev VM a 10 ms sleep wakes ~150 µs late at p50, ~250 µs at p99,
//! and the wake itself costs ~40 µs of CPU), while on bare metal it is a few µs. The margin jumps
//! up to cover any late wake seen and decays slowly, clamped to 30–500 µs, so the spin is as
//! short as the machine allows. Without io_uring (epoll
//! fallback) it sleeps on monoio's timer until ~2 ms before the deadline and yields from there:
//! more CPU spent waiting, same precision.

use std::time::Duration;

use crate::foundation::clock::now_ns;
use crate::rt::timer::TimerFd;

/// The longest single sleep: how soon a stop request is noticed while waiting for an arrival.
const MAX_SLEEP_NS: u64 = 50_000_000;
/// Below this much time to go, yield instead of sleeping.
const SPIN_NS: u64 = 50_000;
/// Bounds and start of the learned early-wake margin for the timerfd.
const EARLY_MIN_NS: u64 = 30_000;
const EARLY_MAX_NS: u64 = 500_000;
const EARLY_START_NS: u64 = 200_000;
/// A busy-polling core sees a timerfd expiry within a poll round, but the expiry itself comes
/// ~25 µs late on a VM, with a tail of ~100 µs: wake this early, then yield (fairly) for the
/// rest. The core spins anyway, so the margin costs no extra CPU.
const POLLED_EARLY_NS: u64 = 150_000;
/// The coarse timer (epoll fallback) is ~1 ms late; stop sleeping this long before the deadline.
const COARSE_EARLY_NS: u64 = 2_000_000;

/// A yield that goes to the back of the run queue: a one-byte read of `/dev/zero` on the core's
/// io_uring, which completes as soon as it is submitted. The task is woken by the driver when it
/// reaps that completion, like any task whose I/O finished, so every task that was ready runs
/// first. (A task waking itself would be re-run at once: see [`crate::rt::yield_now`].)
pub struct FairYield {
    zero: monoio::fs::File,
    buf: Option<Vec<u8>>,
}

impl FairYield {
    /// Only on io_uring: under epoll a file read is not asynchronous.
    pub fn open() -> Option<Self> {
        let f = std::fs::File::open("/dev/zero").ok()?;
        Some(Self {
            zero: monoio::fs::File::from_std(f).ok()?,
            buf: Some(Vec::with_capacity(1)),
        })
    }

    pub async fn yield_now(&mut self) {
        let mut buf = self.buf.take().unwrap_or_else(|| Vec::with_capacity(1));
        buf.clear();
        let (_res, buf) = self.zero.read_at(buf, 0).await;
        self.buf = Some(buf);
    }
}

/// One per core, used only by that core's pacing task. That task must be spawned
/// (`monoio::spawn`), not be the `block_on` future: yielding only lets other tasks run from a
/// spawned task.
pub struct Pacer {
    timer: Option<TimerFd>,
    /// Current early-wake margin for the timerfd.
    early_ns: u64,
    /// Time spent yielding close to deadlines while no task of the core did any work: the
    /// pacer's own spin, apart from the work the core did while it yielded (see
    /// [`crate::rt::SpinMeter`]). The core's CPU minus this is its work.
    pub spin_ns: u64,
    /// The core busy-polls (`--busy-poll`): it never sleeps, so a timerfd expiry is seen within
    /// a poll round and the pacer needs only a short early wake.
    polled: bool,
    /// How the spin phase yields (io_uring); `None`: a self-wake (epoll fallback).
    fair: Option<FairYield>,
    /// Tells the spin phase's yields of spin from the core's work.
    meter: crate::rt::SpinMeter,
}

impl Pacer {
    /// `use_timerfd`: the runtime is on io_uring (a timerfd read is asynchronous only there).
    pub fn new(use_timerfd: bool) -> Self {
        let timer = use_timerfd.then(TimerFd::open).flatten();
        Self {
            timer,
            early_ns: EARLY_START_NS,
            spin_ns: 0,
            polled: false,
            fair: if use_timerfd { FairYield::open() } else { None },
            meter: Default::default(),
        }
    }

    /// Lets every other ready task of the core run first (see [`FairYield`]).
    pub async fn yield_fair(&mut self) {
        self.spin_step().await
    }

    /// One step of the spin phase, started at `now`, counted as spin if no task of the core did
    /// any work meanwhile (see [`crate::rt::SpinMeter`]).
    async fn spin(&mut self, now: u64) {
        self.spin_step().await;
        self.spin_ns += self.meter.round(now_ns().saturating_sub(now));
    }

    /// One step of the spin phase: the core's other ready tasks run (and completions are
    /// reaped) before the pacer looks at the clock again.
    async fn spin_step(&mut self) {
        // Completions waiting on the receive ring are handled here and now, instead of spun
        // past until the reaper's wake-up comes up in the queue.
        crate::rt::recv_ring::drain_current();
        match &mut self.fair {
            Some(f) => f.yield_now().await,
            None => crate::rt::yield_now().await,
        }
    }

    /// A pacer for a busy-polling core on io_uring: sleeps on the timerfd until the deadline
    /// itself, since the core sees the expiry at once. Falls back to [`Pacer::new`]'s behaviour
    /// if no timerfd can be made.
    pub fn polled() -> Self {
        let mut p = Self::new(true);
        p.polled = p.timer.is_some();
        p
    }

    /// The learned early-wake margin, in ns (for benches and diagnostics).
    pub fn early_ns(&self) -> u64 {
        self.early_ns
    }

    /// Returns at or just after `deadline_ns` (monotonic clock); at once if it has passed, or as
    /// soon as `still_due()` turns false (another task of the core already sent the arrival, so
    /// there is nothing to wait for).
    pub async fn wait_until(&mut self, deadline_ns: u64, still_due: impl Fn() -> bool) {
        // A step of an earlier wait, not confirmed as spin, is not counted.
        self.meter.reset();
        loop {
            let now = now_ns();
            if now >= deadline_ns || !still_due() {
                return;
            }
            if self.polled && crate::rt::timer::spin_driven() {
                // The core's spin loop wakes the pacer within a round of the deadline itself:
                // no kernel timer, no early wake, no spin of its own.
                crate::rt::timer::sleep_until_ns(deadline_ns.min(now + MAX_SLEEP_NS)).await;
                if crate::foundation::interrupt::requested() {
                    return;
                }
                continue;
            }
            if self.polled && deadline_ns - now > POLLED_EARLY_NS {
                if let Some(t) = &mut self.timer {
                    t.sleep_until((deadline_ns - POLLED_EARLY_NS).min(now + MAX_SLEEP_NS))
                        .await;
                    if crate::foundation::interrupt::requested() {
                        return;
                    }
                    continue;
                }
            }
            let left = deadline_ns - now;
            if left <= SPIN_NS {
                self.spin(now).await;
                continue;
            }
            match &mut self.timer {
                Some(t) if left > self.early_ns + MAX_SLEEP_NS => {
                    // A long wait is slept in pieces, so a stop request (Ctrl-C) is seen soon.
                    t.sleep_until(now + MAX_SLEEP_NS).await;
                    if crate::foundation::interrupt::requested() {
                        return;
                    }
                }
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
                Some(_) => self.spin(now).await,
                None if left > COARSE_EARLY_NS => {
                    let nap = (left - COARSE_EARLY_NS).min(MAX_SLEEP_NS);
                    monoio::time::sleep(Duration::from_nanos(nap)).await;
                    if crate::foundation::interrupt::requested() {
                        return;
                    }
                }
                None => self.spin(now).await,
            }
        }
    }
}
