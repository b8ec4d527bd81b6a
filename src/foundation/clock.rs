//! The one clock every core stamps with: `CLOCK_MONOTONIC` in nanoseconds.
//!
//! All cores share this epoch, so an arrival's intended time planned on the main thread means the
//! same instant on every core, and the pacer can hand absolute deadlines straight to a timerfd.

/// Nanoseconds on `CLOCK_MONOTONIC` (the clock `std::time::Instant` uses; a vDSO call, ~30 ns).
#[inline]
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Unix seconds now (the wall clock, which the monotonic clock does not follow).
pub fn unix_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A Unix instant as a monotonic one ([`now_ns`]); an instant before the monotonic clock's
/// start is its start.
pub fn unix_to_mono_ns(unix_s: f64) -> u64 {
    (now_ns() as f64 + (unix_s - unix_now_s()) * 1e9).max(0.0) as u64
}

/// CPU time consumed by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; both clock ids exist on every Linux kernel, so
    // the call cannot fail and only writes `ts`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The local wall-clock time, broken down, for folder names and metadata timestamps.
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl LocalTime {
    pub fn now() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs() as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value; localtime_r only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant.
        unsafe { libc::localtime_r(&secs, &mut tm) };
        Self {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            micros: now.subsec_micros(),
        }
    }

    /// `2024-11-14_10-30-45`, the spec's results folder name.
    pub fn folder_name(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}_{:02}-{:02}-{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2024-11-14T10:30:45.123456`, the spec's metadata timestamp.
    pub fn iso(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.micros
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_and_formats() {
        let a = super::now_ns();
        let b = super::now_ns();
        assert!(b >= a);
        let t = super::LocalTime::now();
        assert_eq!(t.folder_name().len(), 19);
        assert_eq!(t.iso().len(), 26);
    }
}
