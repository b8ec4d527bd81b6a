//! One HTTP/1.1 connection and one request/response exchange on it.
//!
//! Data flow: `engine::request` gets a [`Conn`] from its core's pool, calls [`Conn::exchange`]
//! with the prepared request bytes and a [`ResponseHandler`]; the exchange writes the request,
//! then feeds each read's bytes to a `response::ResponseReader` (head, body), which hands each
//! piece of body data to the handler together with the time of the read that delivered it — the
//! clock is read as soon as a read completes, before any parsing (the hot path's rule: timestamp
//! at the socket). The reads are monoio's, or, on a connection registered on the core's receive
//! ring at connect, the ring's (`ring_rx`).
//!
//! After the exchange the connection is reusable only if the whole response was read, the server
//! allowed keep-alive, and no stray bytes followed the response.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::response::ResponseReader;
use super::tls::{TlsError, TlsIo};
use crate::foundation::clock::now_ns;

use super::sock::{read_append, send_nonblocking, sendv_nonblocking, READ_BUF};

pub use super::handler::{
    Completed, ExchangeError, Failure, ReadTimeout, Request, ResponseHandler,
};

/// Where and how to connect: the resolved addresses and, for `https://`, the TLS settings and
/// the name to verify (also sent as SNI).
#[derive(Clone)]
pub struct Target {
    pub addrs: Arc<[SocketAddr]>,
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    Io(io::Error),
    /// The TLS handshake failed (category text, e.g. `unknown issuer`).
    Tls(String),
}

/// How long opening a connection took.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectTimes {
    /// TCP connect, ns.
    pub connect_ns: u64,
    /// TLS handshake, ns (0 for plain HTTP).
    pub handshake_ns: u64,
}

/// Request bytes already handed to the socket by [`Conn::try_write_now`].
#[derive(Debug, Clone, Copy)]
enum Presend {
    /// Plain TCP: this many bytes of the request were sent.
    Plain(usize),
    /// TLS: the whole request was encrypted; pending ciphertext remains to be flushed.
    Tls,
}

/// A client connection with its reused read buffer.
pub struct Conn {
    /// Its place on the core's receive ring (plain HTTP on a core that has one). Declared
    /// before the stream: releasing it shuts the socket down before the stream closes it.
    recv: Option<super::ring_rx::RingConn>,
    stream: TcpStream,
    tls: Option<Box<TlsIo<ClientConnection>>>,
    buf: Vec<u8>,
    presend: Option<Presend>,
    /// Completed exchanges on this connection.
    pub uses: u64,
    /// The server's `Keep-Alive: timeout=N` from the last response, ns.
    pub keep_alive_timeout_ns: Option<u64>,
}

