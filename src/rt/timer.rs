//! Precise timers on io_uring: a timerfd armed with an absolute `CLOCK_MONOTONIC` deadline and
//! read through the core's ring, so the thread's other tasks keep running while it waits.
//!
//! monoio's own timer is a wheel with 1 ms ticks: every sleep ends on the next tick, so all the
//! sleeps due within one millisecond end together. That is too coarse for the pacer (an arrival
//! must leave at its µs) and for the built-in endpoint: its streams' chunks, each due at its own
//! time, would leave in one burst per tick, and the stamped self-test would measure the client
//! draining bursts the configuration never asked for. The pacer (`engine::pacer`) owns one
//! [`TimerFd`]. A thread with many sleepers runs [`one_timer_loop`]: its sleepers wait in one
//! heap under one timerfd armed for the earliest deadline, and every one due is woken when it
//! fires (the built-in endpoint's streams: one wake-up per expiry, not per chunk). Elsewhere a
//! sleep borrows a timerfd from a small per-thread pool ([`sleep_until`]).
//!
//! How close to its deadline a timerfd fires is the machine's business: on a VM the host delivers
//! the interrupt, at times only on a coarse tick of its own (seen here: ten timerfds due 100 µs
//! apart expiring together, ~1 ms late). `selftest` measures it; the spin loop below avoids it.
//!
//! A timerfd read is asynchronous only on io_uring: under epoll monoio reads files synchronously,
//! which would block the whole thread. A thread says it runs on io_uring with
//! [`enable_on_this_thread`]; elsewhere [`sleep_until`] uses monoio's wheel.
//!
//! A busy-polling thread (`--busy-poll`, the self-test's endpoint) needs no kernel timer at all:
//! its spin loop ([`busy_poll_loop`], here because it drives these timers) calls [`fire_due`]
//! on every round and wakes the sleepers whose time has come
//! from a per-thread heap ([`spin_driven`]). That saves a timer interrupt per sleep, which on a
//! VM is a VM exit landing in the middle of whatever the thread was doing (a chunk's send, say),
//! and it wakes a sleeper within one round of the loop (~1 µs) of its deadline.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::os::fd::FromRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::foundation::clock::now_ns;

/// A timerfd read through the runtime.
pub struct TimerFd {
    file: monoio::fs::File,
    fd: i32,
    buf: Option<Vec<u8>>,
}

impl TimerFd {
    /// `None` where the kernel or the runtime refuses one.
    pub fn open() -> Option<Self> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just created by timerfd_create and is owned by nothing else; the File
        // takes sole ownership and closes it on drop.
        let std_file = unsafe { std::fs::File::from_raw_fd(fd) };
        let file = monoio::fs::File::from_std(std_file).ok()?;
        Some(Self {
            file,
            fd,
            buf: Some(Vec::with_capacity(8)),
        })
    }

    /// Returns once the monotonic clock reaches `at_ns` (at once if it has; on an arming error,
    /// after one yield, so callers that loop on the clock still make progress).
    pub async fn sleep_until(&mut self, at_ns: u64) {
        if !arm(self.fd, at_ns) {
            super::yield_now().await;
            return;
        }
        self.expired().await;
    }

    /// Returns once the timer, as armed now or later, expires (a disarmed timer's read waits).
    async fn expired(&mut self) {
        let mut buf = self.buf.take().unwrap_or_else(|| Vec::with_capacity(8));
        buf.clear();
        let (_res, buf) = self.file.read_at(buf, 0).await;
        self.buf = Some(buf);
    }
}

/// Arms the timerfd `fd` to expire once at `at_ns` (monotonic; at once if past); false if the
/// kernel refused.
fn arm(fd: i32, at_ns: u64) -> bool {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (at_ns / 1_000_000_000) as libc::time_t,
            // A zero it_value would disarm the timer: a deadline of exactly 0 ns is 1 ns.
            tv_nsec: (at_ns % 1_000_000_000).max(u64::from(at_ns < 1_000_000_000)) as libc::c_long,
        },
    };
    // SAFETY: `fd` is a live timerfd owned by a `TimerFd` of this thread; `spec` is a valid
    // itimerspec and the old-value pointer may be null.
    let rc =
        unsafe { libc::timerfd_settime(fd, libc::TFD_TIMER_ABSTIME, &spec, std::ptr::null_mut()) };
    rc == 0
}

