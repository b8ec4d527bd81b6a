//! Pacer precision and cost: wakes for arrivals at a fixed rate on one core and prints how late
//! each wake was (p50/p99/max) and the CPU time spent per wake. Run: `cargo bench --bench pacer`.

use qpsbench::engine::pacer::Pacer;
use qpsbench::foundation::clock::{now_ns, thread_cpu_ns};

fn main() {
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime");
    let uring = matches!(rt, monoio::FusionRuntime::Uring(_));
    for (rate, n) in [(100u64, 300u64), (1000, 2000), (5000, 10000)] {
        let (lates, cpu) = rt.block_on(async move {
            let mut pacer = Pacer::new(uring);
            let gap = 1_000_000_000 / rate;
            let start = now_ns() + 10_000_000;
            let cpu0 = thread_cpu_ns();
            let mut lates = Vec::with_capacity(n as usize);
            for i in 0..n {
                let due = start + i * gap;
                pacer.wait_until(due, || true).await;
                lates.push(now_ns() - due);
            }
            (lates, thread_cpu_ns() - cpu0)
        });
        let mut l = lates.clone();
        l.sort_unstable();
        let q = |p: f64| l[((l.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
        println!(
            "pacer {} {rate:>5}/s: late p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs; CPU {:.1} µs per wake ({:.0}% of the core)",
            if uring { "io_uring" } else { "epoll" },
            q(0.5),
            q(0.99),
            q(1.0),
            cpu as f64 / 1000.0 / n as f64,
            cpu as f64 / (n * 1_000_000_000 / rate) as f64 * 100.0
        );
    }
}
