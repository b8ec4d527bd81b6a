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

/// Parts per `sendmsg`: far below the kernel's limit of 1,024 iovecs, and enough for a prompt of
/// 30 shared 512-token blocks in one call.
const IOV_BATCH: usize = 64;

/// Non-blocking vectored sends of `count` parts (`part(i)`), back to back, as few `sendmsg` calls
/// as the parts need (one up to 64 parts); returns the bytes the socket took, which is less than
/// the total when its buffer filled.
pub(crate) fn sendv_nonblocking<'a>(
    fd: i32,
    count: usize,
    part: impl Fn(usize) -> &'a [u8],
) -> io::Result<usize> {
    let mut sent = 0;
    let mut first = 0;
    while first < count {
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; IOV_BATCH];
        let n = (count - first).min(IOV_BATCH);
        let mut batch = 0;
        for (slot, i) in iov.iter_mut().zip(first..first + n) {
            let p = part(i);
            *slot = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
            batch += p.len();
        }
        // SAFETY: an all-zero msghdr is valid (no name, no control data); it points at `iov`,
        // whose first `n` entries describe slices borrowed for this call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = n as _;
        // SAFETY: `fd` is a live socket owned by the caller with no io_uring write in flight (as
        // for `send_nonblocking`); every iovec points at memory valid for reads of its length for
        // the duration of the call, and the kernel only reads through them.
        let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(sent)
            } else {
                Err(e)
            };
        }
        sent += r as usize;
        if (r as usize) < batch {
            return Ok(sent);
        }
        first += n;
    }
    Ok(sent)
}
