//! The machine's floor for streamed tokens: the CPU a receiving thread spends per small TCP read
//! with no HTTP, SSE, JSON or async runtime at all, in the shape qpsbench sees with one token per
//! chunk — many connections, each receiving a ~200-byte message every few milliseconds, written by
//! a sender on another CPU. qpsbench's client CPU per token cannot go below this on the same
//! machine; compare it with `cargo bench --bench e2e` (CPU µs per token at 1 token per chunk).
//!
//! Each message carries the sender's send time (monotonic clock, taken just before the write), so
//! the bench also prints the floor of `selftest`'s added delay: read time − send time for a
//! receiver that does nothing else.
//!
//! It prints the bare sender's floor too: the time a sender spends inside its writes per message
//! (the endpoint's CPU per chunk cannot go below it on the same machine).
//!
//! Run: `cargo bench --bench floor`. `FLOOR_CONNS` (default 64), `FLOOR_RATE` (messages/s in
//! all, default 64000: 64 streams × 1,000 tokens/s, the e2e bench's load), `FLOOR_SECONDS`
//! (default 3), `FLOOR_BUSY=1` (the receiver polls epoll without sleeping, like `--busy-poll`).
//! The receiver is pinned to the first CPU and the sender to the last.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use qpsbench::clock::{now_ns, thread_cpu_ns};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pin(index_from_end: bool) {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let id = if index_from_end {
        ids.last()
    } else {
        ids.first()
    };
    if let Some(id) = id {
        core_affinity::set_for_current(*id);
    }
}

fn main() {
    let conns = env("FLOOR_CONNS", 64) as usize;
    let rate = env("FLOOR_RATE", 64_000);
    let seconds = env("FLOOR_SECONDS", 3);
    let total = rate * seconds;
    let busy = env("FLOOR_BUSY", 0) == 1;
    const MSG: usize = 200;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        pin(true);
        let mut socks: Vec<TcpStream> = (0..conns)
            .map(|_| {
                let (s, _) = listener.accept().expect("accept");
                s.set_nodelay(true).unwrap();
                s
            })
            .collect();
        // Messages on absolute deadlines, round robin over the connections: each connection
        // gets one every conns/rate seconds, like a token stream.
        let gap = 1_000_000_000 / rate;
        let start = now_ns() + 50_000_000;
        // The time inside the writes: the bare sender's floor per message (the system call, the
        // TCP send path and, on loopback, the receiver's TCP processing, which runs on the
        // sender's CPU). The spin between deadlines is left out.
        let mut in_write_ns = 0u64;
        for i in 0..total {
            let due = start + i * gap;
            while now_ns() < due {
                std::hint::spin_loop();
            }
            let mut msg = [b'x'; MSG];
            let t = now_ns();
            msg[..8].copy_from_slice(&t.to_le_bytes());
            socks[(i as usize) % conns].write_all(&msg).expect("send");
            in_write_ns += now_ns() - t;
        }
        in_write_ns
    });

    pin(false);
    let mut socks: Vec<TcpStream> = (0..conns)
        .map(|_| {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    // SAFETY: plain epoll calls on fds owned by `socks`, which outlive the loop; `events` is a
    // valid buffer of the length passed.
    let ep = unsafe { libc::epoll_create1(0) };
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; conns];
    let mut buf = vec![0u8; 16 * 1024];
    // Per connection: bytes of the current message seen so far (reads may split messages).
    let mut partial: Vec<(usize, [u8; 8])> = vec![(0, [0; 8]); conns];
    let mut delays: Vec<u64> = Vec::with_capacity(total as usize);
    let (mut bytes, mut reads, mut wakes) = (0u64, 0u64, 0u64);
    let want = total * MSG as u64;
    let mut cpu0 = None;
    let started = now_ns();
    while bytes < want {
        let n = unsafe {
            libc::epoll_wait(
                ep,
                events.as_mut_ptr(),
                conns as i32,
                if busy { 0 } else { 5000 },
            )
        };
        if n < 0 || (n == 0 && !busy) || now_ns() - started > (seconds + 10) * 1_000_000_000 {
            break;
        }
        if n == 0 {
            continue;
        }
        cpu0.get_or_insert_with(thread_cpu_ns);
        wakes += 1;
        for ev in &events[..n as usize] {
            let c = ev.u64 as usize;
            let s = &mut socks[c];
            while let Ok(k) = s.read(&mut buf) {
                if k == 0 {
                    break;
                }
                // A timestamp per read, as qpsbench takes one.
                let t = now_ns();
                for &b in &buf[..k] {
                    let (pos, stamp) = &mut partial[c];
                    if *pos < 8 {
                        stamp[*pos] = b;
                    }
                    *pos += 1;
                    if *pos == MSG {
                        delays.push(t.saturating_sub(u64::from_le_bytes(*stamp)));
                        *pos = 0;
                    }
                }
                bytes += k as u64;
                reads += 1;
            }
        }
    }
    let cpu = thread_cpu_ns() - cpu0.unwrap_or(0);
    let in_write_ns = sender.join().unwrap();
    std::thread::sleep(Duration::from_millis(10));
    let msgs = bytes / MSG as u64;
    delays.sort_unstable();
    let q = |p: f64| {
        delays
            .get(((delays.len().max(1) - 1) as f64 * p) as usize)
            .map_or(0.0, |&d| d as f64 / 1000.0)
    };
    println!(
        "floor{}: {conns} connections, {rate} messages/s for {seconds} s: {msgs} messages in {reads} reads ({wakes} epoll wakes); receiver CPU {:.2} µs per message, {:.2} µs per read, busy {:.0}%; delay send→read p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        if busy { " (busy poll)" } else { "" },
        cpu as f64 / 1000.0 / msgs as f64,
        cpu as f64 / 1000.0 / reads.max(1) as f64,
        cpu as f64 / (seconds * 1_000_000_000) as f64 * 100.0,
        q(0.5),
        q(0.99),
        q(1.0)
    );
    println!(
        "bare sender: {:.2} µs per message inside its writes (one pre-rendered message per socket per deadline; on loopback this includes the receiver's TCP processing)",
        in_write_ns as f64 / 1000.0 / total.max(1) as f64
    );
}
