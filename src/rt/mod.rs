//! Layer 3 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `cli`; `http` and the layers after it use it.
//!
//! The runtime layer: how each thread's monoio runtime is built, and the timing primitives every
//! core (client or endpoint) runs on — precise timers and the busy-poll spin ([`timer`]), and a
//! plain yield — and a client core's receive ring ([`recv_ring`]: multishot receives whose
//! bytes go to whatever sink a connection has attached). Nothing here knows about requests or
//! measurements.

mod buf_ring;
pub mod recv_ring;
pub mod timer;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A runtime for one thread (a client core, or one of the built-in endpoint's threads). Each ring is used by its own thread only, so the kernel is told so
/// (SINGLE_ISSUER) and that completions need not interrupt the thread (COOP_TASKRUN): fewer
/// inter-processor interrupts per streamed chunk. Kernels without these flags get a plain ring.
pub fn build_runtime() -> std::io::Result<
    monoio::FusionRuntime<
        monoio::time::TimeDriver<monoio::IoUringDriver>,
        monoio::time::TimeDriver<monoio::LegacyDriver>,
    >,
> {
    let mut urb = io_uring::IoUring::builder();
    urb.setup_coop_taskrun().setup_single_issuer();
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .uring_builder(urb)
        .enable_timer()
        .build()
        .or_else(|_| {
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
        })
}

thread_local! {
    /// Pieces of work done on this thread so far (see [`note_work`]).
    static WORK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Time this thread's busy-poll loop spun with nothing to do, ns.
    static SPIN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts one piece of work done by a task of this thread (the client: a read handled; the
/// endpoint: a request read or a chunk sent). A spinning loop compares the count before and
/// after each of its rounds (the pacer's yields, the busy-poll loop): a round in which no task
/// did any work was spin; one in which tasks did was the thread's work. So the spin can be
/// reported apart, and CPU minus spin is the work.
pub fn note_work() {
    WORK.with(|w| w.set(w.get() + 1));
}

/// Pieces of work done on this thread so far.
pub fn work_done() -> u64 {
    WORK.with(std::cell::Cell::get)
}

/// Tells a spinning loop's rounds of spin from rounds of work ([`note_work`]). Work a round
/// starts can be noted only in the next one: I/O submitted to the ring runs in the kernel
/// while the loop waits on the ring, and the task it wakes may run after the loop's own next
/// poll. So a round counts as spin only if neither it nor the round after it saw work (spin
/// is undercounted a little, never work).
pub struct SpinMeter {
    work: u64,
    pending_ns: u64,
}

impl Default for SpinMeter {
    fn default() -> Self {
        Self {
            work: work_done(),
            pending_ns: 0,
        }
    }
}

impl SpinMeter {
    /// One round of the loop, `ns` long, ended now; returns the spin it proves (the previous
    /// round's time, if neither saw work).
    pub fn round(&mut self, ns: u64) -> u64 {
        let done = work_done();
        let idle = done == self.work;
        self.work = done;
        let spin = if idle { self.pending_ns } else { 0 };
        self.pending_ns = if idle { ns } else { 0 };
        spin
    }

    /// The loop stops spinning (a round still unconfirmed is dropped).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The time this thread's busy-poll loop ([`timer::busy_poll_loop`]) spent in rounds with no
/// work, ns, since the thread started.
pub fn spin_ns() -> u64 {
    SPIN.with(std::cell::Cell::get)
}

fn add_spin(ns: u64) {
    SPIN.with(|s| s.set(s.get() + ns));
}

/// Re-polls the calling task soon. Beware: monoio puts a task that wakes itself while being
/// polled at the *front* of the run queue, so this runs the same task again before any other
/// ready task — it yields to the driver's round limit, not to other tasks. Use
/// [`FairYield`] to let the core's other tasks run first.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_counts_as_spin_only_once_the_next_round_saw_no_work_either() {
        let mut m = SpinMeter::default();
        assert_eq!(m.round(10), 0, "the first round is not yet confirmed");
        assert_eq!(m.round(20), 10, "two idle rounds: the first was spin");
        note_work();
        assert_eq!(
            m.round(30),
            0,
            "work noted in this round: the round before held it"
        );
        assert_eq!(m.round(40), 0, "the round that saw work is never spin");
        assert_eq!(m.round(50), 40);
        m.reset();
        assert_eq!(m.round(60), 0, "after a reset the pending round is dropped");
    }
}
