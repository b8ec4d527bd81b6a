//! Receive paths for the client's core, on the floor's load (`qpsbench::commands::selftest::floor`: a bare
//! sender on another CPU writing one ~200-byte message per connection per deadline), each with
//! a timestamp per completion and no HTTP, SSE or JSON, so the figures compare the kernel
//! interfaces alone:
//!
//! - `epoll`: the bare epoll reader (the floor itself);
//! - `uring-recv`: one io_uring `recv` per connection in flight, re-armed after each completion
//!   (what a monoio read costs the kernel, without monoio's tasks and futures);
//! - `uring-multishot`: one multishot `recv` per connection with a provided-buffer ring: the
//!   kernel posts a completion per arrival with no submission per read, and buffers go back to
//!   the ring once their bytes are handled.
//!
//! It prints, per path, the reader's CPU per message and per completion, and its system calls
//! per message, so the choice of the client's receive path (docs/architecture.md, "The receive
//! path") rests on figures from the machine at hand.
//!
//! Run: `cargo bench --bench recv_paths`. `FLOOR_CONNS` (default 420: the streams in flight at
//! 2,000 QPS of 32-token streams), `FLOOR_RATE` (default 64000 messages/s), `FLOOR_SECONDS`
//! (default 3). The reader is pinned to the first CPU and the sender to the last.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::{cqueue, opcode, types, IoUring};
use qpsbench::commands::selftest::floor::{measure, start_sender, FloorConfig, Load, Stamps};
use qpsbench::foundation::clock::{now_ns, thread_cpu_ns};

/// What one path's reader did.
struct Figures {
    cpu_ns: u64,
    completions: u64,
    enters: u64,
    stamps: Stamps,
}

const BUF: usize = 2048;

fn main() {
    let cfg = FloorConfig::from_env(420);
    println!(
        "receive paths: {} connections, {} messages/s for {} s",
        cfg.connections, cfg.rate, cfg.seconds
    );
    let f = measure(&cfg).expect("the floor");
    println!(
        "  epoll            {:6.2} µs/message, {:6.2} µs/read, {:.2} epoll_wait/message; bare sender {:.2} µs/message",
        f.reader_cpu_us_per_message,
        f.reader_cpu_us_per_read,
        f.epoll_wakes as f64 / f.messages.max(1) as f64,
        f.sender_us_per_message
    );
    for (name, multishot) in [("uring-recv", false), ("uring-multishot", true)] {
        let load = start_sender(&cfg).expect("the sender");
        match run_uring(load, multishot) {
            Ok((fig, sender_ns, total)) => print_path(name, fig, sender_ns, total),
            Err(e) => println!("  {name:<16} not available here: {e}"),
        }
    }
}

fn print_path(name: &str, mut fig: Figures, sender_ns: u64, total: u64) {
    let msgs = fig.stamps.delays.len().max(1) as f64;
    let (p50, p99, _) = fig.stamps.delay_us();
    println!(
        "  {name:<16} {:6.2} µs/message, {:6.2} µs/completion, {:.2} io_uring_enter/message; bare sender {:.2} µs/message; delay p50 {p50:.0} µs, p99 {p99:.0} µs",
        fig.cpu_ns as f64 / 1000.0 / msgs,
        fig.cpu_ns as f64 / 1000.0 / fig.completions.max(1) as f64,
        fig.enters as f64 / msgs,
        sender_ns as f64 / 1000.0 / total.max(1) as f64,
    );
}

