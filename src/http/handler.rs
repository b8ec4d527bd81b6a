//! What an exchange is given and gives back: the request's bytes ([`Request`]), the receiver
//! of the response as it arrives ([`ResponseHandler`]), and how the exchange ended
//! ([`Completed`], [`Failure`]).
//!
//! Data flow: `engine::request` (with `engine::stream`) implements both traits and calls `http::conn::Conn::exchange`;
//! the readers of a response (`http::response`, `http::ring_rx`) fill in the outcome.

use std::io;

use monoio::buf::IoBuf;

use super::body::BodyError;
use super::head::HeadError;

/// Receives a response as it arrives.
pub trait ResponseHandler {
    /// A read completed at `t_ns` (called before its bytes are parsed). The engine uses this to
    /// send any arrival that fell due while this task was waiting.
    fn on_read(&mut self, _t_ns: u64) {}
    /// The final (non-1xx) response head arrived in a read completed at `t_ns`.
    fn head(&mut self, status: u16, t_ns: u64);
    /// Body data delivered by a read completed at `t_ns`. Return `false` to stop reading (the
    /// connection is then closed, not reused).
    fn body(&mut self, data: &[u8], t_ns: u64) -> bool;
    /// The deadline (monotonic ns) for the next read to complete, and what it is; `None`: wait
    /// as long as it takes (the caller's total timeout still applies).
    fn read_deadline(&self) -> Option<(u64, ReadTimeout)> {
        None
    }
}

/// A request's bytes, as one or more parts sent back to back: a dataset sample is one part; a
/// synthetic prompt is a small head plus views of shared text (sent with one vectored write, so
/// a long prompt is never copied per request).
pub trait Request {
    /// A part as an owned buffer the kernel can write from (io_uring needs the buffer to outlive
    /// the operation).
    type Part: IoBuf;
    /// The number of parts.
    fn part_count(&self) -> usize;
    /// Part `i`'s bytes.
    fn part(&self, i: usize) -> &[u8];
    /// Part `i` from its byte `from` on, as an owned buffer.
    fn owned_part(&self, i: usize, from: usize) -> Self::Part;
    /// The request's length in bytes.
    fn len(&self) -> usize {
        (0..self.part_count()).map(|i| self.part(i).len()).sum()
    }
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Writing or reading failed.
    Io(io::Error),
    /// The server closed the connection before a complete head.
    Closed,
    Head(HeadError),
    Body(BodyError),
    /// A read deadline of the handler passed.
    Timeout(ReadTimeout),
}

/// Which read deadline passed (see [`ResponseHandler::read_deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTimeout {
    /// No output token by the first-token deadline.
    FirstToken,
    /// Nothing read for too long between reads.
    Idle,
}

/// A failed exchange, and whether any response byte had arrived.
#[derive(Debug)]
pub struct Failure {
    pub error: ExchangeError,
    pub response_started: bool,
}

/// A completed exchange.
#[derive(Debug, Clone, Copy)]
pub struct Completed {
    /// Time of the read that completed the response (or of the last read, if the handler stopped).
    pub end_ns: u64,
    /// Time of the first response byte.
    pub first_byte_ns: u64,
    /// The connection may carry another request.
    pub reusable: bool,
}
