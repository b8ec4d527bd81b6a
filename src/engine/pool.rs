//! A core's keep-alive pool: idle connections to the endpoint, owned by that core alone.
//!
//! Last-in first-out, so the most recently used (warmest) connection is reused first. A request
//! takes an idle connection or opens a new one; after a response that allows reuse the
//! connection goes back. Connections that the server closed while idle are detected by the
//! request on first use and retried once (`engine::request`).

use std::cell::RefCell;

use crate::http::conn::{Conn, ConnectError, ConnectTimes, Target};

pub struct Pool {
    target: Target,
    idle: RefCell<Vec<Conn>>,
}

impl Pool {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// An idle connection, if any.
    pub fn take(&self) -> Option<Conn> {
        self.idle.borrow_mut().pop()
    }

    /// Opens a new connection (TCP, then TLS for `https://`).
    pub async fn connect(&self) -> Result<(Conn, ConnectTimes), ConnectError> {
        Conn::connect(&self.target).await
    }

    pub fn put(&self, conn: Conn) {
        self.idle.borrow_mut().push(conn);
    }

    /// Takes every idle connection out of the pool.
    pub fn drain(&self) -> Vec<Conn> {
        std::mem::take(&mut *self.idle.borrow_mut())
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }
}
