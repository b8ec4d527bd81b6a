//! Server-sent events framing: turns the decoded bytes of a response body into event payloads.
//!
//! Data flow: `engine::stream` hands each read's body bytes to [`SseParser::feed`], which calls back
//! once per complete event with its `data` (the `openai` module parses that JSON).
//!
//! The parser is incremental and zero-copy in the common case: an event whose single `data:` line
//! lies wholly inside one read is handed out as a slice of that read. Only a line split across
//! reads, or an event with several `data:` lines, is copied into a small owned buffer. Feeding the
//! same bytes split at any boundaries yields the same events (tested below for every split point).
//!
//! Rules followed (WHATWG HTML, "Interpreting an event stream"): lines end in LF, CRLF or CR; a
//! line starting with `:` is a comment; `field:value` with one optional space after the colon; a
//! line with no colon is a field with an empty value; `data` lines of one event are joined with LF;
//! a blank line dispatches the event; an event with no `data` line is not dispatched.

use memchr::{memchr, memchr2};

/// Longest line (or joined event data) accepted, so a hostile server cannot grow memory forever.
pub const MAX_EVENT_BYTES: usize = 4 << 20;

/// One dispatched event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The joined `data` field values, without the final line feed.
    pub data: &'a [u8],
    /// The event's `event:` field was `error` (some servers signal failures this way).
    pub error_event: bool,
}

impl Event<'_> {
    /// `data: [DONE]`, the OpenAI end-of-stream marker.
    pub fn is_done(&self) -> bool {
        self.data == b"[DONE]"
    }
}

/// What the event callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Errors the framing itself can raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line or an event's data grew past [`MAX_EVENT_BYTES`].
    TooLong,
}

/// Where the data of the event being assembled lives.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Data {
    /// No `data` line yet.
    None,
    /// One `data` line, borrowed from the current input at this range.
    Borrowed(usize, usize),
    /// In `SseParser::data`.
    Owned,
}

