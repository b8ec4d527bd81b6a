//! A core's keep-alive pool: idle connections to the endpoint, owned by that core alone.
//!
//! Last-in first-out, so the most recently used (warmest) connection is reused first. A request
//! takes an idle connection or opens a new one; after a response that allows reuse the
//! connection goes back.
//!
//! A request is never resent (HTTP clients do not resend a POST that was written to a
//! connection), so a connection the server closed while it sat idle must be found *before* a
//! request is written to it: [`Pool::take`] discards connections past the server's
//! `Keep-Alive: timeout` and those whose socket is closed or holds bytes, and counts them.
//!
//! The pool also keeps the core within its share of the open-file limit: every connection is a
//! file, and a client that used them all could not even write its results. Past the share,
//! [`Pool::connect`] fails at once with `EMFILE`, which the request reports as
//! `Client: out of file descriptors`.

use std::cell::{Cell, RefCell};
use std::ops::{Deref, DerefMut};
use std::rc::Rc;

use crate::http::conn::{Conn, ConnectError, ConnectTimes, Target};

/// A server's keep-alive timeout is treated as this much shorter, so that a connection is not
/// reused in the instant the server closes it.
const KEEP_ALIVE_MARGIN_NS: u64 = 250_000_000;

/// A connection counted against the core's share of file descriptors while it exists.
pub struct PooledConn {
    conn: Conn,
    open: Rc<Cell<usize>>,
    /// When it went back to the pool (monotonic ns).
    idle_since_ns: u64,
}

impl Deref for PooledConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for PooledConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        self.open.set(self.open.get() - 1);
    }
}

pub struct Pool {
    target: Target,
    idle: RefCell<Vec<PooledConn>>,
    /// Connections of this core that exist now (idle or in use).
    open: Rc<Cell<usize>>,
    /// The most this core may have open at once.
    max_open: usize,
}

impl Pool {
    /// A pool that opens at most `max_open` connections at once.
    pub fn new(target: Target, max_open: usize) -> Self {
        Self {
            target,
            idle: RefCell::new(Vec::new()),
            open: Rc::new(Cell::new(0)),
            max_open: max_open.max(1),
        }
    }

    /// An idle connection that can carry a request now, if any; also how many idle ones were
    /// found closed by the server (or past its keep-alive timeout) and dropped on the way.
    pub fn take(&self, now_ns: u64) -> (Option<PooledConn>, u64) {
        let mut dropped = 0;
        let mut idle = self.idle.borrow_mut();
        while let Some(conn) = idle.pop() {
            let expired = conn.keep_alive_timeout_ns.is_some_and(|t| {
                now_ns.saturating_sub(conn.idle_since_ns) + KEEP_ALIVE_MARGIN_NS >= t
            });
            if !expired && conn.is_idle_usable() {
                return (Some(conn), dropped);
            }
            dropped += 1;
        }
        (None, dropped)
    }

    /// Opens a new connection (TCP, then TLS for `https://`), within the core's share of file
    /// descriptors.
    pub async fn connect(&self) -> Result<(PooledConn, ConnectTimes), ConnectError> {
        if self.open.get() >= self.max_open {
            return Err(ConnectError::Io(std::io::Error::from_raw_os_error(
                libc::EMFILE,
            )));
        }
        // Counted from the start: a connect in flight holds its socket already.
        self.open.set(self.open.get() + 1);
        let guard = OpenGuard(&self.open);
        let (conn, times) = Conn::connect(&self.target).await?;
        std::mem::forget(guard);
        Ok((
            PooledConn {
                conn,
                open: self.open.clone(),
                idle_since_ns: 0,
            },
            times,
        ))
    }

    pub fn put(&self, mut conn: PooledConn, now_ns: u64) {
        conn.idle_since_ns = now_ns;
        self.idle.borrow_mut().push(conn);
    }

    /// Takes every idle connection out of the pool.
    pub fn drain(&self) -> Vec<PooledConn> {
        std::mem::take(&mut *self.idle.borrow_mut())
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }

    /// The endpoint is `https://`.
    pub fn tls(&self) -> bool {
        self.target.tls.is_some()
    }

    /// How many more connections may be opened now.
    pub fn room(&self) -> usize {
        self.max_open.saturating_sub(self.open.get())
    }
}

/// Gives back a connection's count if opening it fails or is cancelled (a timeout).
struct OpenGuard<'a>(&'a Cell<usize>);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
