//! Multi-turn sessions (`--session-turns`): a level's arrival starts a session, whose first turn
//! is the arrival's prepared request; each later turn re-sends the whole history — every
//! earlier user message and the server's *own* streamed answer to it — plus a new user message,
//! a think time after the previous turn's last byte.
//!
//! Data flow: `dispatch` spawns a session's arrival as [`run`], which sends turn 1 with the stream handler keeping the answer's
//! decoded text (the API's reader, through `api::openai::ChunkParser::parse_with`); then [`Session::start`] cuts turn 1's
//! bytes where the messages array ends, and each [`Session::next_request`] appends the answer
//! and the next user message there (JSON-escaped once, here); the turn's request is its own
//! head and the shared history and tail, as parts. A session lives in its first turn's task,
//! on one core, and its history is freed when that task ends.

use std::cell::RefCell;
use std::rc::Rc;

use super::core_state::Core;
use super::pacer::Pacer;
use super::pool::PooledConn;
use super::request::{complete, send_now, RequestEnd, Ticket};
use super::session_plan::{SessionPlan, MAX_ANSWER_BYTES};
use crate::api::json_text::{pieces, Piece};
use crate::foundation::clock::now_ns;
use crate::http::handler::Request;
use crate::recording::recorder::Recorder;
use crate::recording::session_counts::SessionEnd;
use crate::workload::prepared::RequestBuf;

/// A session, as its arrival's task: turn 1 (`request`, the arrival's, on `first` if it was
/// already written at dispatch), then its later turns; how it ended is recorded, and the task's
/// concurrency slot freed.
pub async fn run(
    core: Rc<Core>,
    rec: Rc<RefCell<Recorder>>,
    t: Ticket,
    request: RequestBuf,
    first: Option<PooledConn>,
    plan: Rc<SessionPlan>,
) {
    let mut answer = Vec::new();
    let done = complete(
        core.clone(),
        rec.clone(),
        t,
        request,
        first,
        Some(&mut answer),
    )
    .await;
    let id = core.session_id(t.sample).unwrap_or_default();
    let ended = match done {
        RequestEnd::Done(done_ns) => {
            later_turns(&core, &rec, (t, id), &plan, answer, done_ns).await
        }
        RequestEnd::Failed => SessionEnd::Failed,
        RequestEnd::Cancelled => SessionEnd::Cancelled,
    };
    rec.borrow_mut().record_session_end(ended);
    core.free_slot();
}

/// A session's turns after the first (which succeeded at `done_ns`, answering `answer`): each
/// a think time after the previous one's last byte, on an idle pooled connection of the same
/// endpoint if there is one.
async fn later_turns(
    core: &Rc<Core>,
    rec: &Rc<RefCell<Recorder>>,
    (first, id): (Ticket, u64),
    plan: &SessionPlan,
    mut answer: Vec<u8>,
    mut done_ns: u64,
) -> SessionEnd {
    let turns = plan.turns_of(id);
    if turns <= 1 {
        return SessionEnd::Completed;
    }
    let bytes = core.requests.borrow().get(first.sample);
    let Some(mut history) = Session::start(&bytes, plan.history_key) else {
        // Refused before the run (sessions need an API with a messages array).
        return SessionEnd::Failed;
    };
    drop(bytes);
    for k in 2..=turns {
        if answer.len() > MAX_ANSWER_BYTES {
            return SessionEnd::AnswerCap;
        }
        let intended_ns = done_ns + plan.think_ns(id, k);
        wait_until(core, rec, intended_ns).await;
        if crate::foundation::interrupt::requested() {
            return SessionEnd::Stopped;
        }
        let request = history.next_request(&answer, &plan.user_text(id, k));
        answer.clear();
        let cancel = core.cancels.as_ref().and_then(|c| c.later_turn(id, k));
        let t = Ticket {
            intended_ns,
            sent_ns: None,
            waited: false,
            turn: k,
            cancel_at_ns: cancel.map(|after| intended_ns.saturating_add(after)),
            ..first
        };
        let mut t = t;
        let conn = send_now(core, rec, t.endpoint, &request, now_ns());
        if conn.is_some() {
            t.record_send(rec, now_ns());
        }
        let turn = complete(
            core.clone(),
            rec.clone(),
            t,
            request,
            conn,
            Some(&mut answer),
        );
        match turn.await {
            RequestEnd::Done(end) => done_ns = end,
            RequestEnd::Failed => return SessionEnd::Failed,
            RequestEnd::Cancelled => return SessionEnd::Cancelled,
        }
    }
    SessionEnd::Completed
}

