//! Response body framing: chunked, Content-Length and close-delimited bodies, decoded
//! incrementally and without copying.
//!
//! Data flow: `http::conn` passes each read's bytes (after the head) to [`BodyDecoder::decode`],
//! which returns how many bytes it consumed and, when there is one, a slice of body data — a
//! sub-slice of the input, handed on to the SSE parser. The caller loops until the input is used
//! up or the body is complete; "need more bytes" is simply "consumed everything, not complete".

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// `Content-Length: n`.
    Length(u64),
    /// Until the server closes the connection.
    Close,
    /// No body (1xx, 204, 304).
    Empty,
}

/// A framing violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The chunk-size line is not hexadecimal, or a chunk is not followed by CRLF.
    BadChunk(&'static str),
    /// The connection ended before the body did.
    Truncated,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::BadChunk(why) => write!(f, "invalid chunked encoding ({why})"),
            BodyError::Truncated => write!(f, "body truncated"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading chunk-size hex digits; `digits` seen so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: whitespace or a chunk extension, up to the line end.
    Extension {
        size: u64,
    },
    /// Saw CR after the size line; expect LF.
    SizeLf {
        size: u64,
    },
    /// Inside chunk data (or a Content-Length body).
    Data {
        remaining: u64,
    },
    /// After chunk data: expect CR (or a bare LF).
    DataCr,
    /// Expect LF after chunk data's CR.
    DataLf,
    /// At the start of a trailer line (after the last chunk).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// Saw CR at the start of a trailer line: expect the final LF.
    TrailerEndLf,
    /// Saw CR inside a trailer line: expect LF.
    TrailerLineLf,
    /// Close-delimited: everything is data until EOF.
    UntilClose,
    Done,
}

/// Incremental body decoder for one response.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    chunked: bool,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Chunked => State::Size { size: 0, digits: 0 },
            Framing::Length(0) | Framing::Empty => State::Done,
            Framing::Length(n) => State::Data { remaining: n },
            Framing::Close => State::UntilClose,
        };
        Self {
            state,
            chunked: framing == Framing::Chunked,
        }
    }

    /// The whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The peer closed the connection: fine for a close-delimited body, truncation otherwise.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }

    /// Consumes a prefix of `input`. Returns the bytes consumed and the body data found in them
    /// (at most one slice per call). Call again with the rest until it is empty or `is_done()`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Option<&'a [u8]>), BodyError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok((i, None)),
                State::UntilClose => return Ok((input.len(), Some(input))),
                State::Data { remaining } => {
                    let n = remaining.min((input.len() - i) as u64) as usize;
                    let left = remaining - n as u64;
                    self.state = if left > 0 {
                        State::Data { remaining: left }
                    } else if self.chunked {
                        State::DataCr
                    } else {
                        State::Done
                    };
                    return Ok((i + n, Some(&input[i..i + n])));
                }
                State::Size { size, digits } => {
                    if let Some(d) = hex(b) {
                        if digits >= 15 {
                            return Err(BodyError::BadChunk("chunk size too large"));
                        }
                        self.state = State::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                        };
                    } else if digits == 0 {
                        return Err(BodyError::BadChunk("chunk size is not hexadecimal"));
                    } else {
                        match b {
                            b'\r' => self.state = State::SizeLf { size },
                            b'\n' => self.end_size_line(size),
                            b';' | b' ' | b'\t' => self.state = State::Extension { size },
                            _ => return Err(BodyError::BadChunk("chunk size is not hexadecimal")),
                        }
                    }
                }
                State::Extension { size } => match b {
                    b'\r' => self.state = State::SizeLf { size },
                    b'\n' => self.end_size_line(size),
                    _ => {}
                },
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunk("CR without LF after chunk size"));
                    }
                    self.end_size_line(size);
                }
                State::DataCr => match b {
                    b'\r' => self.state = State::DataLf,
                    b'\n' => self.state = State::Size { size: 0, digits: 0 },
                    _ => return Err(BodyError::BadChunk("chunk data longer than its size")),
                },
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunk("CR without LF after chunk data"));
                    }
                    self.state = State::Size { size: 0, digits: 0 };
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::TrailerEndLf,
                    b'\n' => {
                        self.state = State::Done;
                        return Ok((i + 1, None));
                    }
                    _ => self.state = State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\r' => self.state = State::TrailerLineLf,
                    b'\n' => self.state = State::TrailerStart,
                    _ => {}
                },
                State::TrailerLineLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunk("CR without LF in trailer"));
                    }
                    self.state = State::TrailerStart;
                }
                State::TrailerEndLf => {
                    if b != b'\n' {
                        return Err(BodyError::BadChunk("CR without LF after last chunk"));
                    }
                    self.state = State::Done;
                    return Ok((i + 1, None));
                }
            }
            i += 1;
        }
        Ok((i, None))
    }

    fn end_size_line(&mut self, size: u64) {
        self.state = if size == 0 {
            State::TrailerStart
        } else {
            State::Data { remaining: size }
        };
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The data of a whole chunked body (`encode_chunked`'s inverse), read by [`BodyDecoder`]: the
/// built-in endpoint's faults that send its events unchunked, and tests. Stops at an error.
pub fn unchunk(chunked: &[u8]) -> Vec<u8> {
    let mut d = BodyDecoder::new(Framing::Chunked);
    let (mut rest, mut body) = (chunked, Vec::new());
    while !rest.is_empty() && !d.is_done() {
        let Ok((n, data)) = d.decode(rest) else { break };
        body.extend_from_slice(data.unwrap_or_default());
        if n == 0 {
            break;
        }
        rest = &rest[n..];
    }
    body
}

/// Wraps `body` in chunked encoding with chunks of the given sizes (test and bench helper).
pub fn encode_chunked(body: &[u8], chunk_sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut rest = body;
    let mut sizes = chunk_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&rest.len())).clamp(1, rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces cut at `splits`; returns the body and whether it completed.
    fn decode_split(
        framing: Framing,
        input: &[u8],
        splits: &[usize],
    ) -> Result<(Vec<u8>, bool, usize), BodyError> {
        let mut d = BodyDecoder::new(framing);
        let mut body = Vec::new();
        let mut last = 0;
        let mut used = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            let mut piece = &input[last..s];
            while !piece.is_empty() && !d.is_done() {
                let (n, data) = d.decode(piece)?;
                if let Some(data) = data {
                    body.extend_from_slice(data);
                }
                used += n;
                piece = &piece[n..];
            }
            last = s;
        }
        Ok((body, d.is_done(), used))
    }

    const RECORDED: &[u8] = include_bytes!("../../tests/data/vllm_stream.sse");

    #[test]
    fn chunked_recorded_stream_every_split_point() {
        let wire = encode_chunked(RECORDED, &[250, 7, 1, 900]);
        for s in 0..=wire.len() {
            let (body, done, used) = decode_split(Framing::Chunked, &wire, &[s]).unwrap();
            assert_eq!(body, RECORDED, "split at {s}");
            assert!(done);
            assert_eq!(used, wire.len());
        }
    }

    #[test]
    fn extensions_trailers_and_leftover_bytes() {
        let wire =
            b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nExpires: never\r\nX: y\r\n\r\nNEXT";
        let (body, done, used) = decode_split(Framing::Chunked, wire, &[]).unwrap();
        assert_eq!(body, b"hello world");
        assert!(done);
        assert_eq!(&wire[used..], b"NEXT");
    }

    #[test]
    fn content_length_and_close_delimited() {
        let (body, done, used) = decode_split(Framing::Length(5), b"hello, more", &[2]).unwrap();
        assert_eq!((body.as_slice(), done, used), (&b"hello"[..], true, 5));
        let mut d = BodyDecoder::new(Framing::Close);
        assert_eq!(d.decode(b"abc").unwrap(), (3, Some(&b"abc"[..])));
        assert!(!d.is_done());
        assert_eq!(d.eof(), Ok(()));
        let mut d = BodyDecoder::new(Framing::Length(10));
        d.decode(b"abc").unwrap();
        assert_eq!(d.eof(), Err(BodyError::Truncated));
    }

    #[test]
    fn malformed_chunks() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"3\r\nabcX",
            b"3\rx",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(
                matches!(
                    decode_split(Framing::Chunked, bad, &[]),
                    Err(BodyError::BadChunk(_))
                ),
                "{bad:?}"
            );
        }
        let mut d = BodyDecoder::new(Framing::Chunked);
        d.decode(b"5\r\nhel").unwrap();
        assert_eq!(d.eof(), Err(BodyError::Truncated));
    }
}
