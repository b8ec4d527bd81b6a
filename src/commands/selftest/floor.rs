//! The machine's floor for streamed tokens, with no HTTP, SSE, JSON or async runtime at all: a
//! bare sender writes one pre-rendered message per connection per deadline (round robin, on
//! absolute deadlines, like token streams), and a bare epoll reader on another CPU reads them.
//! Neither qpsbench's endpoint (CPU per chunk) nor its client (CPU per read) can go below these
//! figures on the same machine. On loopback the receiver's TCP processing runs on the sender's
//! CPU, so the sender's figure includes it.
//!
//! Used by `selftest --ceiling` (measured in the same run as the ceilings it is compared with)
//! and by `cargo bench --bench floor`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::Duration;

use serde::Serialize;

use crate::foundation::clock::{now_ns, thread_cpu_ns};

/// The shape of the load.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    pub connections: usize,
    /// Messages per second, over all connections.
    pub rate: u64,
    pub seconds: f64,
    /// Bytes per message (a chunk's size on the wire).
    pub message_bytes: usize,
    /// The reader polls epoll without sleeping (like `--busy-poll`).
    pub busy: bool,
    pub sender_cpu: Option<core_affinity::CoreId>,
    pub reader_cpu: Option<core_affinity::CoreId>,
}

impl FloorConfig {
    /// The benches' load (`benches/floor.rs`, `benches/recv_paths.rs`): `FLOOR_CONNS` (default
    /// `connections`), `FLOOR_RATE` (messages/s in all, default 64,000), `FLOOR_SECONDS`
    /// (default 3), `FLOOR_BUSY=1` (the reader polls without sleeping); ~200-byte messages, the
    /// reader on the first CPU and the sender on the last.
    pub fn from_env(connections: usize) -> Self {
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let ids = core_affinity::get_core_ids().unwrap_or_default();
        Self {
            connections: env("FLOOR_CONNS", connections as u64) as usize,
            rate: env("FLOOR_RATE", 64_000),
            seconds: env("FLOOR_SECONDS", 3) as f64,
            message_bytes: 200,
            busy: env("FLOOR_BUSY", 0) == 1,
            sender_cpu: ids.last().copied(),
            reader_cpu: ids.first().copied(),
        }
    }
}

/// What the floor run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub connections: usize,
    pub rate: u64,
    pub messages: u64,
    pub reads: u64,
    pub epoll_wakes: u64,
    /// The bare sender's time inside its writes per message (its CPU per message: a blocking
    /// write to a loopback socket with room does not sleep).
    pub sender_us_per_message: f64,
    pub reader_cpu_us_per_message: f64,
    pub reader_cpu_us_per_read: f64,
    pub reader_busy_pct: f64,
    /// Read time − send time, µs: the floor of `selftest`'s added delay.
    pub delay_p50_us: f64,
    pub delay_p99_us: f64,
    pub delay_max_us: f64,
}

/// Runs the floor for `cfg.seconds` (plus connection setup), on two threads.
pub fn measure(cfg: &FloorConfig) -> std::io::Result<Floor> {
    let Load {
        mut socks,
        sender,
        total,
        message_bytes: msg,
    } = start_sender(cfg)?;
    let conns = socks.len();
    let rate = cfg.rate.max(1);
    let read = read_all(&mut socks, total * msg as u64, msg, cfg);
    let in_write_ns = sender
        .join()
        .map_err(|_| std::io::Error::other("the floor's sender panicked"))??;
    let mut read = read?;
    let (p50, p99, max) = read.stamps.delay_us();
    let (msgs, reads) = (read.stamps.bytes / msg as u64, read.stamps.reads);
    let per = |ns: u64, n: u64| ns as f64 / 1000.0 / n.max(1) as f64;
    Ok(Floor {
        connections: conns,
        rate,
        messages: msgs,
        reads,
        epoll_wakes: read.wakes,
        sender_us_per_message: per(in_write_ns, total),
        reader_cpu_us_per_message: per(read.cpu_ns, msgs),
        reader_cpu_us_per_read: per(read.cpu_ns, reads),
        reader_busy_pct: read.cpu_ns as f64 / (cfg.seconds * 1e9) * 100.0,
        delay_p50_us: p50,
        delay_p99_us: p99,
        delay_max_us: max,
    })
}

/// The floor's load under way: the reader's ends of the connections (non-blocking), and the
/// sender's thread, which returns the time it spent inside its writes.
pub struct Load {
    pub socks: Vec<TcpStream>,
    pub sender: std::thread::JoinHandle<std::io::Result<u64>>,
    /// Messages the sender writes in all.
    pub total: u64,
    pub message_bytes: usize,
}

/// Opens `cfg.connections` loopback connections and starts the bare sender on them (its first
/// message leaves 50 ms later); pins the calling thread to `cfg.reader_cpu`. For any reader of
/// the same load (the epoll reader here, the receive paths of `benches/recv_paths.rs`).
pub fn start_sender(cfg: &FloorConfig) -> std::io::Result<Load> {
    let conns = cfg.connections.max(1);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let total = ((cfg.rate as f64 * cfg.seconds) as u64).max(1);
    let (rate, msg, sender_cpu) = (cfg.rate.max(1), cfg.message_bytes.max(8), cfg.sender_cpu);
    let sender = std::thread::spawn(move || -> std::io::Result<u64> {
        if let Some(id) = sender_cpu {
            core_affinity::set_for_current(id);
        }
        let mut socks = Vec::with_capacity(conns);
        for _ in 0..conns {
            let (s, _) = listener.accept()?;
            s.set_nodelay(true)?;
            socks.push(s);
        }
        send_on_deadlines(&mut socks, rate, total, msg)
    });
    if let Some(id) = cfg.reader_cpu {
        core_affinity::set_for_current(id);
    }
    let mut socks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let s = TcpStream::connect(addr)?;
        s.set_nonblocking(true)?;
        socks.push(s);
    }
    Ok(Load {
        socks,
        sender,
        total,
        message_bytes: msg,
    })
}

