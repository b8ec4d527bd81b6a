//! Socket helpers shared by the client's connections, TLS and the built-in endpoint: a read that
//! appends to a buffer, and a non-blocking send that hands bytes to the kernel at once.

use std::io;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

/// A connection's initial read buffer, and the room added to it when less than 1 KiB is spare.
pub(crate) const READ_BUF: usize = 16 * 1024;

/// Reads from `stream` into the spare capacity of `buf`, after the bytes already there (monoio
/// reads fill a buffer from its start, so the read goes into a slice past its length); 0 means
/// the peer closed. Used by the client and the built-in endpoint alike.
pub(crate) async fn read_append(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_BUF);
    }
    let b = std::mem::take(buf);
    let (len, cap) = (b.len(), b.capacity());
    let (res, slice) = stream.read(b.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// One non-blocking `send`; `Ok(0)` when the socket buffer is full.
pub(crate) fn send_nonblocking(fd: i32, bytes: &[u8]) -> io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    // SAFETY: `fd` is a live socket owned by the caller; `bytes` is valid for reads of its
    // length. Callers use this only on a connection they own exclusively with no io_uring write
    // in flight, so the bytes cannot interleave with another write.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(n as usize)
}