thread_local! {
    /// This thread's runtime is io_uring (timerfd reads are asynchronous).
    static URING: Cell<bool> = const { Cell::new(false) };
    /// Idle timerfds of this thread, reused so a sleep costs one `timerfd_settime`, not a
    /// create and a close as well.
    static POOL: RefCell<Vec<TimerFd>> = const { RefCell::new(Vec::new()) };
    /// Sleepers woken by this thread's driver (its spin loop, or its one timer); `None` while
    /// no driver runs.
    static SPUN: RefCell<Option<BinaryHeap<Sleeper>>> = const { RefCell::new(None) };
    /// With [`one_timer_loop`]: the one timerfd's fd, and the deadline it is armed for
    /// (`u64::MAX`: none).
    static ONE: Cell<Option<(i32, u64)>> = const { Cell::new(None) };
}

/// One task sleeping on the spin loop, ordered so the heap's top is the earliest deadline.
struct Sleeper {
    at_ns: u64,
    waker: Waker,
}

impl PartialEq for Sleeper {
    fn eq(&self, other: &Self) -> bool {
        self.at_ns == other.at_ns
    }
}
impl Eq for Sleeper {}
impl PartialOrd for Sleeper {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sleeper {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: the earliest deadline must compare greatest.
        Reverse(self.at_ns).cmp(&Reverse(other.at_ns))
    }
}

/// Starts waking sleepers from this thread's spin loop, which must then call [`fire_due`] on
/// every round until [`stop_spin_driven`].
pub fn start_spin_driven() {
    SPUN.with(|s| {
        s.borrow_mut().get_or_insert_with(BinaryHeap::new);
    });
}

/// The spin loop is ending: every sleeper is woken now (each goes back to sleep on a kernel
/// timer, see [`sleep_until_ns`]), so none is left waiting on a loop that no longer runs.
pub fn stop_spin_driven() {
    if let Some(heap) = SPUN.with(|s| s.borrow_mut().take()) {
        for s in heap {
            s.waker.wake();
        }
    }
}

/// Whether a spin loop on this thread wakes sleepers.
pub fn spin_driven() -> bool {
    SPUN.with(|s| s.borrow().is_some())
}

/// Wakes every sleeper whose deadline has passed; called by the spin loop on every round.
pub fn fire_due() {
    let now = now_ns();
    loop {
        let due = SPUN.with(|s| match s.borrow_mut().as_mut() {
            Some(h) if h.peek().is_some_and(|top| top.at_ns <= now) => h.pop(),
            _ => None,
        });
        match due {
            Some(s) => s.waker.wake(),
            None => return,
        }
    }
}

/// Resolves once woken by the spin loop: at the deadline, or early when the loop stops.
struct SpinWait {
    at_ns: u64,
    registered: bool,
}

impl Future for SpinWait {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        let at_ns = self.at_ns;
        let pushed = SPUN.with(|s| match s.borrow_mut().as_mut() {
            Some(h) => {
                h.push(Sleeper {
                    at_ns,
                    waker: cx.waker().clone(),
                });
                true
            }
            None => false,
        });
        if !pushed {
            return Poll::Ready(());
        }
        // Driven by the one timer: it must fire by this deadline (one re-arm, only when this is
        // the earliest one; the common case, a deadline after others, costs no system call).
        if let Some((fd, armed)) = ONE.with(Cell::get) {
            let fire_at = on_tick(at_ns);
            if fire_at < armed {
                if arm(fd, fire_at) {
                    ONE.with(|o| o.set(Some((fd, fire_at))));
                } else {
                    // The kernel refused: look at the clock again soon rather than never.
                    cx.waker().wake_by_ref();
                }
            }
        }
        self.registered = true;
        Poll::Pending
    }
}

/// The one timer's tick: it is armed for the first tick boundary at or after the earliest
/// deadline, so every deadline within one tick shares one expiry and one re-arm. Re-arming a
/// timer is the costly part on a VM (programming the host's timer exits to the hypervisor):
/// armed per deadline, the built-in endpoint spent ~6% of its CPU in `timerfd_settime` at
/// 64,000 chunks/s, and 0.2% on the tick. A sleeper is woken up to one tick late, never early.
const TICK_NS: u64 = 50_000;

/// The first tick boundary at or after `at_ns`.
fn on_tick(at_ns: u64) -> u64 {
    at_ns.div_ceil(TICK_NS).saturating_mul(TICK_NS)
}

