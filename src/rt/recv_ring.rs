//! The client's receive ring: a second io_uring per client core that carries one multishot
//! `recv` per plain-HTTP connection, its data landing in a ring of provided buffers.
//!
//! Data flow: `http::conn` registers each connection here once it is open ([`RecvRing::register`],
//! which arms its receive) and attaches a [`Sink`] for the length of each exchange. [`RecvRing::drain`]
//! — run by the core's reaper task ([`reap`]) when the ring's fd turns readable, by the pacer
//! whenever it would otherwise spin, and by each round of the busy-poll loop — reads the clock once per batch of completions, hands
//! each completion's bytes to its connection's sink where they lie (the sink parses and
//! records), and gives the buffer back to the kernel. No task is woken per read: a sink wakes
//! its exchange's task once, when the response has ended. Bytes that arrive while no sink is
//! attached (a response can land before its task first runs) are kept for the next sink, and
//! tell the pool that an idle connection is not clean.
//!
//! monoio cannot submit these operations (its driver is crate-private), hence a ring of our
//! own; why this and not a fork of monoio or a loop of our own: docs/architecture.md, "Where a
//! core's time goes, and the receive path". A kernel without multishot receive or provided
//! buffer rings makes [`RecvRing::new`] fail, and the core keeps monoio's reads.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::rc::Rc;

use io_uring::{cqueue, opcode, types, IoUring};

use super::buf_ring::{Provided, GROUP};
use crate::foundation::clock::now_ns;

/// Receives a connection's bytes where they land.
pub trait Sink {
    /// One receive, completed at `t_ns` (the drain's clock reading for its batch).
    fn data(&mut self, bytes: &[u8], t_ns: u64);
    /// The connection ended at `t_ns`: `Ok` when the peer closed it, `Err` on a socket error.
    fn end(&mut self, result: io::Result<()>, t_ns: u64);
    /// The sink wants nothing more (its response has ended): the ring detaches it, and keeps
    /// what comes next for the idle check (a close, stray bytes) or the next sink.
    fn finished(&self) -> bool;
}

/// Completions the kernel can hold before the drain: beyond it they wait in its overflow list.
const CQ_ENTRIES: u32 = 8192;
/// Completions read off the queue per pass.
const BATCH: usize = 64;

/// A registered connection: its slot and the slot's generation (a released slot's late
/// completions are recognised by the old generation and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotId {
    index: u32,
    gen: u32,
}

impl SlotId {
    fn user_data(self) -> u64 {
        (u64::from(self.gen) << 32) | u64::from(self.index)
    }

    fn from_user_data(d: u64) -> Self {
        Self {
            index: d as u32,
            gen: (d >> 32) as u32,
        }
    }
}

/// A connection's state on the ring.
#[derive(Default)]
struct Slot {
    gen: u32,
    fd: RawFd,
    live: bool,
    /// The attached sink; its lifetime is erased (see [`RecvRing::attach`]).
    sink: Option<*mut dyn Sink>,
    /// Reads that came while no sink was attached: (time, length), their bytes in `early_bytes`.
    early: Vec<(u64, usize)>,
    early_bytes: Vec<u8>,
    /// The connection ended while no sink was attached: (errno or 0 for a close, time).
    ended: Option<(i32, u64)>,
}

/// What one completion brought.
enum Event<'a> {
    Data(&'a [u8]),
    End(i32),
}

/// One client core's receive ring.
pub struct RecvRing {
    // Field order is drop order: the ring goes before the memory it receives into.
    ring: IoUring,
    provided: Provided,
    slots: RefCell<Vec<Slot>>,
    free: RefCell<Vec<u32>>,
    /// Multishot receives the kernel has not ended yet (released slots' included).
    armed: Cell<usize>,
    /// Receives pushed but not yet submitted.
    unsubmitted: Cell<bool>,
    /// A drain is running (a sink's work can reach code that drains: it must not nest).
    draining: Cell<bool>,
    /// The ring's fd (a duplicate) as monoio sees it, to wait for completions.
    readiness: monoio::net::UnixStream,
}

