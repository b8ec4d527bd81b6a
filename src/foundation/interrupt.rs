//! Ctrl-C and SIGTERM. The first signal asks the run to stop: cores stop sending, in-flight
//! requests get a short grace period, and the completed levels plus the partial one (marked
//! `interrupted`) are written and shown; the process then exits with status 130. A second
//! signal exits at once — every file already written stays valid, since files are only ever
//! replaced whole (written beside, then renamed).

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// Whether the process has results to save when stopped (a benchmark does, `serve-mock` not).
static SAVES: AtomicBool = AtomicBool::new(true);

/// How long in-flight requests may finish after the first signal, ns.
pub const GRACE_NS: u64 = 2_000_000_000;

extern "C" fn on_signal(_: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe; nothing is flushed, which is the point.
        unsafe { libc::_exit(130) };
    }
    let msg: &[u8] = if SAVES.load(Ordering::Relaxed) {
        b"\nqpsbench: stopping (finishing in-flight requests, saving results; press Ctrl-C again to quit at once)\n"
    } else {
        b"\nqpsbench: stopping (press Ctrl-C again to quit at once)\n"
    };
    // SAFETY: write(2) is async-signal-safe; the buffer is a static byte string.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Installs the handler for a process with nothing to save (`serve-mock`): its message says
/// only that it stops.
pub fn install_quiet() {
    SAVES.store(false, Ordering::Relaxed);
    install();
}

/// Installs the handler for SIGINT and SIGTERM (once per process).
pub fn install() {
    // SAFETY: a zeroed sigaction with a plain handler and an empty mask is valid; `on_signal`
    // only touches an atomic and calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// A stop was asked for.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}