/// Reads the load through one ring until every message came; returns the figures, the sender's
/// time in its writes and its message count.
fn run_uring(load: Load, multishot: bool) -> std::io::Result<(Figures, u64, u64)> {
    let Load {
        socks,
        sender,
        total,
        message_bytes,
    } = load;
    let n = socks.len();
    let mut bufs = vec![0u8; BUF * if multishot { RING } else { n }];
    // Declared before the ring, so that the ring (and every receive armed on it) is gone
    // before the provided ring's memory is freed, however this function returns.
    let provided = if multishot {
        Some(Provided::new()?)
    } else {
        None
    };
    let mut ring = IoUring::builder()
        .setup_coop_taskrun()
        .setup_single_issuer()
        .build(4096)?;
    if let Some(p) = &provided {
        p.register(&ring, &bufs)?;
    }
    for (i, s) in socks.iter().enumerate() {
        arm(&mut ring, s.as_raw_fd(), i, multishot, &mut bufs)?;
    }
    let want = total * message_bytes as u64;
    let mut fig = Figures {
        cpu_ns: 0,
        completions: 0,
        enters: 0,
        stamps: Stamps::new(n, message_bytes, total),
    };
    let mut cpu0 = None;
    let give_up = now_ns() + 30_000_000_000;
    while fig.stamps.bytes < want && now_ns() < give_up {
        ring.submit_and_wait(1)?;
        fig.enters += 1;
        cpu0.get_or_insert_with(thread_cpu_ns);
        let done: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        let t = now_ns();
        for (conn, res, flags) in done {
            let conn = conn as usize;
            fig.completions += 1;
            if res > 0 {
                let data = match cqueue::buffer_select(flags) {
                    Some(bid) => &bufs[bid as usize * BUF..][..res as usize],
                    None => &bufs[conn * BUF..][..res as usize],
                };
                fig.stamps.read(conn, data, t);
                if let (Some(p), Some(bid)) = (&provided, cqueue::buffer_select(flags)) {
                    p.recycle(bid, &bufs);
                }
            }
            // A single recv always, a multishot one once the kernel ends it (no more buffers).
            if (!multishot || !cqueue::more(flags)) && res != 0 {
                arm(
                    &mut ring,
                    socks[conn].as_raw_fd(),
                    conn,
                    multishot,
                    &mut bufs,
                )?;
            }
        }
    }
    fig.cpu_ns = cpu0.map_or(0, |c| thread_cpu_ns().saturating_sub(c));
    let sender_ns = sender
        .join()
        .map_err(|_| std::io::Error::other("sender panicked"))??;
    Ok((fig, sender_ns, total))
}

/// Queues connection `conn`'s receive: into its own buffer, or multishot from the provided ring.
fn arm(
    ring: &mut IoUring,
    fd: i32,
    conn: usize,
    multishot: bool,
    bufs: &mut [u8],
) -> std::io::Result<()> {
    let sqe = if multishot {
        opcode::RecvMulti::new(types::Fd(fd), GROUP).build()
    } else {
        let buf = &mut bufs[conn * BUF..][..BUF];
        opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), BUF as u32).build()
    };
    let sqe = sqe.user_data(conn as u64);
    // SAFETY: the fd stays open and, for a single recv, its buffer (part of `bufs`, which
    // outlives the ring) is not touched until its completion is reaped.
    while unsafe { ring.submission().push(&sqe) }.is_err() {
        ring.submit()?;
    }
    Ok(())
}

/// Buffers in the provided ring, and its group id.
const RING: usize = 4096;
const GROUP: u16 = 0;

/// The provided-buffer ring: entries the kernel takes a buffer from for each multishot arrival.
struct Provided {
    entries: *mut types::BufRingEntry,
    layout: std::alloc::Layout,
    /// Our copy of the tail (buffers handed to the kernel so far).
    tail: std::cell::Cell<u16>,
}

impl Provided {
    fn new() -> std::io::Result<Self> {
        let layout = std::alloc::Layout::from_size_align(
            RING * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(std::io::Error::other)?;
        // SAFETY: a non-zero-sized layout; zeroed memory is a valid array of ring entries.
        let entries = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
        if entries.is_null() {
            return Err(std::io::Error::other("out of memory"));
        }
        Ok(Self {
            entries,
            layout,
            tail: std::cell::Cell::new(0),
        })
    }

    /// Registers the entries with `ring` and hands it every buffer of `bufs`.
    fn register(&self, ring: &IoUring, bufs: &[u8]) -> std::io::Result<()> {
        // SAFETY: `entries` is page-aligned memory for RING entries, and outlives the ring
        // (declared before it, so dropped after it).
        unsafe {
            ring.submitter()
                .register_buf_ring(self.entries as u64, RING as u16, GROUP)?
        };
        for bid in 0..RING as u16 {
            self.recycle(bid, bufs);
        }
        Ok(())
    }

    /// Hands buffer `bid` back to the kernel.
    fn recycle(&self, bid: u16, bufs: &[u8]) {
        let tail = self.tail.get();
        // SAFETY: the slot index is masked into the ring; the kernel reads an entry only once
        // the tail (published below, with release ordering) covers it.
        unsafe {
            let e = &mut *self.entries.add(tail as usize & (RING - 1));
            e.set_addr(bufs.as_ptr().add(bid as usize * BUF) as u64);
            e.set_len(BUF as u32);
            e.set_bid(bid);
            let t = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*t).store(tail.wrapping_add(1), Ordering::Release);
        }
        self.tail.set(tail.wrapping_add(1));
    }
}

impl Drop for Provided {
    fn drop(&mut self) {
        // SAFETY: allocated in `register` with this layout; the ring that used it is gone.
        unsafe { std::alloc::dealloc(self.entries.cast(), self.layout) };
    }
}
