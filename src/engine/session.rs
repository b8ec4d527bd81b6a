//! Multi-turn sessions (`--session-turns`): a level's arrival starts a session, whose first turn
//! is the arrival's prepared request; each later turn re-sends the whole history — every
//! earlier user message and the server's *own* streamed answer to it — plus a new user message,
//! a think time after the previous turn's last byte.
//!
//! Data flow: `engine::exchange::run` sends turn 1 with the stream handler keeping the answer's
//! decoded text (the API's reader, through `api::openai::ChunkParser::parse_with`); then [`Session::start`] cuts turn 1's
//! bytes where the messages array ends, and each [`Session::next_request`] appends the answer
//! and the next user message there (JSON-escaped once, here); the turn's request is its own
//! head and the shared history and tail, as parts. A session lives in its first turn's task,
//! on one core, and its history is freed when that task ends.

use std::rc::Rc;

use rand_xoshiro::rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::api::json_text::{pieces, Piece};
use crate::cli::ThinkTimeDist;
use crate::http::handler::Request;
use crate::workload::dataset::vocabulary::WORDS;

/// Answer bytes kept per turn: a longer answer ends its session (counted), so that an endpoint
/// that never stops cannot grow a history without bound.
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// The most turns a session may be drawn to have.
pub const MAX_TURNS: u32 = 1000;

/// How a run's sessions go: the same on every core (and in `metadata.json`'s `sessions`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionPlan {
    /// `--session-turns`: the mean number of turns.
    pub turns: f64,
    /// `--session-turns-stddev`: turns are drawn from a normal distribution, rounded, at least 1.
    pub turns_stddev: f64,
    /// `--turn-input-len`: words (≈ tokens) of each later turn's new user message.
    pub turn_input_len: u32,
    /// `--think-time-ms` and its distribution.
    #[serde(rename = "think_time_ms")]
    pub think_ms: f64,
    #[serde(rename = "think_time_dist")]
    pub think_dist: ThinkTimeDist,
    #[serde(skip)]
    pub seed: u64,
    /// Sessions replayed from a dataset's conversations: each row's later user messages
    /// (`dataset::conversations`), in place of drawn ones; a session's row is its id's
    /// ((id − 1) mod rows, as `prepared::unique` maps prompts to rows).
    #[serde(skip)]
    pub scripts: Option<std::sync::Arc<Vec<Vec<String>>>>,
    /// The body's key whose array holds the turns: `messages` (chat, Messages) or `input`
    /// (Responses).
    #[serde(skip)]
    pub history_key: &'static str,
}

impl SessionPlan {
    /// A generator for one draw about session `id` (its first prompt's number); `what` keeps
    /// the turn count, the think times and the texts apart.
    fn rng(&self, id: u64, what: u64) -> SplitMix64 {
        draw(self.seed ^ what.wrapping_mul(0xC2B2_AE3D_27D4_EB4F), id)
    }

    /// Session `id`'s later user messages, when it replays a dataset's conversation.
    fn script(&self, id: u64) -> Option<&[String]> {
        let scripts = self.scripts.as_deref()?;
        let row = id.saturating_sub(1) % scripts.len().max(1) as u64;
        scripts.get(row as usize).map(Vec::as_slice)
    }

    /// How many turns session `id` has: its conversation's, or drawn.
    pub fn turns_of(&self, id: u64) -> u32 {
        if let Some(script) = self.script(id) {
            return 1 + script.len() as u32;
        }
        let mean = self.turns;
        let drawn = if self.turns_stddev > 0.0 {
            // Box–Muller: one standard normal from two uniforms.
            let mut r = self.rng(id, 1);
            let (u1, u2) = (unit(&mut r).max(f64::MIN_POSITIVE), unit(&mut r));
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            mean + self.turns_stddev * z
        } else {
            mean
        };
        (drawn.round().max(1.0) as u32).min(MAX_TURNS)
    }

    /// The think time before turn `turn` (from 2) of session `id`, ns.
    pub fn think_ns(&self, id: u64, turn: u32) -> u64 {
        let ms = match self.think_dist {
            ThinkTimeDist::Constant => self.think_ms,
            ThinkTimeDist::Exponential => {
                let u = unit(&mut self.rng(id, 2 + u64::from(turn) * 4));
                -(1.0 - u).max(f64::MIN_POSITIVE).ln() * self.think_ms
            }
        };
        (ms * 1e6).round() as u64
    }

    /// Turn `turn`'s new user message of session `id`: its conversation's, or `--turn-input-len`
    /// words of the single-token vocabulary (its turn number first, so that no two turns of a
    /// session ask the same).
    pub fn user_text(&self, id: u64, turn: u32) -> String {
        if let Some(script) = self.script(id) {
            let i = (turn as usize).saturating_sub(2);
            return script.get(i).cloned().unwrap_or_default();
        }
        let mut r = self.rng(id, 3 + u64::from(turn) * 4);
        let mut text = format!("turn {turn}:");
        for _ in 2..self.turn_input_len.max(2) {
            text.push(' ');
            text.push_str(WORDS[(r.next_u64() as usize) & (WORDS.len() - 1)]);
        }
        text
    }
}

/// A generator for one seeded draw about `id` (a prompt's number): the same in every core and
/// shard. Sessions and abandoned requests (`cancel`) each mix their own purposes into `seed`.
pub(crate) fn draw(seed: u64, id: u64) -> SplitMix64 {
    SplitMix64::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A uniform draw in [0, 1).
pub(crate) fn unit(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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

    fn plan() -> SessionPlan {
        SessionPlan {
            turns: 4.0,
            turns_stddev: 0.0,
            turn_input_len: 8,
            think_ms: 500.0,
            think_dist: ThinkTimeDist::Constant,
            seed: 7,
            scripts: None,
            history_key: "messages",
        }
    }

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

    #[test]
    fn a_replayed_conversation_sets_its_turns_and_messages() {
        let p = SessionPlan {
            scripts: Some(std::sync::Arc::new(vec![
                vec!["b".into(), "c".into()],
                vec![],
            ])),
            ..plan()
        };
        // Prompt 1 (and 3, 5, …) sends row 0; prompt 2 row 1.
        assert_eq!((p.turns_of(1), p.turns_of(2), p.turns_of(3)), (3, 1, 3));
        assert_eq!(p.user_text(3, 2), "b");
        assert_eq!(p.user_text(3, 3), "c");
    }

    #[test]
    fn draws_follow_the_seed_and_the_flags() {
        let p = plan();
        assert_eq!(p.turns_of(1), 4);
        assert_eq!(p.think_ns(1, 2), 500_000_000);
        assert_eq!(p.user_text(5, 2), p.user_text(5, 2));
        assert_ne!(p.user_text(5, 2), p.user_text(5, 3));
        assert_eq!(p.user_text(5, 2).split(' ').count(), 8);
        let spread = SessionPlan {
            turns_stddev: 2.0,
            think_dist: ThinkTimeDist::Exponential,
            ..p
        };
        let turns: Vec<u32> = (0..2000).map(|i| spread.turns_of(i)).collect();
        let mean = turns.iter().sum::<u32>() as f64 / 2000.0;
        assert!((3.7..4.4).contains(&mean), "{mean}");
        assert!(turns.iter().all(|&t| t >= 1) && turns.iter().any(|&t| t != 4));
        let think: f64 = (0..2000).map(|i| spread.think_ns(i, 2) as f64).sum::<f64>() / 2000.0;
        assert!((400e6..600e6).contains(&think), "{think}");
    }
}
