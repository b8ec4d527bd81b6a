//! Part of stage 4, the reset: the server's prefix cache emptied before every level
//! (`--reset-prefix-cache auto|off|URL`), the first one included, once the previous level has
//! drained, so that no level is answered from what an earlier one (or an earlier run) left.
//!
//! `auto` finds the way the server answers, once, at the first reset: vLLM's
//! `POST /reset_prefix_cache` (only with `VLLM_SERVER_DEV_MODE=1`), SGLang's `POST /flush_cache`,
//! or llama.cpp's slots (`GET /slots`, then `POST /slots/{id}?action=erase` for each; refused
//! with HTTP 501 unless the server was started with `--slot-save-path`). A URL is POSTed as is.
//! A refusal is one warning with the server's reason, and the run goes on. Each level's object
//! says what its reset did (`prefix_cache_reset`); `metadata.json` says what the first one did.
//! With `--shard`, only shard 0 resets. Plain `http://` only, on its own connections.

use std::time::Duration;

use serde::Serialize;

use super::plan::{Plan, ResetAsk};
use crate::http::blocking::{call, Call, Target};

/// One reset call's limit (SGLang flushes only once its running requests end).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Characters of a server's reason kept in messages.
const REASON_CHARS: usize = 300;

/// How the server's cache is emptied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Way {
    /// vLLM's (and the built-in endpoint's) `POST /reset_prefix_cache`.
    Vllm,
    /// SGLang's `POST /flush_cache`.
    Sglang,
    /// llama.cpp's slot erase, each slot in turn.
    LlamaCppSlots,
    /// `--reset-prefix-cache URL`.
    Url,
}

impl Way {
    fn name(self) -> &'static str {
        match self {
            Way::Vllm => "vLLM's POST /reset_prefix_cache",
            Way::Sglang => "SGLang's POST /flush_cache",
            Way::LlamaCppSlots => "llama.cpp's slot erase (POST /slots/{id}?action=erase)",
            Way::Url => "POST to the given URL",
        }
    }

    /// Why a reset that answered may still leave hits in the next level.
    pub fn caveat(self) -> &'static str {
        match self {
            Way::LlamaCppSlots => "llama.cpp keeps a RAM prompt cache (--cache-ram; 0 turns it off) that survives a slot erase",
            _ => "the level's own prompts share prefixes, or other traffic reached the server after the reset",
        }
    }
}

/// What one reset did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The cache was emptied.
    pub done: bool,
    /// In words: "reset by …", or "refused: HTTP 501: …".
    pub said: String,
}

/// One server to reset: its root (or the URL given), and as shown.
struct Server {
    shown: String,
    target: Target,
}

/// The resets of a run.
pub struct Resetter {
    servers: Vec<Server>,
    /// `Authorization` and the `--header` lines every reset call carries.
    headers: String,
    /// The way found (or given), once known.
    pub way: Option<Way>,
    /// The first reset's outcome, kept for the first level.
    first: Option<Outcome>,
    warned: bool,
}

/// `metadata.json`'s `prefix_cache_reset`.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub asked: String,
    pub way: Option<Way>,
    pub first: Outcome,
}

impl Resetter {
    /// `--reset-prefix-cache` (checked with the plan); `None` when off, or on a shard other than
    /// 0. The first reset is made here, before the first level.
    pub fn start(plan: &Plan) -> Option<(Self, Meta)> {
        let asked = plan.args.workload.reset_prefix_cache.trim();
        if matches!(plan.reset, ResetAsk::Off) {
            return None;
        }
        if let Some((k, _)) = plan.shard.filter(|&(k, _)| k > 0) {
            eprintln!("note: --reset-prefix-cache: only shard 0 resets the server's cache; this is shard {k}");
            return None;
        }
        let mut r = Self {
            servers: servers(plan),
            headers: crate::workload::prepared::credential_lines(&plan.api_key, &plan.headers),
            way: matches!(plan.reset, ResetAsk::Url { .. }).then_some(Way::Url),
            first: None,
            warned: false,
        };
        let first = r.reset();
        r.first = Some(first.clone());
        let meta = Meta {
            asked: asked.to_string(),
            way: r.way,
            first,
        };
        Some((r, meta))
    }

    /// Empties the cache before a level (the first level's was done at the start).
    pub fn before_level(&mut self) -> Outcome {
        match self.first.take() {
            Some(o) => o,
            None => self.reset(),
        }
    }

    /// Resets every server; warns once when one refuses.
    fn reset(&mut self) -> Outcome {
        let mut said = Vec::new();
        let mut done = true;
        for i in 0..self.servers.len() {
            let (ok, what) = self.reset_one(i);
            done &= ok;
            said.push(if self.servers.len() > 1 {
                format!("{}: {what}", self.servers[i].shown)
            } else {
                what
            });
        }
        let said = said.join("; ");
        if !done && !self.warned {
            self.warned = true;
            eprintln!("warning: --reset-prefix-cache: the server's cache was not emptied ({said}); the run goes on, and each level's prefix_cache_reset says what happened");
        }
        Outcome { done, said }
    }