/// Messages on absolute deadlines, round robin over the connections: each connection gets one
/// every conns/rate seconds, like a token stream. Returns the time spent inside the writes (the
/// spin between deadlines is left out).
fn send_on_deadlines(
    socks: &mut [TcpStream],
    rate: u64,
    total: u64,
    msg: usize,
) -> std::io::Result<u64> {
    let gap = 1_000_000_000 / rate;
    let start = now_ns() + 50_000_000;
    let mut in_write_ns = 0u64;
    let mut buf = vec![b'x'; msg];
    for i in 0..total {
        let due = start + i * gap;
        while now_ns() < due {
            std::hint::spin_loop();
        }
        let t = now_ns();
        // Each message carries its send time, for the reader's delay.
        buf[..8].copy_from_slice(&t.to_le_bytes());
        socks[(i as usize) % socks.len()].write_all(&buf)?;
        in_write_ns += now_ns() - t;
    }
    Ok(in_write_ns)
}

/// Splits each connection's bytes into the sender's messages (reads may split or join them),
/// and keeps each message's delay: its read time − the send time stamped in its first 8 bytes.
pub struct Stamps {
    msg: usize,
    /// Per connection: bytes of the current message seen so far, and its stamp's bytes.
    partial: Vec<(usize, [u8; 8])>,
    pub delays: Vec<u64>,
    pub bytes: u64,
    pub reads: u64,
}

impl Stamps {
    pub fn new(conns: usize, message_bytes: usize, expected: u64) -> Self {
        Self {
            msg: message_bytes.max(8),
            partial: vec![(0, [0; 8]); conns],
            delays: Vec::with_capacity(expected as usize),
            bytes: 0,
            reads: 0,
        }
    }

    /// One read of `data` on connection `conn`, taken at `t` (monotonic ns).
    pub fn read(&mut self, conn: usize, data: &[u8], t: u64) {
        let (pos, stamp) = &mut self.partial[conn];
        for &b in data {
            if *pos < 8 {
                stamp[*pos] = b;
            }
            *pos += 1;
            if *pos == self.msg {
                self.delays
                    .push(t.saturating_sub(u64::from_le_bytes(*stamp)));
                *pos = 0;
            }
        }
        self.bytes += data.len() as u64;
        self.reads += 1;
    }

    /// p50, p99 and max of the delays, µs (sorts them).
    pub fn delay_us(&mut self) -> (f64, f64, f64) {
        self.delays.sort_unstable();
        let q = |p: f64| {
            self.delays
                .get(((self.delays.len().max(1) - 1) as f64 * p) as usize)
                .map_or(0.0, |&d| d as f64 / 1000.0)
        };
        (q(0.5), q(0.99), q(1.0))
    }
}

/// What the reader saw.
struct Received {
    wakes: u64,
    cpu_ns: u64,
    stamps: Stamps,
}

/// Reads every connection through one epoll set until `want` bytes came (or the sender stalled
/// for the run's length plus 10 s), taking a timestamp per read as qpsbench does.
fn read_all(
    socks: &mut [TcpStream],
    want: u64,
    msg: usize,
    cfg: &FloorConfig,
) -> std::io::Result<Received> {
    // SAFETY: plain epoll calls on fds owned by `socks`, which outlive the loop; `events` is a
    // valid buffer of the length passed; the epoll fd is closed before returning.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; socks.len()];
    let mut buf = vec![0u8; 16 * 1024];
    let mut stamps = Stamps::new(socks.len(), msg, want / msg as u64);
    let (mut wakes, mut cpu0) = (0, None);
    let started = now_ns();
    let give_up = started + ((cfg.seconds + 10.0) * 1e9) as u64;
    let timeout = if cfg.busy { 0 } else { 5000 };
    while stamps.bytes < want {
        let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, timeout) };
        if n < 0 || (n == 0 && !cfg.busy) || now_ns() > give_up {
            break;
        }
        if n == 0 {
            continue;
        }
        cpu0.get_or_insert_with(thread_cpu_ns);
        wakes += 1;
        for ev in &events[..n as usize] {
            let c = ev.u64 as usize;
            while let Ok(k) = socks[c].read(&mut buf) {
                if k == 0 {
                    break;
                }
                stamps.read(c, &buf[..k], now_ns());
            }
        }
    }
    let cpu_ns = cpu0.map_or(0, |c| thread_cpu_ns().saturating_sub(c));
    // SAFETY: `ep` is the epoll fd created above, closed once.
    unsafe { libc::close(ep) };
    std::thread::sleep(Duration::from_millis(10));
    Ok(Received {
        wakes,
        cpu_ns,
        stamps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_reads_every_message_it_sends() {
        let f = measure(&FloorConfig {
            connections: 4,
            rate: 2000,
            seconds: 0.2,
            message_bytes: 200,
            busy: false,
            sender_cpu: None,
            reader_cpu: None,
        })
        .unwrap();
        assert_eq!(f.messages, 400);
        assert!(f.reads >= 1 && f.reads <= 400, "{f:?}");
        assert!(f.sender_us_per_message > 0.0);
        assert!(f.delay_p50_us <= f.delay_max_us);
    }
}
