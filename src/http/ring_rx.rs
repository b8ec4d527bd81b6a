//! An exchange whose response is read in place from the core's receive ring (`rt::recv_ring`):
//! the request is written through monoio as usual, while the ring's drain hands each arrival's
//! bytes straight to the [`ResponseReader`] and the handler, with the drain's timestamp. The
//! exchange's task sleeps until the response has ended (one wake-up per response, not per read)
//! or a read deadline of the handler passes.
//!
//! Data flow: `http::conn::Conn::exchange` calls [`exchange`] for a connection registered on a
//! ring ([`RingConn`], by [`register`] at connect), with the request's write; TLS connections
//! never are (rustls decrypts per connection).

use std::cell::Cell;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use super::handler::{Completed, ExchangeError, Failure, ResponseHandler};
use super::response::ResponseReader;
use crate::foundation::clock::now_ns;
use crate::rt::recv_ring::{RecvRing, Sink, SlotId};

/// A connection's place on its core's receive ring; releasing it ends the receive.
pub struct RingConn {
    pub ring: Rc<RecvRing>,
    pub id: SlotId,
}

impl Drop for RingConn {
    fn drop(&mut self) {
        self.ring.release(self.id);
    }
}

thread_local! {
    /// Connections of this thread that read from a receive ring, and that read through monoio
    /// (TLS, or no ring), counted at connect (tests and `metadata.json` read them).
    static OPENED: (Cell<u64>, Cell<u64>) = const { (Cell::new(0), Cell::new(0)) };
}

/// Connections this thread opened on a receive ring, and by monoio reads.
pub fn opened_by_path() -> (u64, u64) {
    OPENED.with(|(r, m)| (r.get(), m.get()))
}

/// Registers a freshly opened plain connection on this thread's ring, if it has one.
pub(super) fn register(fd: std::os::fd::RawFd, tls: bool) -> Option<RingConn> {
    let ring = (!tls).then(crate::rt::recv_ring::current).flatten();
    let conn = ring.and_then(|ring| ring.register(fd).ok().map(|id| RingConn { ring, id }));
    OPENED.with(|(r, m)| {
        let c = if conn.is_some() { r } else { m };
        c.set(c.get() + 1)
    });
    conn
}

/// The sink of one exchange: the reader, the handler, and how the response ended.
struct RingRx<'h, H> {
    reader: &'h mut ResponseReader,
    handler: &'h mut H,
    result: Option<Result<Completed, Failure>>,
    waker: Option<Waker>,
    /// The read deadline the task sleeps until (None: none). A read that brings the handler's
    /// deadline before it (the first read arms the idle timeout, the first token swaps the
    /// first-token deadline for the idle one) wakes the task to sleep less; later deadlines
    /// are seen when it wakes.
    sleeps_until: Option<u64>,
}

impl<H> RingRx<'_, H> {
    fn settle(&mut self, r: Result<Completed, Failure>) {
        self.result = Some(r);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

impl<H: ResponseHandler> Sink for RingRx<'_, H> {
    fn data(&mut self, bytes: &[u8], t_ns: u64) {
        if self.result.is_some() {
            // The ring detaches a finished sink, so nothing comes after the end; were it to,
            // it would not be part of this response.
            return;
        }
        match self.reader.feed(bytes, t_ns, self.handler) {
            Ok(None) => {
                let sooner = self
                    .handler
                    .read_deadline()
                    .is_some_and(|(at, _)| self.sleeps_until.is_none_or(|s| at < s));
                if sooner {
                    if let Some(w) = self.waker.take() {
                        w.wake();
                    }
                }
            }
            Ok(Some(done)) => self.settle(Ok(done)),
            Err(f) => self.settle(Err(f)),
        }
    }

    fn end(&mut self, result: std::io::Result<()>, t_ns: u64) {
        if self.result.is_some() {
            return;
        }
        let r = match result {
            Ok(()) => self.reader.eof(t_ns, self.handler),
            Err(e) => Err(self.reader.fail(ExchangeError::Io(e))),
        };
        self.settle(r);
    }

    fn finished(&self) -> bool {
        self.result.is_some()
    }
}

/// Detaches the sink however the exchange ends (completed, failed, or dropped by a timeout).
struct Attached<'a> {
    ring: &'a RecvRing,
    id: SlotId,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.ring.detach(self.id);
    }
}

/// Runs `write` (the request's write on the connection) and reads the response from ring
/// `ring`, slot `id`.
pub(super) async fn exchange<H: ResponseHandler>(
    ring: &RecvRing,
    id: SlotId,
    write: impl std::future::Future<Output = std::io::Result<()>>,
    handler: &mut H,
    reader: &mut ResponseReader,
) -> Result<Completed, Failure> {
    let mut rx = RingRx {
        reader,
        handler,
        result: None,
        waker: None,
        sleeps_until: None,
    };
    // From here on the sink is used only through this pointer, by this task and by drains,
    // which run on this thread only while this task is suspended.
    let rx: *mut RingRx<'_, H> = &mut rx;
    // SAFETY: `rx` lives in this future's state, which is pinned while it runs; `_attached`
    // is declared after it, so it is dropped first and detaches the sink before `rx` goes
    // away, however the future ends (a dropped future runs its destructors).
    unsafe { ring.attach(id, rx) };
    let _attached = Attached { ring, id };
    if let Err(e) = write.await {
        // SAFETY: no drain runs while this task runs.
        return Err(unsafe { (*rx).reader.fail(ExchangeError::Io(e)) });
    }
    loop {
        // SAFETY: as above; each borrow ends before the next await.
        let deadline = unsafe {
            if let Some(r) = (*rx).result.take() {
                return r;
            }
            let d = (*rx).handler.read_deadline();
            (*rx).sleeps_until = d.map(|(at, _)| at);
            d
        };
        // Ready once the response has ended, or a read moved the deadline sooner (the sink
        // took the waker).
        let mut waited = false;
        let settled = std::future::poll_fn(|cx| {
            // SAFETY: as above.
            let rx = unsafe { &mut *rx };
            if rx.result.is_some() || (waited && rx.waker.is_none()) {
                return Poll::Ready(());
            }
            waited = true;
            rx.waker = Some(cx.waker().clone());
            Poll::Pending
        });
        match deadline {
            None => settled.await,
            Some((at, kind)) => {
                let now = now_ns();
                if at <= now {
                    // SAFETY: as above.
                    return Err(unsafe { (*rx).reader.fail(ExchangeError::Timeout(kind)) });
                }
                // On expiry the loop looks again: reads since may have moved the deadline.
                let _ = monoio::time::timeout(Duration::from_nanos(at - now), settled).await;
            }
        }
    }
}