/// Wakes this thread's sleepers from one kernel timer instead of one timerfd per sleeper: the
/// sleepers wait in the thread's heap, the timer is armed for the earliest deadline (on the
/// first [`TICK_NS`] boundary at or after it), and when it
/// fires every sleeper due by then is woken in one go, so the tasks they wake run back to back:
/// one kernel wake-up per expiry instead of a timer interrupt, a re-arm and a completion per
/// sleeper. For an io_uring thread that sleeps between deadlines and has many sleepers (the
/// built-in endpoint's streams). Runs until the thread's runtime ends.
pub fn one_timer_loop() -> impl std::future::Future<Output = ()> {
    start_spin_driven();
    async move {
        let Some(mut timer) = TimerFd::open() else {
            // Every sleeper goes back to its own timer.
            stop_spin_driven();
            return;
        };
        ONE.with(|o| o.set(Some((timer.fd, u64::MAX))));
        loop {
            timer.expired().await;
            ONE.with(|o| o.set(Some((timer.fd, u64::MAX))));
            fire_due();
            // Armed for the next deadline (registrations arm it themselves while it waits).
            let next = SPUN.with(|s| s.borrow().as_ref().and_then(|h| h.peek().map(|t| t.at_ns)));
            if let Some(at) = next.map(on_tick) {
                if arm(timer.fd, at) {
                    ONE.with(|o| o.set(Some((timer.fd, at))));
                }
            }
        }
    }
}

/// `--busy-poll`: keeps one read of `/dev/zero` always in flight on the core's io_uring. Such a
/// read completes as soon as it is submitted, so whenever the runtime runs out of tasks and
/// enters the kernel to wait for completions, one is already there: the thread never sleeps, it
/// polls the completion queue (running the kernel's pending task work on each entry), and a
/// response is seen without the wake-up latency of an idle vCPU. A task that merely yielded in a
/// loop would do the same but starve monoio's timers (they only advance when the runtime
/// parks), and with them every request's timeout. Costs a whole CPU per core while a level runs.
///
/// Each round in which no task of the thread did any work ([`super::note_work`]) is counted as
/// spin ([`super::spin_ns`]), so the thread's CPU minus it is its work.
///
/// The loop also wakes the thread's precise sleepers on every round ([`fire_due`]), so the
/// pacer and the endpoint's streams wait without a kernel timer. That starts when this is
/// called, not when the returned future first runs, so a sleeper that starts first is covered.
pub fn busy_poll_loop(
    spinning: Rc<Cell<bool>>,
    mut each_round: impl FnMut(),
) -> impl std::future::Future<Output = ()> {
    /// Hands the sleepers back to kernel timers however the loop ends (stopped, failed, or its
    /// task dropped).
    struct Driving;
    impl Drop for Driving {
        fn drop(&mut self) {
            stop_spin_driven();
        }
    }
    start_spin_driven();
    let driving = Driving;
    async move {
        let _driving = driving;
        let Ok(zero) = monoio::fs::File::open("/dev/zero").await else {
            return;
        };
        let mut buf = vec![0u8; 1];
        let (mut round_ns, mut meter) = (
            crate::foundation::clock::now_ns(),
            super::SpinMeter::default(),
        );
        while spinning.get() {
            let (res, b) = zero.read_at(buf, 0).await;
            buf = b;
            if res.is_err() {
                return;
            }
            let now = crate::foundation::clock::now_ns();
            super::add_spin(meter.round(now - round_ns));
            round_ns = now;
            fire_due();
            each_round();
        }
    }
}

/// Idle timerfds kept per thread; more concurrent sleeps than this open and close their own.
const POOL_MAX: usize = 4096;

/// Marks the calling thread as running an io_uring runtime, so [`sleep_until`] is precise here.
pub fn enable_on_this_thread() {
    URING.with(|u| u.set(true));
}

/// [`sleep_until_ns`] for an `Instant` deadline.
pub async fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        sleep_until_ns(now_ns() + (deadline - now).as_nanos() as u64).await
    }
}

/// Sleeps until the monotonic clock reaches `at_ns`: woken by the thread's spin loop where one
/// runs ([`spin_driven`]), else on a pooled timerfd on an io_uring thread (see
/// [`enable_on_this_thread`]), else on monoio's 1 ms wheel. Many tasks may sleep at once.
pub async fn sleep_until_ns(at_ns: u64) {
    loop {
        let now = now_ns();
        if now >= at_ns {
            return;
        }
        if spin_driven() {
            SpinWait {
                at_ns,
                registered: false,
            }
            .await;
            // Woken at the deadline, or because the spin loop stopped: look again.
            continue;
        }
        let timer = if URING.with(|u| u.get()) {
            POOL.with(|p| p.borrow_mut().pop()).or_else(TimerFd::open)
        } else {
            None
        };
        // Either way, look at the clock again: a timerfd that could not be armed returns after
        // one yield, and a sleep must never end early.
        match timer {
            Some(timer) => timer_sleep(timer, at_ns).await,
            None => monoio::time::sleep(std::time::Duration::from_nanos(at_ns - now)).await,
        }
    }
}

