//! The machine's own stalls: how much of its time a bare spin loop on each CPU loses to things
//! no client can avoid — a hypervisor preempting the vCPU, interrupts, kernel work.
//!
//! `selftest` runs this on every CPU before each sweep and prints it beside the headline: a
//! chunk that arrives while its CPU is stalled waits out the stall, whatever the client does.
//! If stalls longer than the headline's threshold cover more than 1% of the time, the
//! added-delay p99 cannot stay under that threshold on this machine at that moment, and the
//! run says so instead of blaming the client. On a shared VM host this changes by the hour (the
//! 2-core dev VM with both vCPUs busy: 1.4 stalls/s over 1 ms in one hour, 50–100/s and late
//! at 10–40% of instants in the next, while one busy vCPU alone saw under 1/s).

use std::time::Duration;

use serde::Serialize;

use crate::foundation::clock::now_ns;

/// What one CPU lost to stalls during the probe.
#[derive(Debug, Clone, Serialize)]
pub struct CpuStalls {
    pub cpu: usize,
    /// Gaps between consecutive clock reads longer than 100 µs, per second.
    pub over_100us_per_s: f64,
    /// Gaps longer than 1 ms, per second.
    pub over_1ms_per_s: f64,
    pub max_us: f64,
    /// The share of instants at which an event would wait more than the threshold for the CPU
    /// to come back: Σ max(0, gap − threshold) ÷ probe time. Above 0.01 (1%) a p99 under the
    /// threshold is out of reach.
    pub late_share: f64,
}

/// Spins on each CPU in `cpus` (one pinned thread each, all at once) for `dur`, reading the
/// monotonic clock in a tight loop; every gap between two reads is time the thread did not run.
pub fn probe(cpus: &[core_affinity::CoreId], dur: Duration, threshold_us: f64) -> Vec<CpuStalls> {
    let threshold_ns = (threshold_us * 1000.0) as u64;
    let threads: Vec<_> = cpus
        .iter()
        .map(|&cpu| {
            std::thread::spawn(move || {
                core_affinity::set_for_current(cpu);
                spin(cpu.id, dur, threshold_ns)
            })
        })
        .collect();
    threads.into_iter().filter_map(|t| t.join().ok()).collect()
}

fn spin(cpu: usize, dur: Duration, threshold_ns: u64) -> CpuStalls {
    let start = now_ns();
    let end = start + dur.as_nanos() as u64;
    let (mut over_100us, mut over_1ms, mut max, mut late) = (0u64, 0u64, 0u64, 0u64);
    let mut last = start;
    while last < end {
        let t = now_ns();
        let gap = t - last;
        last = t;
        if gap > 100_000 {
            over_100us += 1;
            if gap > 1_000_000 {
                over_1ms += 1;
            }
        }
        max = max.max(gap);
        late += gap.saturating_sub(threshold_ns);
    }
    let secs = (last - start) as f64 / 1e9;
    CpuStalls {
        cpu,
        over_100us_per_s: over_100us as f64 / secs,
        over_1ms_per_s: over_1ms as f64 / secs,
        max_us: max as f64 / 1000.0,
        late_share: late as f64 / (last - start) as f64,
    }
}

/// One line for the console, e.g. "CPU 1: 3.0/s over 100 µs, 0.0/s over 1 ms, max 412 µs; late
/// over 100 µs at 0.02% of instants".
pub fn describe(s: &CpuStalls, threshold_us: f64) -> String {
    format!(
        "CPU {}: {:.1}/s over 100 µs, {:.1}/s over 1 ms, max {:.0} µs; over {threshold_us:.0} µs late at {:.2}% of instants",
        s.cpu,
        s.over_100us_per_s,
        s.over_1ms_per_s,
        s.max_us,
        s.late_share * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_probe_reports_every_cpu_with_sane_figures() {
        let cpus = core_affinity::get_core_ids().unwrap_or_default();
        let cpus = &cpus[..cpus.len().min(2)];
        let got = probe(cpus, Duration::from_millis(50), 100.0);
        assert_eq!(got.len(), cpus.len());
        for s in &got {
            assert!((0.0..=1.0).contains(&s.late_share), "{s:?}");
            assert!(s.over_1ms_per_s <= s.over_100us_per_s, "{s:?}");
            assert!(s.max_us > 0.0 && s.max_us.is_finite(), "{s:?}");
            assert!(describe(s, 100.0).starts_with(&format!("CPU {}:", s.cpu)));
        }
    }
}
