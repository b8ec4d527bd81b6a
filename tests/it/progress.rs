//! The live progress line: redrawn in place on a terminal (a pseudo-terminal here), and never an
//! escape code when stderr is a pipe.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::common::*;

/// A pseudo-terminal: (the side the test reads, the side the child writes to).
fn pty() -> (std::fs::File, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty writes two new file descriptors into the two ints; null name, termios and
    // window size are allowed. Each descriptor is then owned by exactly one wrapper.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are not owned elsewhere.
    unsafe {
        (
            std::fs::File::from_raw_fd(master),
            OwnedFd::from_raw_fd(slave),
        )
    }
}

#[test]
fn on_a_terminal_the_status_line_is_redrawn_during_a_level() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "20", "--itl-ms", "2", "--output-tokens", "8"]);
    let tmp = TempDir::new("progress-tty");
    let ds = tmp.file("d.json", DATASET);
    let (mut master, slave) = pty();
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "20",
        "--duration",
        "3",
        "--continuous-usage",
        "off",
    ]);
    let mut child = Command::new(BIN)
        .args(&args)
        .arg("--results-dir")
        .arg(tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    // Read the terminal while the run goes (a full pty would block the child).
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the child has exited and the slave side is closed.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    assert!(child.wait().unwrap().success());
    let text = reader.join().unwrap();
    let redraws = text.matches("\r\x1b[2K[1/1] QPS 20.0").count();
    assert!(redraws >= 2, "the line is redrawn every second: {text:?}");
    assert!(text.contains("sent ") && text.contains("in flight") && text.contains("lag p99"));
    // The summary line replaces the status line.
    assert!(text.contains("\r\x1b[2K      60 sent, 60 ok"), "{text:?}");
}

#[test]
fn a_piped_run_has_no_escape_codes() {
    let _g = serial();
    let mock = Mock::start(&["--ttft-ms", "5", "--itl-ms", "1", "--output-tokens", "4"]);
    let tmp = TempDir::new("progress-pipe");
    let ds = tmp.file("d.json", DATASET);
    let mut args = base_args(&mock.url, ds.to_str().unwrap());
    args.extend([
        "--qps",
        "10",
        "--duration",
        "2",
        "--continuous-usage",
        "off",
    ]);
    let run = qpsbench(&args, tmp.path());
    assert_eq!(run.code(), 0, "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b') && !run.stdout.contains('\x1b'));
    assert!(!run.stderr.contains('\r'), "{:?}", run.stderr);
}