    /// One server: the way known, or each way in turn until one answers.
    fn reset_one(&mut self, i: usize) -> (bool, String) {
        let ways: Vec<Way> = match self.way {
            Some(w) => vec![w],
            None => vec![Way::Vllm, Way::Sglang, Way::LlamaCppSlots],
        };
        let mut tried = Vec::new();
        for way in ways {
            match self.try_way(i, way) {
                Answer::NotHere => tried.push(match way {
                    Way::Vllm => "POST /reset_prefix_cache: 404",
                    Way::Sglang => "POST /flush_cache: 404",
                    _ => "GET /slots: 404",
                }),
                Answer::Done => {
                    self.way = Some(way);
                    return (true, format!("reset by {}", way.name()));
                }
                Answer::Refused(why) => {
                    self.way = Some(way);
                    return (false, format!("refused ({}): {why}", way.name()));
                }
            }
        }
        (
            false,
            format!(
                "no way to reset answered ({}): vLLM serves POST /reset_prefix_cache only with VLLM_SERVER_DEV_MODE=1; or give the URL",
                tried.join(", ")
            ),
        )
    }

    fn try_way(&self, i: usize, way: Way) -> Answer {
        let post = |path: &str| self.send(i, "POST", path);
        let answer = |r: std::result::Result<(u16, Vec<u8>), String>| match r {
            Ok((200..=299, _)) => Answer::Done,
            Ok((404 | 405, _)) if way != Way::Url => Answer::NotHere,
            Ok((status, body)) => Answer::Refused(format!("HTTP {status}: {}", reason(&body))),
            Err(e) => Answer::Refused(e),
        };
        match way {
            Way::Vllm => answer(post("/reset_prefix_cache")),
            Way::Sglang => answer(post("/flush_cache")),
            Way::Url => answer(post("")),
            Way::LlamaCppSlots => self.erase_slots(i),
        }
    }

    /// llama.cpp: every slot `GET /slots` lists, erased.
    fn erase_slots(&self, i: usize) -> Answer {
        let slots = match self.send(i, "GET", "/slots") {
            Ok((200, body)) => body,
            Ok((404 | 405, _)) => return Answer::NotHere,
            Ok((status, body)) => {
                return Answer::Refused(format!("HTTP {status}: {}", reason(&body)))
            }
            Err(e) => return Answer::Refused(e),
        };
        let Ok(serde_json::Value::Array(list)) = serde_json::from_slice(&slots) else {
            return Answer::NotHere;
        };
        for id in list.iter().filter_map(|s| s.get("id")?.as_u64()) {
            match self.send(i, "POST", &format!("/slots/{id}?action=erase")) {
                Ok((200..=299, _)) => {}
                Ok((status, body)) => {
                    return Answer::Refused(format!("HTTP {status}: {}", reason(&body)))
                }
                Err(e) => return Answer::Refused(e),
            }
        }
        Answer::Done
    }

    /// One call to server `i` at `path` (empty: the URL given).
    fn send(
        &self,
        i: usize,
        method: &str,
        path: &str,
    ) -> std::result::Result<(u16, Vec<u8>), String> {
        let s = &self.servers[i].target;
        let target = if path.is_empty() {
            s.clone()
        } else {
            s.at(path)
        };
        call(
            &Call {
                method,
                target: &target,
                headers: &self.headers,
                body: b"",
            },
            TIMEOUT,
        )
    }
}

enum Answer {
    Done,
    /// This way is not the server's (404).
    NotHere,
    /// The server has it and said no: why.
    Refused(String),
}

/// The servers to reset: each `--endpoint`'s root with `auto`, or the URL given.
fn servers(plan: &Plan) -> Vec<Server> {
    if let ResetAsk::Url { shown, target } = &plan.reset {
        return vec![Server {
            shown: shown.clone(),
            target: target.clone(),
        }];
    }
    let mut out = Vec::new();
    for r in &plan.replicas {
        if r.endpoint.tls {
            eprintln!(
                "note: --reset-prefix-cache auto: {} is https://; only http:// servers are reset",
                r.shown
            );
            continue;
        }
        let root = Target {
            endpoint: r.endpoint.clone(),
            addrs: r.addrs.clone(),
        };
        out.push(Server {
            shown: r.shown.clone(),
            target: root.at("/"),
        });
    }
    out
}

/// A server's reason: the `error.message` of a JSON error, else the body's start.
fn reason(body: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .or_else(|| v.get("message"))
                .or_else(|| v.get("error"))
        })
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let msg = if msg.is_empty() {
        "no reason given".to_string()
    } else {
        msg
    };
    msg.chars().take(REASON_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_reason_is_its_error_message() {
        let llama = br#"{"error":{"code":501,"message":"This server does not support slots action. Start it with `--slot-save-path`","type":"not_supported_error"}}"#;
        assert_eq!(
            reason(llama),
            "This server does not support slots action. Start it with `--slot-save-path`"
        );
        assert_eq!(reason(b"Not Found"), "Not Found");
        assert_eq!(reason(b""), "no reason given");
        assert_eq!(reason(&[b'x'; 1000]).len(), REASON_CHARS);
    }
}
