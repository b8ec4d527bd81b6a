//! One response, read incrementally from whatever bytes arrive: the head (`head`, skipping
//! interim 1xx responses), then the body (`body`), each piece of body data handed to a
//! [`ResponseHandler`] with the time of the read that delivered it.
//!
//! Data flow: `http::conn` feeds it each read's bytes — from a monoio read into the connection's
//! buffer, or in place from the receive ring's buffer (`rt::recv_ring`, via `http::ring_rx`) —
//! and learns after each one whether the response is complete. It does no I/O and keeps no
//! bytes, except the start of a head split across reads (rare: a head is one segment).

use super::body::BodyDecoder;
use super::handler::{Completed, ExchangeError, Failure, ResponseHandler};
use super::head::{parse_head, HeadError, MAX_HEAD_BYTES};
use super::sock::READ_BUF;

/// Where a response is.
enum Stage {
    /// Waiting for the (final) head.
    Head,
    /// Reading the body; the server allows keep-alive.
    Body {
        decoder: BodyDecoder,
        keep_alive: bool,
    },
}

/// The reading state of one response.
pub struct ResponseReader {
    stage: Stage,
    /// The start of a head that has not fully arrived.
    partial_head: Vec<u8>,
    /// Time of the first response byte (0: none yet).
    first_byte_ns: u64,
    /// The server's `Keep-Alive: timeout=N`, ns, once the head is read.
    pub keep_alive_timeout_ns: Option<u64>,
    /// The body was read to its end (so the connection served one whole exchange).
    pub body_done: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self {
            stage: Stage::Head,
            partial_head: Vec::new(),
            first_byte_ns: 0,
            keep_alive_timeout_ns: None,
            body_done: false,
        }
    }
}

impl ResponseReader {
    /// Some response byte has arrived.
    pub fn started(&self) -> bool {
        self.first_byte_ns != 0
    }

    /// A failure now, with whether the response had started.
    pub fn fail(&self, error: ExchangeError) -> Failure {
        Failure {
            error,
            response_started: self.started(),
        }
    }

    /// The bytes of one read completed at `t_ns` (never empty: an empty read is [`Self::eof`]).
    /// `Ok(None)`: the response goes on; `Ok(Some)`: it is complete (or the handler stopped).
    pub fn feed<H: ResponseHandler>(
        &mut self,
        data: &[u8],
        t_ns: u64,
        handler: &mut H,
    ) -> Result<Option<Completed>, Failure> {
        handler.on_read(t_ns);
        if self.first_byte_ns == 0 {
            self.first_byte_ns = t_ns;
        }
        if let Stage::Head = self.stage {
            if self.partial_head.is_empty() {
                return self.head_from(data, t_ns, handler);
            }
            let mut head = std::mem::take(&mut self.partial_head);
            head.extend_from_slice(data);
            return self.head_from(&head, t_ns, handler);
        }
        self.body_from(data, t_ns, handler)
    }

    /// The peer closed the connection (a read of 0 bytes completed at `t_ns`): the end of a
    /// close-delimited body, or a failure.
    pub fn eof<H: ResponseHandler>(
        &mut self,
        t_ns: u64,
        handler: &mut H,
    ) -> Result<Completed, Failure> {
        handler.on_read(t_ns);
        match &mut self.stage {
            Stage::Head => Err(self.fail(ExchangeError::Closed)),
            Stage::Body { decoder, .. } => {
                decoder
                    .eof()
                    .map_err(|e| self.fail(ExchangeError::Body(e)))?;
                Ok(self.completed(t_ns, false))
            }
        }
    }

