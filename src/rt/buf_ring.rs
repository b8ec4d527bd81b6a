//! The provided-buffer ring of a client core's receive ring (`rt::recv_ring`): buffers the
//! kernel picks from for each multishot receive, each handed back once its bytes are handled.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{types, IoUring};

/// Buffers (a power of two) and their size: 8 MiB per core. An SSE chunk is a few hundred
/// bytes, and each buffer goes back to the kernel as soon as its bytes are handled, so the ring
/// runs dry only when thousands of reads wait unhandled: a core far past its ceiling. The
/// kernel then ends the receive with ENOBUFS, keeps the data in the socket, and the receive is
/// armed again, at a cost: at 5,000 QPS on a core that drives ~3,000, 1,024 buffers of 4 KiB ran
/// dry ~80,000 times in a 10 s level, and the core fell further behind than monoio reads did;
/// 4,096 of 2 KiB ran dry 26,000–38,000 times, and the core kept up better than monoio reads.
const BUFS: usize = 4096;
const BUF_LEN: usize = 2048;
/// The buffer group the receives name.
pub const GROUP: u16 = 0;

/// The provided-buffer ring: the entries the kernel takes a buffer from for each arrival, and
/// the buffers.
pub struct Provided {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    bufs: Box<[u8]>,
    /// Our copy of the tail (buffers handed to the kernel so far).
    tail: Cell<u16>,
    leaked: bool,
}

impl Provided {
    pub fn new() -> io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(
            BUFS * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(io::Error::other)?;
        // SAFETY: a non-zero-sized layout; zeroed memory is a valid array of ring entries.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(io::Error::other("out of memory"));
        }
        Ok(Self {
            entries,
            layout,
            bufs: vec![0u8; BUFS * BUF_LEN].into_boxed_slice(),
            tail: Cell::new(0),
            leaked: false,
        })
    }

    /// Registers the entries with `ring` and hands it every buffer.
    pub fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` is page-aligned memory for BUFS entries that outlives the ring
        // (`RecvRing` drops the ring first).
        unsafe {
            ring.submitter()
                .register_buf_ring(self.entries as u64, BUFS as u16, GROUP)?
        };
        for bid in 0..BUFS as u16 {
            self.recycle(bid);
        }
        Ok(())
    }

    /// The first `len` bytes of buffer `bid`.
    pub fn buf(&self, bid: u16, len: usize) -> &[u8] {
        &self.bufs[bid as usize * BUF_LEN..][..len.min(BUF_LEN)]
    }

    /// Hands buffer `bid` back to the kernel.
    pub fn recycle(&self, bid: u16) {
        let tail = self.tail.get();
        // SAFETY: the slot index is masked into the ring; the kernel reads an entry only once
        // the tail (published below, with release ordering) covers it.
        unsafe {
            let e = &mut *self.entries.add(tail as usize & (BUFS - 1));
            e.set_addr(self.bufs.as_ptr().add(bid as usize * BUF_LEN) as u64);
            e.set_len(BUF_LEN as u32);
            e.set_bid(bid);
            let t = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*t).store(tail.wrapping_add(1), Ordering::Release);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    /// The kernel may still write here: never free it.
    pub fn leak(&mut self) {
        self.leaked = true;
        std::mem::forget(std::mem::take(&mut self.bufs));
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: allocated in `new` with this layout; the ring that used it is gone.
            unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
        }
    }
}
