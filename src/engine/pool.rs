//! A core's keep-alive pool: idle connections to the endpoint, owned by that core alone.
//!
//! Last-in first-out, so the most recently used (warmest) connection is reused first. A request
//! takes an idle connection or opens a new one; after a response that allows reuse the
//! connection goes back. Connections that the server closed while idle are detected by the
//! request on first use and retried once (`engine::request`).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::http::conn::Conn;

pub struct Pool {
    addrs: Arc<[SocketAddr]>,
    idle: RefCell<Vec<Conn>>,
}

impl Pool {
    pub fn new(addrs: Arc<[SocketAddr]>) -> Self {
        Self {
            addrs,
            idle: RefCell::new(Vec::new()),
        }
    }

    /// An idle connection, if any.
    pub fn take(&self) -> Option<Conn> {
        self.idle.borrow_mut().pop()
    }

    /// Opens a new connection.
    pub async fn connect(&self) -> io::Result<Conn> {
        Conn::connect(&self.addrs).await
    }

    pub fn put(&self, conn: Conn) {
        self.idle.borrow_mut().push(conn);
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().len()
    }
}