    /// Parses the head from `buf` (the whole head so far), skipping 1xx responses, then hands
    /// what follows it to the body.
    fn head_from<H: ResponseHandler>(
        &mut self,
        mut buf: &[u8],
        t_ns: u64,
        handler: &mut H,
    ) -> Result<Option<Completed>, Failure> {
        loop {
            match parse_head(buf) {
                Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                    buf = &buf[h.len..];
                }
                Ok(Some(h)) => {
                    handler.head(h.status, t_ns);
                    self.keep_alive_timeout_ns = h
                        .keep_alive_timeout_s
                        .map(|s| s.saturating_mul(1_000_000_000));
                    self.stage = Stage::Body {
                        decoder: BodyDecoder::new(h.framing),
                        keep_alive: h.keep_alive,
                    };
                    return self.body_from(&buf[h.len..], t_ns, handler);
                }
                Ok(None) if buf.len() > MAX_HEAD_BYTES + READ_BUF => {
                    return Err(self.fail(ExchangeError::Head(HeadError::TooLarge)))
                }
                Ok(None) => {
                    self.partial_head = buf.to_vec();
                    return Ok(None);
                }
                Err(e) => return Err(self.fail(ExchangeError::Head(e))),
            }
        }
    }

    /// Decodes body bytes, handing each piece of data to the handler.
    fn body_from<H: ResponseHandler>(
        &mut self,
        mut buf: &[u8],
        t_ns: u64,
        handler: &mut H,
    ) -> Result<Option<Completed>, Failure> {
        let Stage::Body {
            decoder,
            keep_alive,
        } = &mut self.stage
        else {
            return Ok(None);
        };
        while !buf.is_empty() && !decoder.is_done() {
            let (n, data) = match decoder.decode(buf) {
                Ok(d) => d,
                Err(e) => return Err(self.fail(ExchangeError::Body(e))),
            };
            buf = &buf[n..];
            if let Some(data) = data {
                if !handler.body(data, t_ns) {
                    return Ok(Some(self.completed(t_ns, false)));
                }
            }
        }
        if !decoder.is_done() {
            return Ok(None);
        }
        self.body_done = true;
        // Bytes after the response (pipelined or stray) make the connection unsafe to reuse.
        let reusable = *keep_alive && buf.is_empty();
        Ok(Some(self.completed(t_ns, reusable)))
    }

    fn completed(&self, end_ns: u64, reusable: bool) -> Completed {
        Completed {
            end_ns,
            first_byte_ns: self.first_byte_ns,
            reusable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen {
        reads: Vec<u64>,
        status: u16,
        body: Vec<(Vec<u8>, u64)>,
    }

    impl ResponseHandler for Seen {
        fn on_read(&mut self, t_ns: u64) {
            self.reads.push(t_ns);
        }
        fn head(&mut self, status: u16, _t_ns: u64) {
            self.status = status;
        }
        fn body(&mut self, data: &[u8], t_ns: u64) -> bool {
            self.body.push((data.to_vec(), t_ns));
            true
        }
    }

    const RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nKeep-Alive: timeout=5\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";

    /// Feeds `RESPONSE` split at `cut`, as two reads at times 1 and 2.
    fn split_at(cut: usize) -> (Seen, Result<Option<Completed>, Failure>, ResponseReader) {
        let mut r = ResponseReader::default();
        let mut h = Seen::default();
        let first = r.feed(&RESPONSE[..cut], 1, &mut h);
        assert!(matches!(first, Ok(None)), "cut {cut}: done too early");
        let second = r.feed(&RESPONSE[cut..], 2, &mut h);
        (h, second, r)
    }

    #[test]
    fn a_response_split_anywhere_reads_the_same_with_each_piece_at_its_reads_time() {
        for cut in 1..RESPONSE.len() - 1 {
            let (h, done, r) = split_at(cut);
            let done = done.unwrap().expect("complete");
            assert_eq!(h.status, 200, "cut {cut}: the 100 is skipped");
            assert_eq!(h.reads, [1, 2]);
            let body: Vec<u8> = h.body.iter().flat_map(|b| b.0.clone()).collect();
            assert_eq!(body, b"abcde", "cut {cut}");
            assert!(done.reusable && r.body_done);
            assert_eq!((done.first_byte_ns, done.end_ns), (1, 2));
            assert_eq!(r.keep_alive_timeout_ns, Some(5_000_000_000));
            let head_end = RESPONSE.len() - b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".len();
            if cut >= head_end + 6 {
                assert_eq!(h.body[0], (b"abc".to_vec(), 1), "cut {cut}");
            }
        }
    }

    #[test]
    fn bytes_after_the_response_make_it_not_reusable() {
        let mut r = ResponseReader::default();
        let mut h = Seen::default();
        let mut bytes = RESPONSE.to_vec();
        bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        let done = r.feed(&bytes, 1, &mut h).unwrap().unwrap();
        assert!(!done.reusable);
    }

    #[test]
    fn a_close_ends_a_close_delimited_body_and_fails_anything_else() {
        let mut r = ResponseReader::default();
        let mut h = Seen::default();
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\n\r\nhello", 1, &mut h)
            .unwrap()
            .is_none());
        let done = r.eof(2, &mut h).unwrap();
        assert!(!done.reusable && !r.body_done);
        assert_eq!(h.body, [(b"hello".to_vec(), 1)]);

        let mut r = ResponseReader::default();
        let f = r.eof(1, &mut h).unwrap_err();
        assert!(matches!(f.error, ExchangeError::Closed) && !f.response_started);

        let mut r = ResponseReader::default();
        r.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc",
            1,
            &mut h,
        )
        .unwrap();
        let f = r.eof(2, &mut h).unwrap_err();
        assert!(matches!(f.error, ExchangeError::Body(_)) && f.response_started);
    }

    #[test]
    fn a_head_that_never_ends_is_refused() {
        let mut r = ResponseReader::default();
        let mut h = Seen::default();
        let mut line = b"HTTP/1.1 200 OK\r\n".to_vec();
        let filler = [b'x'; 4096];
        let mut out = r.feed(&line, 1, &mut h);
        line.clear();
        for _ in 0..40 {
            if out.is_err() {
                break;
            }
            out = r.feed(&filler, 1, &mut h);
        }
        let f = out.unwrap_err();
        assert!(matches!(f.error, ExchangeError::Head(_)));
    }
}