/// Sleeps until `at_ns` (monotonic) as precisely as an arrival is paced: on monoio's coarse
/// timer until a few ms before (no descriptor held while a session thinks), then with a pacer of
/// its own (`pacer`: a timerfd wake a learned margin early, then fair yields); its spin counts
/// with the level's pacer spin.
async fn wait_until(core: &Core, rec: &RefCell<Recorder>, at_ns: u64) {
    const FINE_NS: u64 = 3_000_000;
    let coarse = at_ns.saturating_sub(FINE_NS);
    if now_ns() < coarse {
        crate::rt::timer::sleep_until_ns(coarse).await;
    }
    let mut pacer = if crate::rt::timer::spin_driven() {
        Pacer::polled()
    } else {
        Pacer::new(core.precise_timers)
    };
    pacer.wait_until(at_ns, || true).await;
    rec.borrow_mut().record_pacer_spin(pacer.spin_ns);
}

/// Appends `s` as the inside of a JSON string.
pub fn push_json_escaped(out: &mut Vec<u8>, s: &[u8]) {
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
}

/// Where a JSON body's top-level array `key` (`"messages"`) closes (the index of its `]`), and
/// whether it holds anything. None when the body has no such array.
fn messages_end(body: &[u8], name: &str) -> Option<(usize, bool)> {
    let mut depth = 0usize;
    // The last string (a key at depth 1, when a ':' follows it), and the array's depth and
    // whether it is still empty.
    let (mut last_str, mut key) = ((0, 0), false);
    let mut inside: Option<(usize, bool)> = None;
    let fill = |inside: &mut Option<(usize, bool)>| {
        if let Some((_, empty)) = inside.as_mut() {
            *empty = false;
        }
    };
    for (i, piece) in pieces(body) {
        let b = match piece {
            Piece::String { start, end, .. } => {
                last_str = (start, end);
                key = false;
                fill(&mut inside);
                continue;
            }
            Piece::Byte(b) => b,
        };
        match b {
            b':' => key = depth == 1 && &body[last_str.0..last_str.1] == name.as_bytes(),
            b'[' | b'{' => {
                fill(&mut inside);
                depth += 1;
                if b == b'[' && key && depth == 2 && inside.is_none() {
                    inside = Some((depth, true));
                }
                key = false;
            }
            b']' | b'}' => {
                if let Some((d, empty)) = inside {
                    if b == b']' && depth == d {
                        return Some((i, !empty));
                    }
                }
                depth = depth.checked_sub(1)?;
            }
            _ if b.is_ascii_whitespace() => {}
            _ => fill(&mut inside),
        }
    }
    None
}

/// One session's history: its request head and its body, cut where the messages array closes:
/// the history grows there, and a turn's request is sent as parts that share it (no copy of
/// the history per turn).
pub struct Session {
    /// The request's head up to its `Content-Length` line.
    head: Vec<u8>,
    /// The body up to the end of its last message (shared with the request being sent).
    history: Rc<Vec<u8>>,
    /// The rest of the body, from the messages array's `]` on.
    tail: Rc<Vec<u8>>,
    /// The turn last sent (from 1).
    pub turn: u32,
}

impl Session {
    /// The session whose first turn sent `first` (a whole chat request); None when the request
    /// has no messages array to carry a history (a completions body).
    pub fn start(first: &[u8], key: &str) -> Option<Self> {
        let split = first.windows(4).position(|w| w == b"\r\n\r\n")?;
        let (head, body) = (&first[..split + 2], &first[split + 4..]);
        let cl = head
            .windows(b"\r\nContent-Length:".len())
            .position(|w| w.eq_ignore_ascii_case(b"\r\nContent-Length:"))?;
        let line_end = cl + 2 + head[cl + 2..].windows(2).position(|w| w == b"\r\n")? + 2;
        let mut kept = head[..cl + 2].to_vec();
        kept.extend_from_slice(&head[line_end..]);
        let (end, non_empty) = messages_end(body, key)?;
        if !non_empty {
            return None;
        }
        Some(Self {
            head: kept,
            history: Rc::new(body[..end].to_vec()),
            tail: Rc::new(body[end..].to_vec()),
            turn: 1,
        })
    }

