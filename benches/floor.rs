//! The machine's floor for streamed tokens: the CPU a receiving thread spends per small TCP read
//! with no HTTP, SSE, JSON or async runtime at all, in the shape qpsbench sees with one token per
//! chunk — many connections, each receiving a ~200-byte message every few milliseconds, written by
//! a sender on another CPU. qpsbench's client CPU per token cannot go below this on the same
//! machine; compare it with `cargo bench --bench e2e` (CPU µs per token at 1 token per chunk).
//! The measurement itself is `qpsbench::commands::selftest::floor` (also run by `selftest --ceiling`).
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

use qpsbench::commands::selftest::floor::{measure, FloorConfig};

fn main() {
    let cfg = FloorConfig::from_env(64);
    let f = measure(&cfg).expect("the floor's sockets");
    println!(
        "floor{}: {} connections, {} messages/s for {} s: {} messages in {} reads ({} epoll wakes); receiver CPU {:.2} µs per message, {:.2} µs per read, busy {:.0}%; delay send→read p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        if cfg.busy { " (busy poll)" } else { "" },
        f.connections,
        f.rate,
        cfg.seconds,
        f.messages,
        f.reads,
        f.epoll_wakes,
        f.reader_cpu_us_per_message,
        f.reader_cpu_us_per_read,
        f.reader_busy_pct,
        f.delay_p50_us,
        f.delay_p99_us,
        f.delay_max_us
    );
    println!(
        "bare sender: {:.2} µs per message inside its writes (one pre-rendered message per socket per deadline; on loopback this includes the receiver's TCP processing)",
        f.sender_us_per_message
    );
}