/// Incremental SSE parser; one per response.
#[derive(Default)]
pub struct SseParser {
    /// An incomplete line carried over from the previous `feed`.
    carry: Vec<u8>,
    /// Event data that could not be borrowed.
    data: Vec<u8>,
    owned_data: bool,
    error_event: bool,
    /// The previous input ended with CR: a leading LF of the next input belongs to that line end.
    skip_lf: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `input`, calling `on_event` for each complete event. Returns `Flow::Stop` as soon as
    /// the callback does (the rest of `input` is then ignored).
    pub fn feed<F>(&mut self, input: &[u8], mut on_event: F) -> Result<Flow, SseError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        let mut pos = 0;
        if self.skip_lf {
            self.skip_lf = false;
            if input.first() == Some(&b'\n') {
                pos = 1;
            }
        }
        let mut data = if self.owned_data {
            Data::Owned
        } else {
            Data::None
        };
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(i) = memchr2(b'\n', b'\r', rest) else {
                // Incomplete line: keep it, and move borrowed data out of `input` before returning.
                if self.carry.len() + rest.len() > MAX_EVENT_BYTES {
                    return Err(SseError::TooLong);
                }
                self.carry.extend_from_slice(rest);
                break;
            };
            let end = pos + i;
            let mut next = end + 1;
            if input[end] == b'\r' {
                if next < input.len() {
                    if input[next] == b'\n' {
                        next += 1;
                    }
                } else {
                    self.skip_lf = true;
                }
            }
            let flow = if self.carry.is_empty() {
                self.line(input, pos, end, true, &mut data, &mut on_event)?
            } else {
                if self.carry.len() + (end - pos) > MAX_EVENT_BYTES {
                    return Err(SseError::TooLong);
                }
                self.carry.extend_from_slice(&input[pos..end]);
                let carry = std::mem::take(&mut self.carry);
                let flow = self.line(&carry, 0, carry.len(), false, &mut data, &mut on_event);
                self.carry = carry;
                self.carry.clear();
                flow?
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
            pos = next;
        }
        if let Data::Borrowed(s, e) = data {
            self.data.clear();
            self.data.extend_from_slice(&input[s..e]);
            data = Data::Owned;
        }
        self.owned_data = data == Data::Owned;
        Ok(Flow::Continue)
    }

    /// Handles one complete line `src[start..end]`. `src` is either the caller's input
    /// (`borrowable`: data may be borrowed from it) or the carry buffer (data is copied). A carried
    /// line is always the first of a feed, so borrowed data never refers to the carry buffer.
    fn line<F>(
        &mut self,
        src: &[u8],
        start: usize,
        end: usize,
        borrowable: bool,
        data: &mut Data,
        on_event: &mut F,
    ) -> Result<Flow, SseError>
    where
        F: FnMut(Event<'_>) -> Flow,
    {
        let line = &src[start..end];
        if line.is_empty() {
            let flow = match *data {
                Data::None => Flow::Continue,
                Data::Borrowed(s, e) => on_event(Event {
                    data: &src[s..e],
                    error_event: self.error_event,
                }),
                Data::Owned => on_event(Event {
                    data: &self.data,
                    error_event: self.error_event,
                }),
            };
            *data = Data::None;
            self.data.clear();
            self.error_event = false;
            return Ok(flow);
        }
        if line[0] == b':' {
            return Ok(Flow::Continue);
        }
        let (field, value_start) = match memchr(b':', line) {
            Some(c) => {
                let v = if line.get(c + 1) == Some(&b' ') {
                    c + 2
                } else {
                    c + 1
                };
                (&line[..c], start + v)
            }
            None => (line, end),
        };
        match field {
            b"data" => {
                // Only the caller's input outlives this call; a carried line must be copied.
                match *data {
                    Data::None if borrowable => {
                        *data = Data::Borrowed(value_start, end);
                    }
                    Data::None => {
                        self.data.clear();
                        self.data.extend_from_slice(&src[value_start..end]);
                        *data = Data::Owned;
                    }
                    Data::Borrowed(s, e) => {
                        self.data.clear();
                        self.data.extend_from_slice(&src[s..e]);
                        self.push_line(&src[value_start..end])?;
                        *data = Data::Owned;
                    }
                    Data::Owned => self.push_line(&src[value_start..end])?,
                }
            }
            b"event" => self.error_event = &src[value_start..end] == b"error",
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn push_line(&mut self, value: &[u8]) -> Result<(), SseError> {
        if self.data.len() + 1 + value.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLong);
        }
        self.data.push(b'\n');
        self.data.extend_from_slice(value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events_split(input: &[u8], splits: &[usize]) -> Vec<(String, bool)> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            p.feed(&input[last..s], |e| {
                out.push((String::from_utf8_lossy(e.data).into_owned(), e.error_event));
                Flow::Continue
            })
            .unwrap();
            last = s;
        }
        out
    }

    fn events(input: &[u8]) -> Vec<String> {
        events_split(input, &[]).into_iter().map(|e| e.0).collect()
    }

    #[test]
    fn line_endings_and_optional_space() {
        assert_eq!(
            events(b"data: a\n\ndata:b\r\n\r\ndata: c\r\rdata:  d\n\n"),
            vec!["a", "b", "c", " d"]
        );
    }

    #[test]
    fn multi_line_data_comments_and_other_fields() {
        let s = b": keepalive\nid: 7\nretry: 10\ndata: one\ndata\ndata: two\n\nevent: error\ndata: {}\n\n";
        assert_eq!(
            events_split(s, &[]),
            vec![("one\n\ntwo".to_string(), false), ("{}".to_string(), true)]
        );
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_incomplete_event_waits() {
        assert_eq!(events(b"event: x\n\ndata: a\n"), Vec::<String>::new());
    }

    #[test]
    fn done_and_stop() {
        let mut p = SseParser::new();
        let mut seen = Vec::new();
        let flow = p
            .feed(b"data: x\n\ndata: [DONE]\n\ndata: after\n\n", |e| {
                seen.push(e.data.to_vec());
                if e.is_done() {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
            .unwrap();
        assert_eq!(flow, Flow::Stop);
        assert_eq!(seen, vec![b"x".to_vec(), b"[DONE]".to_vec()]);
    }

    const RECORDED: &[u8] = include_bytes!("../../tests/data/vllm_stream.sse");

    #[test]
    fn every_single_split_point_of_a_recorded_stream_parses_the_same() {
        let whole = events_split(RECORDED, &[]);
        assert!(whole.len() > 10);
        for s in 0..=RECORDED.len() {
            assert_eq!(events_split(RECORDED, &[s]), whole, "split at {s}");
        }
        // And with CRLF / CR line endings, split at every point.
        for eol in [&b"\r\n"[..], &b"\r"[..]] {
            let conv: Vec<u8> = RECORDED
                .iter()
                .flat_map(|&b| if b == b'\n' { eol.to_vec() } else { vec![b] })
                .collect();
            for s in 0..=conv.len() {
                assert_eq!(events_split(&conv, &[s]), whole, "split at {s}");
            }
        }
    }

    #[test]
    fn byte_by_byte_feed_parses_the_same() {
        let whole = events_split(RECORDED, &[]);
        let splits: Vec<usize> = (1..RECORDED.len()).collect();
        assert_eq!(events_split(RECORDED, &splits), whole);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = SseParser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big, |_| Flow::Continue), Err(SseError::TooLong));
    }
}