    /// The next turn's request: the history so far, `answer` (the previous turn's streamed
    /// text) as the assistant's message, then `user` as the new user message.
    pub fn next_request(&mut self, answer: &[u8], user: &str) -> OwnedRequest {
        // The previous turn's request has ended, so the history is not shared and grows in
        // place (were it still shared, `make_mut` would copy it: never a change under a send).
        let h = Rc::make_mut(&mut self.history);
        h.extend_from_slice(b",{\"role\":\"assistant\",\"content\":\"");
        push_json_escaped(h, answer);
        h.extend_from_slice(b"\"},{\"role\":\"user\",\"content\":\"");
        push_json_escaped(h, user.as_bytes());
        h.extend_from_slice(b"\"}");
        self.turn += 1;
        let length = self.history.len() + self.tail.len();
        let mut head = Vec::with_capacity(self.head.len() + 40);
        head.extend_from_slice(&self.head);
        head.extend_from_slice(format!("Content-Length: {length}\r\n\r\n").as_bytes());
        OwnedRequest([Rc::new(head), self.history.clone(), self.tail.clone()])
    }
}

/// A turn's request: its own head, then the session's history and the body's tail, shared (a
/// vectored write sends the three).
#[derive(Clone)]
pub struct OwnedRequest([Rc<Vec<u8>>; 3]);

/// A range of one part of an [`OwnedRequest`] the kernel can write from.
pub struct OwnedPart {
    bytes: Rc<Vec<u8>>,
    from: usize,
}

// SAFETY: the pointer is into the `Vec` behind the `Rc`, which is not mutated while this buffer
// holds it: the only mutation, `Session::next_request`, goes through `Rc::make_mut`, which copies
// instead when another `Rc` (such as this one) is alive. `self` keeps the allocation alive for
// as long as the runtime holds this buffer, and `from` is at most the length (`owned_part`
// clamps it), so `bytes_init` stays within it.
unsafe impl monoio::buf::IoBuf for OwnedPart {
    fn read_ptr(&self) -> *const u8 {
        self.bytes[self.from..].as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.bytes.len() - self.from
    }
}

impl Request for OwnedRequest {
    type Part = OwnedPart;

    fn part_count(&self) -> usize {
        self.0.len()
    }

    fn part(&self, i: usize) -> &[u8] {
        &self.0[i]
    }

    fn owned_part(&self, i: usize, from: usize) -> OwnedPart {
        OwnedPart {
            bytes: self.0[i].clone(),
            from: from.min(self.0[i].len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_messages_array_is_found_at_the_top_level_only() {
        let b = br#"{"model":"m","x":{"messages":[1]},"messages":[{"role":"user","content":"a ] \" }"}],"max_tokens":4}"#;
        let (end, full) = messages_end(b, "messages").unwrap();
        assert!(full);
        assert_eq!(&b[end..], br#"],"max_tokens":4}"#);
        assert_eq!(
            messages_end(br#"{"messages":[]}"#, "messages"),
            Some((13, false))
        );
        assert_eq!(
            messages_end(br#"{"prompt":"messages:[x]"}"#, "messages"),
            None
        );
        assert_eq!(
            messages_end(b"{\"messages\" : [ 1 ] }", "messages").map(|e| e.1),
            Some(true)
        );
    }

    #[test]
    fn a_later_turn_carries_the_answer_and_a_new_message() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#;
        let first = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\nUser-Agent: q\r\n\r\n{body}",
            body.len()
        );
        let mut s = Session::start(first.as_bytes(), "messages").unwrap();
        let req = s.next_request(b"He said \"ok\"\n", "and then?");
        let whole = |r: &OwnedRequest| (0..3).flat_map(|i| r.part(i).to_vec()).collect::<Vec<u8>>();
        let bytes = whole(&req);
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("User-Agent: q"));
        assert_eq!(head.matches("Content-Length").count(), 1);
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["messages"][1]["content"], "He said \"ok\"\n");
        assert_eq!(v["messages"][2]["content"], "and then?");
        assert_eq!(v["stream"], true);
        drop(req);
        let req = s.next_request("é\u{1}".as_bytes(), "3");
        let bytes = whole(&req);
        let body = std::str::from_utf8(&bytes)
            .unwrap()
            .split_once("\r\n\r\n")
            .unwrap()
            .1;
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["messages"].as_array().unwrap().len(), 5);
        assert_eq!(v["messages"][3]["content"], "é\u{1}");
        assert_eq!(s.turn, 3);
        assert_eq!(
            monoio::buf::IoBuf::bytes_init(&req.owned_part(1, 4)),
            req.part(1).len() - 4
        );
        // A request still held keeps its bytes: the next turn's history is a copy.
        let held = whole(&req);
        let _next = s.next_request(b"x", "y");
        assert_eq!(whole(&req), held);
        // A completions body has no history to carry.
        let prompt = "POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n{\"prompt\":1}";
        assert!(Session::start(prompt.as_bytes(), "messages").is_none());
    }
}
