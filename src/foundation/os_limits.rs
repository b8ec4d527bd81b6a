//! Limits of the box, checked before a run: the open-file limit (raised from its soft to its hard
//! value, since every connection is a file) and, against the planned concurrency, the open-file
//! limit and the ephemeral port range — each reported with the number and the fix before the
//! first request, not discovered as a wall of errors in the middle of a level.

/// The open-file limit after raising the soft limit to the hard one: (soft, hard).
pub fn raise_nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct passed, which is valid.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (1024, 1024);
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    (lim.rlim_cur, lim.rlim_max)
}

/// Files kept free for everything but connections: the results files, requests.jsonl, the
/// plot, standard streams, and each core's runtime (its ring, eventfd and timers).
const FD_RESERVE: u64 = 64;
const FD_RESERVE_PER_CORE: u64 = 16;

/// Connections the engine may hold open at once without touching the reserve: the soft
/// open-file limit less the files open now and the reserve. The engine stops opening
/// connections there, so a client that runs out fails requests with its own category and still
/// writes its results.
pub fn connection_budget(soft_limit: u64, cores: usize) -> usize {
    let open_now = std::fs::read_dir("/proc/self/fd").map_or(16, |d| d.count() as u64);
    let reserve = FD_RESERVE + FD_RESERVE_PER_CORE * cores as u64;
    soft_limit
        .saturating_sub(open_now + reserve)
        .clamp(cores as u64, usize::MAX as u64 / 2) as usize
}

/// How many local ports the kernel hands out for outgoing connections.
pub fn ephemeral_ports() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    let (lo, hi) = (it.next()??, it.next()??);
    Some(hi.saturating_sub(lo) + 1)
}

/// Warnings for a run that may hold up to `connections` connections at once.
pub fn warnings(
    connections: u64,
    what: &str,
    nofile: (u64, u64),
    ports: Option<u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    // Files the process needs besides connections: runtimes, results, the dataset.
    let spare = 64;
    if connections + spare > nofile.0 {
        out.push(format!(
            "up to {connections} connections may be open at once ({what}), but the open-file limit is {} (hard limit {}): requests beyond it fail as 'Client: out of file descriptors' (a reserve is kept for the results). Raise it, e.g. `ulimit -n {}` (as root, or in /etc/security/limits.conf), or cap in-flight requests with --max-concurrency",
            nofile.0,
            nofile.1,
            (connections + spare).next_power_of_two()
        ));
    }
    if let Some(p) = ports.filter(|&p| connections > p) {
        out.push(format!(
            "up to {connections} connections may be open at once ({what}), but only {p} ephemeral ports exist for connections to one address: widen net.ipv4.ip_local_port_range (sysctl) or cap in-flight requests with --max-concurrency"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_reported_with_the_numbers_and_the_fix() {
        assert!(warnings(100, "x", (1024, 4096), Some(28_000)).is_empty());
        let w = warnings(5000, "50 QPS × 100 s", (1024, 4096), Some(4000));
        assert_eq!(w.len(), 2);
        assert!(w[0].contains("open-file limit is 1024") && w[0].contains("ulimit -n 8192"));
        assert!(w[1].contains("only 4000 ephemeral ports"));
        let (soft, hard) = raise_nofile();
        assert!(soft >= 1 && soft <= hard.max(soft));
        // The budget leaves the reserve and what is open free, and never starves a core.
        assert!(connection_budget(1000, 2) <= 1000 - 64 - 32);
        assert_eq!(connection_budget(10, 4), 4);
    }
}