impl RecvRing {
    /// A ring with its provided buffers registered; fails where the kernel lacks multishot
    /// receive (6.0) or provided-buffer rings (5.19). Must be called inside a monoio runtime.
    pub fn new() -> io::Result<Self> {
        // COOP_TASKRUN: an arrival must not interrupt the core's thread (on loopback the
        // interrupt is sent from the endpoint's CPU, and on a VM it is an exit: without the flag
        // both sides spent ~45% more CPU per chunk). The thread enters the kernel often enough
        // (monoio's ring), and a sleeping thread is still woken.
        let ring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .build(256)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::RecvMulti::CODE) {
            return Err(io::Error::other("no multishot receive in this kernel"));
        }
        let provided = Provided::new()?;
        provided.register(&ring)?;
        use std::os::fd::AsRawFd;
        // SAFETY: `dup` returns a new descriptor owned by nobody else, which the UnixStream
        // then owns and closes. It refers to the ring, not a socket: monoio is asked only to
        // wait for it to be readable (an io_uring fd is readable while completions wait).
        let dup = unsafe { libc::dup(ring.as_raw_fd()) };
        if dup < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above: `dup` is a fresh descriptor that this stream alone owns.
        let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(dup) };
        Ok(Self {
            ring,
            provided,
            slots: RefCell::default(),
            free: RefCell::default(),
            armed: Cell::new(0),
            unsubmitted: Cell::new(false),
            draining: Cell::new(false),
            readiness: monoio::net::UnixStream::from_std(std)?,
        })
    }

    /// Registers connection socket `fd` and arms its receive.
    pub fn register(&self, fd: RawFd) -> io::Result<SlotId> {
        let index = {
            let mut slots = self.slots.borrow_mut();
            let index = match self.free.borrow_mut().pop() {
                Some(i) => i,
                None => {
                    slots.push(Slot::default());
                    slots.len() as u32 - 1
                }
            };
            let s = &mut slots[index as usize];
            s.fd = fd;
            s.live = true;
            index
        };
        let id = SlotId {
            index,
            gen: self.slots.borrow()[index as usize].gen,
        };
        if let Err(e) = self.arm(id) {
            // Nothing was queued: the slot is forgotten (the socket is the caller's, and reads
            // through monoio), not shut down.
            self.forget(id);
            return Err(e);
        }
        // A failed submit leaves the receive queued for the next submit (a drain's, or the
        // next connection's); the data waits in the socket meanwhile.
        if self.ring.submit().is_ok() {
            self.unsubmitted.set(false);
        }
        Ok(id)
    }

    /// Frees slot `id` for another connection; its late completions carry the old generation.
    fn forget(&self, id: SlotId) {
        let mut slots = self.slots.borrow_mut();
        let s = &mut slots[id.index as usize];
        *s = Slot {
            gen: s.gen.wrapping_add(1),
            ..Slot::default()
        };
        self.free.borrow_mut().push(id.index);
    }

    /// Queues `id`'s multishot receive (submitted by the caller or at the drain's end).
    fn arm(&self, id: SlotId) -> io::Result<()> {
        let fd = self.slots.borrow()[id.index as usize].fd;
        let sqe = opcode::RecvMulti::new(types::Fd(fd), GROUP)
            .build()
            .user_data(id.user_data());
        // SAFETY: one thread uses this ring, and no other submission queue handle is alive
        // here. The socket stays open until its final completion (the ring holds a reference
        // to it), and its data goes to provided buffers that outlive the ring.
        unsafe {
            let mut sq = self.ring.submission_shared();
            if sq.push(&sqe).is_err() {
                drop(sq);
                self.ring.submit()?;
                self.ring
                    .submission_shared()
                    .push(&sqe)
                    .map_err(|_| io::Error::other("receive ring full"))?;
            }
        }
        self.armed.set(self.armed.get() + 1);
        self.unsubmitted.set(true);
        Ok(())
    }

    /// Attaches `sink` to connection `id` and hands it at once what came while none was.
    ///
    /// # Safety
    /// `sink` must stay valid, and be used by nobody else while a drain may run, until
    /// [`Self::detach`] (the caller's guard does it before the sink goes out of scope).
    pub unsafe fn attach(&self, id: SlotId, sink: *mut (dyn Sink + '_)) {
        // SAFETY (the transmute): only the lifetime is erased; the caller's contract above is
        // what keeps the pointer valid while it is stored.
        let sink: *mut (dyn Sink + 'static) = unsafe { std::mem::transmute(sink) };
        let (early, bytes, ended) = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[id.index as usize];
            s.sink = Some(sink);
            (
                std::mem::take(&mut s.early),
                std::mem::take(&mut s.early_bytes),
                s.ended.take(),
            )
        };
        // Through `deliver`, which detaches the sink once it is finished: what came after its
        // response is then kept again, for the idle check.
        let mut off = 0;
        for (t, len) in early {
            self.deliver(id, Event::Data(&bytes[off..off + len]), t);
            off += len;
        }
        if let Some((errno, t)) = ended {
            self.deliver(id, Event::End(errno), t);
        }
    }

    /// Detaches connection `id`'s sink: what arrives next is kept for the next one.
    pub fn detach(&self, id: SlotId) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id.index as usize) {
            if s.gen == id.gen {
                s.sink = None;
            }
        }
    }

    /// Nothing has arrived on idle connection `id` (no stray bytes, no close).
    pub fn is_quiet(&self, id: SlotId) -> bool {
        let slots = self.slots.borrow();
        let s = &slots[id.index as usize];
        s.early.is_empty() && s.ended.is_none()
    }

    /// Forgets connection `id` and shuts its socket down, which ends its receive (the ring's
    /// reference would otherwise keep the socket open after the caller closes its fd).
    pub fn release(&self, id: SlotId) {
        let fd = match self.slots.borrow().get(id.index as usize) {
            Some(s) if s.gen == id.gen && s.live => s.fd,
            _ => return,
        };
        // SAFETY: `fd` is the caller's live socket, closed only after this call.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        self.forget(id);
    }

    /// Handles every completion waiting; returns how many. Does nothing when called from
    /// inside a drain (a sink's work reaching the pacer or the pool).
    pub fn drain(&self) -> usize {
        if self.draining.replace(true) {
            return 0;
        }
        let mut total = 0;
        loop {
            // The clock is read before the queue is looked at: every completion seen now
            // had arrived by then, however long the ones before it take to handle.
            let t = now_ns();
            // SAFETY: one thread uses this ring and no other completion queue handle is
            // alive; each handle is dropped (syncing the head) before completions are handled.
            let waiting = unsafe { self.ring.completion_shared() }.len();
            if waiting == 0 {
                // Completions beyond the queue's size wait in the kernel's overflow list: a
                // submit (which then asks for events) moves them into the queue.
                // SAFETY: as above; the handle lives for this statement only.
                if unsafe { self.ring.submission_shared() }.cq_overflow() {
                    self.unsubmitted.set(false);
                    if self.ring.submit().is_ok() {
                        continue;
                    }
                }
                break;
            }
            let mut left = waiting;
            while left > 0 {
                let mut batch = [(0u64, 0i32, 0u32); BATCH];
                let mut n = 0;
                // SAFETY: as above.
                for c in unsafe { self.ring.completion_shared() }.take(left.min(BATCH)) {
                    batch[n] = (c.user_data(), c.result(), c.flags());
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                for &(d, res, flags) in &batch[..n] {
                    self.complete(SlotId::from_user_data(d), res, flags, t);
                }
                left -= n;
                total += n;
            }
        }
        if self.unsubmitted.replace(false) {
            // A failed submit leaves the receive queued; the next drain submits it again.
            if self.ring.submit().is_err() {
                self.unsubmitted.set(true);
            }
        }
        self.draining.set(false);
        total
    }

    /// Handles one completion of connection `id`.
    fn complete(&self, id: SlotId, res: i32, flags: u32, t: u64) {
        let more = cqueue::more(flags);
        if !more {
            self.armed.set(self.armed.get() - 1);
        }
        let bid = cqueue::buffer_select(flags);
        let current = self
            .slots
            .borrow()
            .get(id.index as usize)
            .is_some_and(|s| s.live && s.gen == id.gen);
        if current {
            if res > 0 {
                let b = bid.map_or(&[][..], |b| self.provided.buf(b, res as usize));
                crate::rt::note_work();
                self.deliver(id, Event::Data(b), t);
            } else if res != -libc::ENOBUFS {
                self.deliver(id, Event::End(-res), t);
            }
            // A receive the kernel ended while the connection is open (out of buffers, or a
            // completion queue that overflowed) is armed again; the socket kept the data.
            if !more && (res > 0 || res == -libc::ENOBUFS) {
                let _ = self.arm(id);
            }
        }
        if let Some(b) = bid {
            self.provided.recycle(b);
        }
    }

    /// Hands an event to `id`'s sink, or keeps it for the next one.
    fn deliver(&self, id: SlotId, event: Event<'_>, t: u64) {
        let sink = {
            let mut slots = self.slots.borrow_mut();
            let s = &mut slots[id.index as usize];
            match s.sink {
                Some(p) => p,
                None => {
                    match event {
                        Event::Data(b) => {
                            s.early.push((t, b.len()));
                            s.early_bytes.extend_from_slice(b);
                        }
                        Event::End(errno) => s.ended = Some((errno, t)),
                    }
                    return;
                }
            }
        };
        // SAFETY: attached sinks are valid until detached ([`Self::attach`]'s contract), and the
        // slots are not borrowed while the sink runs (its work may register connections).
        let finished = unsafe {
            match event {
                Event::Data(b) => (*sink).data(b, t),
                Event::End(errno) => (*sink).end(end_result(errno), t),
            }
            (*sink).finished()
        };
        if finished {
            self.detach(id);
        }
    }
}

