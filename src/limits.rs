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
            "up to {connections} connections may be open at once ({what}), but the open-file limit is {} (hard limit {}): requests beyond it fail with 'Too many open files'. Raise it, e.g. `ulimit -n {}` (as root, or in /etc/security/limits.conf), or cap in-flight requests with --max-concurrency",
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
    }
}
