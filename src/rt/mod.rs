//! The runtime layer: how each thread's monoio runtime is built, and the timing primitives every
//! core (client or endpoint) runs on — precise timers and the busy-poll spin ([`timer`]), and a
//! plain yield. Nothing here knows about requests or measurements.

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