impl Conn {
    /// Connects to the first address that accepts, in order, sets TCP_NODELAY (small request
    /// writes must not wait for Nagle's algorithm), and runs the TLS handshake for `https://`.
    pub async fn connect(target: &Target) -> Result<(Self, ConnectTimes), ConnectError> {
        let start = now_ns();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
        let mut stream = None;
        for addr in target.addrs.iter() {
            match TcpStream::connect_addr(*addr).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = e,
            }
        }
        let mut stream = stream.ok_or(ConnectError::Io(last))?;
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let connected = now_ns();
        let mut times = ConnectTimes {
            connect_ns: connected - start,
            handshake_ns: 0,
        };
        let tls = match &target.tls {
            None => None,
            Some((config, name)) => {
                let conn = ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| ConnectError::Tls(super::tls::category(&e)))?;
                let mut io = Box::new(TlsIo::new(conn));
                match io.handshake(&mut stream).await {
                    Ok(()) => {}
                    Err(TlsError::Tls(e)) => {
                        return Err(ConnectError::Tls(super::tls::category(&e)))
                    }
                    Err(TlsError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        return Err(ConnectError::Tls(
                            "handshake failed (connection closed)".into(),
                        ))
                    }
                    Err(TlsError::Io(e)) => return Err(ConnectError::Io(e)),
                }
                times.handshake_ns = now_ns() - connected;
                Some(io)
            }
        };
        use std::os::fd::AsRawFd;
        let recv = super::ring_rx::register(stream.as_raw_fd(), tls.is_some());
        Ok((
            Self {
                recv,
                stream,
                tls,
                buf: Vec::with_capacity(READ_BUF),
                presend: None,
                uses: 0,
                keep_alive_timeout_ns: None,
            },
            times,
        ))
    }

    /// Whether an idle connection can carry another request: the socket has nothing to read and
    /// is not closed (a non-blocking `MSG_PEEK`), and over TLS rustls has not seen close_notify.
    /// An idle keep-alive connection has no reason to hold bytes: data there is a server's
    /// close_notify, an error it sent before closing, or stray bytes, and a request written
    /// after them would fail or be misread. This is what lets a request never be resent
    /// (HTTP clients do not resend a POST written to a connection): a connection the server
    /// closed is found before the request is written to it.
    pub fn is_idle_usable(&self) -> bool {
        use std::os::fd::AsRawFd;
        if self.tls.as_ref().is_some_and(|t| t.is_eof()) {
            return false;
        }
        // On a receive ring, whatever arrived was taken off the socket by the ring.
        if self.recv.as_ref().is_some_and(|r| !r.ring.is_quiet(r.id)) {
            return false;
        }
        let mut byte = 0u8;
        // SAFETY: the fd is this connection's live socket; the buffer is one valid byte, and
        // MSG_PEEK leaves the socket's data where it is.
        let n = unsafe {
            libc::recv(
                self.stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Hands `request` to the socket right now, without waiting (a non-blocking `send`; over TLS
    /// the request is encrypted first). Requests are small, so on an idle connection this is
    /// usually all of it: the request leaves at the moment the arrival is due, not when the task
    /// next runs. Whatever the socket did not take is sent by [`Conn::exchange`].
    pub fn try_write_now(&mut self, request: &impl Request) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = self.stream.as_raw_fd();
        match &mut self.tls {
            None => {
                let n = match request.part_count() {
                    1 => send_nonblocking(fd, request.part(0))?,
                    k => sendv_nonblocking(fd, k, |i| request.part(i))?,
                };
                self.presend = Some(Presend::Plain(n));
            }
            Some(tls) => {
                for i in 0..request.part_count() {
                    tls.encrypt(request.part(i))?;
                }
                self.presend = Some(Presend::Tls);
                tls.send_now(fd)?;
            }
        }
        Ok(())
    }

    /// [`Conn::read_more`] bounded by `deadline`. Without a deadline no timer is armed, so the
    /// common case costs nothing extra per read.
    async fn read_until(
        &mut self,
        deadline: Option<(u64, ReadTimeout)>,
    ) -> Result<usize, ExchangeError> {
        let Some((at, kind)) = deadline else {
            return self.read_more().await.map_err(ExchangeError::Io);
        };
        let now = now_ns();
        if at <= now {
            return Err(ExchangeError::Timeout(kind));
        }
        match monoio::time::timeout(Duration::from_nanos(at - now), self.read_more()).await {
            Ok(r) => r.map_err(ExchangeError::Io),
            // The connection is dropped after this, so the cancelled read's buffer is not missed.
            Err(_) => Err(ExchangeError::Timeout(kind)),
        }
    }

    /// Reads more bytes after those already in the buffer; 0 means the peer closed.
    async fn read_more(&mut self) -> io::Result<usize> {
        if let Some(tls) = &mut self.tls {
            return tls.read_plain(&mut self.stream, &mut self.buf).await;
        }
        read_append(&mut self.stream, &mut self.buf).await
    }

    /// Writes the request, or what [`Conn::try_write_now`] left of it.
    pub(super) async fn write_request<B: Request>(&mut self, request: B) -> io::Result<()> {
        match (self.presend.take(), &mut self.tls) {
            (Some(Presend::Plain(n)), None) => self.write_parts_from(&request, n).await,
            (None, None) => self.write_parts_from(&request, 0).await,
            (Some(_), Some(tls)) => tls.flush(&mut self.stream).await,
            (None, Some(tls)) => {
                for i in 0..request.part_count() {
                    tls.encrypt(request.part(i))?;
                }
                tls.flush(&mut self.stream).await
            }
            (Some(Presend::Tls), None) => Ok(()),
        }
    }

    /// Writes the request's bytes from byte `skip` on (what a non-blocking send left), part by
    /// part.
    async fn write_parts_from<B: Request>(
        &mut self,
        request: &B,
        mut skip: usize,
    ) -> io::Result<()> {
        for i in 0..request.part_count() {
            let len = request.part(i).len();
            if skip >= len {
                skip -= len;
                continue;
            }
            let (res, _) = self.stream.write_all(request.owned_part(i, skip)).await;
            res?;
            skip = 0;
        }
        Ok(())
    }

    /// Sends `request` and reads the response into `handler`: in place from the receive ring
    /// when this connection is on one (`http::ring_rx`), else by monoio reads into the
    /// connection's buffer.
    pub async fn exchange<H: ResponseHandler>(
        &mut self,
        request: impl Request,
        handler: &mut H,
    ) -> Result<Completed, Failure> {
        let mut reader = ResponseReader::default();
        let result = match self.recv.as_ref().map(|r| (r.ring.clone(), r.id)) {
            Some((ring, id)) => {
                let write = self.write_request(request);
                super::ring_rx::exchange(&ring, id, write, handler, &mut reader).await
            }
            None => self.exchange_by_reads(request, handler, &mut reader).await,
        };
        self.keep_alive_timeout_ns = reader.keep_alive_timeout_ns;
        if reader.body_done {
            self.uses += 1;
        }
        result
    }

    /// The exchange over monoio reads, each into the connection's buffer and fed to `reader`.
    async fn exchange_by_reads<H: ResponseHandler>(
        &mut self,
        request: impl Request,
        handler: &mut H,
        reader: &mut ResponseReader,
    ) -> Result<Completed, Failure> {
        self.write_request(request)
            .await
            .map_err(|e| reader.fail(ExchangeError::Io(e)))?;
        loop {
            self.buf.clear();
            let n = self
                .read_until(handler.read_deadline())
                .await
                .map_err(|e| reader.fail(e))?;
            let t = now_ns();
            if n == 0 {
                return reader.eof(t, handler);
            }
            if let Some(done) = reader.feed(&self.buf, t, handler)? {
                return Ok(done);
            }
        }
    }
}
