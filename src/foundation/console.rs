//! Standard output that a closed pipe cannot crash: `qpsbench compare A B | head -1` must end
//! cleanly, and a benchmark piped into `head` must still finish writing its files. Rust's
//! `println!` panics when stdout's reader has gone; [`write`] notes the closed pipe instead and
//! drops what follows. SIGPIPE stays ignored for the whole process (Rust's default), so that
//! sockets keep reporting their own `EPIPE` as an error of the request they carry.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout's reader has gone: later writes are dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` to stdout and flushes it; a closed pipe is remembered, never a panic. Other
/// write errors (a full disk behind a redirect) are reported once on stderr.
pub fn write(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: cannot write to standard output: {e}");
        }
    }
}

/// `print!` through [`write`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::foundation::console::write(&format!($($arg)*))
    };
}

/// `println!` through [`write`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::foundation::console::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::foundation::console::write(&format!("{}\n", format_args!($($arg)*)))
    };
}