/// 0: the peer closed; else the errno of a failed receive.
fn end_result(errno: i32) -> io::Result<()> {
    match errno {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

impl Drop for RecvRing {
    fn drop(&mut self) {
        // Connections still registered end their receives now. If the kernel has not ended
        // every receive within a second, the buffers are leaked rather than freed under it.
        for s in self.slots.get_mut().iter().filter(|s| s.live) {
            // SAFETY: a live slot's socket is still open (its connection releases it first).
            unsafe { libc::shutdown(s.fd, libc::SHUT_RDWR) };
        }
        let give_up = now_ns() + 1_000_000_000;
        while self.armed.get() > 0 && now_ns() < give_up {
            let ts = types::Timespec::new().nsec(10_000_000);
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            // SAFETY: as in `drain`.
            for c in unsafe { self.ring.completion_shared() } {
                if !cqueue::more(c.flags()) {
                    self.armed.set(self.armed.get() - 1);
                }
            }
        }
        if self.armed.get() > 0 {
            self.provided.leak();
        }
    }
}

thread_local! {
    /// This thread's receive ring, when it has one (client cores only).
    static CURRENT: RefCell<Option<Rc<RecvRing>>> = const { RefCell::new(None) };
}

/// Gives this thread a receive ring (and spawns its reaper); returns why not where the kernel
/// cannot. Call inside the thread's monoio runtime.
pub fn install() -> io::Result<()> {
    let ring = Rc::new(RecvRing::new()?);
    CURRENT.with(|c| *c.borrow_mut() = Some(ring.clone()));
    drop(monoio::spawn(reap(ring)));
    Ok(())
}

/// Removes this thread's receive ring: no connection opened after this registers on it (the
/// reaper, and connections still open, keep it until the runtime ends).
pub fn uninstall() {
    CURRENT.with(|c| c.borrow_mut().take());
}

/// This thread's receive ring.
pub fn current() -> Option<Rc<RecvRing>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Handles this thread's waiting receive completions, if it has a ring; how many.
pub fn drain_current() -> usize {
    CURRENT.with(|c| c.borrow().as_ref().map_or(0, |r| r.drain()))
}

/// The reaper: waits (through monoio) for the ring to hold completions and drains them, one
/// wake-up per batch. It lives as long as the thread's runtime (which drops it, and with it the
/// ring once no connection holds it).
async fn reap(ring: Rc<RecvRing>) {
    while ring.readiness.readable(false).await.is_ok() {
        ring.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Collects bytes until it holds `want` of them.
    struct Collect {
        got: Vec<u8>,
        want: usize,
        ended: bool,
    }

    impl Sink for Collect {
        fn data(&mut self, bytes: &[u8], _t_ns: u64) {
            self.got.extend_from_slice(bytes);
        }
        fn end(&mut self, _result: io::Result<()>, _t_ns: u64) {
            self.ended = true;
        }
        fn finished(&self) -> bool {
            self.ended || self.got.len() >= self.want
        }
    }

    /// Drains until `done` holds (2 s at most: completions need only the thread to enter the
    /// kernel, which each sleep does).
    fn drain_until(ring: &RecvRing, mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..2000 {
            ring.drain();
            if done() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn bytes_without_a_sink_wait_for_the_next_and_a_finished_sink_is_detached() {
        let mut rt = crate::rt::build_runtime().expect("runtime");
        rt.block_on(async {
            let ring = match RecvRing::new() {
                Ok(r) => r,
                Err(e) if std::env::var_os("QPSBENCH_REQUIRE_IO_URING").is_none() => {
                    eprintln!("SKIPPED: no receive ring here ({e})");
                    return;
                }
                Err(e) => panic!("no receive ring: {e}"),
            };
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            use std::os::fd::AsRawFd;
            let id = ring.register(client.as_raw_fd()).unwrap();
            assert!(ring.is_quiet(id));

            server.write_all(b"early").unwrap();
            assert!(drain_until(&ring, || !ring.is_quiet(id)), "kept");
            let mut sink = Collect {
                got: Vec::new(),
                want: 8,
                ended: false,
            };
            let p: *mut Collect = &mut sink;
            // SAFETY: `sink` outlives its attachment: it is detached below before it is read.
            unsafe { ring.attach(id, p) };
            assert!(ring.is_quiet(id), "handed to the sink");
            server.write_all(b"abc").unwrap();
            // SAFETY: drains run only inside `drain_until`, on this thread.
            assert!(drain_until(&ring, || unsafe { (*p).got.len() } == 8));
            // Finished: what follows is kept for the idle check, not given to the sink.
            server.write_all(b"zz").unwrap();
            assert!(
                drain_until(&ring, || !ring.is_quiet(id)),
                "stray bytes seen"
            );
            ring.detach(id);
            assert_eq!(sink.got, b"earlyabc");

            drop(server);
            ring.release(id);
            assert!(
                drain_until(&ring, || ring.armed.get() == 0),
                "receive ended"
            );
            drop(client);
        });
    }
}