async fn timer_sleep(mut timer: TimerFd, at_ns: u64) {
    timer.sleep_until(at_ns).await;
    // Only a timer whose read completed goes back: a sleep dropped mid-read (its stream ended)
    // drops its timerfd with it, so no pooled timer has a read still in flight.
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(timer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn on_uring(f: impl std::future::Future<Output = ()>) -> bool {
        let mut rt = crate::rt::build_runtime().expect("runtime");
        match &mut rt {
            monoio::FusionRuntime::Uring(_) => {
                enable_on_this_thread();
                rt.block_on(f);
                true
            }
            monoio::FusionRuntime::Legacy(_) => false,
        }
    }

    /// Ten sleeps due 100 µs apart inside one millisecond, spawned in reverse order: each must
    /// end at or after its own deadline, and they must end in deadline order. monoio's wheel
    /// would end them all on one tick in spawn order (9 down to 0), so the order tells the wheel
    /// apart. How close to its deadline each one ends is a property of the machine (a VM's host
    /// may deliver timer interrupts on a coarse tick of its own; a loaded CPU runs the thread
    /// late): `selftest` and the benches measure it; a test cannot hold a shared machine to it.
    async fn check_ten_sleeps() {
        let base = Instant::now() + Duration::from_millis(5);
        let ends = std::rc::Rc::new(RefCell::new(Vec::new()));
        let mut handles = Vec::new();
        for i in (0..10u64).rev() {
            let ends = ends.clone();
            let due = base + Duration::from_micros(100 * i);
            handles.push(monoio::spawn(async move {
                sleep_until(due).await;
                assert!(Instant::now() >= due, "sleep {i} woke before its deadline");
                ends.borrow_mut().push(i);
            }));
        }
        for h in handles {
            h.await;
        }
        assert_eq!(*ends.borrow(), (0..10).collect::<Vec<_>>());
    }

    /// Without io_uring these tests cannot run: a skip, unless `QPSBENCH_REQUIRE_IO_URING=1`
    /// (set by `.ci/run`) makes it a failure.
    fn skipped() {
        if std::env::var("QPSBENCH_REQUIRE_IO_URING").as_deref() == Ok("1") {
            panic!("io_uring is required (QPSBENCH_REQUIRE_IO_URING=1) but unavailable");
        }
        eprintln!("io_uring unavailable: skipped");
    }

    #[test]
    fn concurrent_sleeps_each_get_their_own_timerfd() {
        let ran = on_uring(async {
            assert!(!spin_driven());
            check_ten_sleeps().await;
            // The timers went back to the pool for reuse.
            assert!(POOL.with(|p| p.borrow().len()) >= 10);
        });
        if !ran {
            skipped();
        }
    }

    #[test]
    fn a_deadline_fires_on_the_first_tick_at_or_after_it() {
        assert_eq!(on_tick(0), 0);
        assert_eq!(on_tick(1), TICK_NS);
        assert_eq!(on_tick(TICK_NS), TICK_NS);
        assert_eq!(on_tick(3 * TICK_NS + 1), 4 * TICK_NS);
        assert_eq!(on_tick(u64::MAX), u64::MAX, "no overflow");
    }

    #[test]
    fn one_timer_wakes_every_sleeper_in_order_and_never_early() {
        let ran = on_uring(async {
            let driver = monoio::spawn(one_timer_loop());
            monoio::time::sleep(Duration::from_millis(1)).await;
            assert!(spin_driven());
            let pooled = POOL.with(|p| p.borrow().len());
            // Twice: the timer is re-armed for later deadlines after it fired.
            check_ten_sleeps().await;
            check_ten_sleeps().await;
            assert_eq!(
                POOL.with(|p| p.borrow().len()),
                pooled,
                "the one timer woke them, not a timerfd each"
            );
            drop(driver);
        });
        if !ran {
            skipped();
        }
    }

    #[test]
    fn a_spin_loop_wakes_sleepers_and_hands_them_back_to_timers_when_it_stops() {
        let ran = on_uring(async {
            let spinning = Rc::new(Cell::new(true));
            let spin = monoio::spawn(busy_poll_loop(spinning.clone(), || {}));
            assert!(spin_driven());
            let pooled = POOL.with(|p| p.borrow().len());
            check_ten_sleeps().await;
            assert_eq!(
                POOL.with(|p| p.borrow().len()),
                pooled,
                "the spin loop woke them, not timerfds"
            );
            // A sleeper that outlives the loop: woken when it stops, it sleeps on a timerfd
            // for the rest and still ends at its deadline, not before.
            let due = Instant::now() + Duration::from_millis(20);
            let late_sleeper = monoio::spawn(async move {
                sleep_until(due).await;
                Instant::now() >= due
            });
            monoio::time::sleep(Duration::from_millis(2)).await;
            spinning.set(false);
            spin.await;
            assert!(!spin_driven());
            assert!(late_sleeper.await, "woke before its deadline");
        });
        if !ran {
            skipped();
        }
    }
}
