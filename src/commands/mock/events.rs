//! The built-in endpoint's stream events, one dialect per API: what opens a streamed answer,
//! how one piece of text (answer or reasoning) is carried, and what ends it with its usage.
//! `handler` times the pieces and `fault` breaks them; both write them through [`Events`].
//!
//! - chat: `chat.completion.chunk`s (`delta.content`, `delta.reasoning_content`), a finish
//!   chunk, a usage chunk when asked, `[DONE]`;
//! - completions: `text_completion` chunks (`text`);
//! - Responses: `response.created`, `response.output_text.delta` /
//!   `response.reasoning_text.delta`, then `response.completed` (or `response.incomplete` when
//!   `max_output_tokens` cut it) with `usage`;
//! - Messages: `message_start` (with the prompt's usage: cache reads apart, as Anthropic and
//!   llama.cpp count them), a `thinking` block then a `text` block of `content_block_delta`s,
//!   `message_delta` (`stop_reason`, `output_tokens`), `message_stop`.

use super::ask::Api;
use super::wire::{push_chunk, push_event, push_text_event};

/// An answer's token counts, as its usage reports them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counts {
    pub prompt: u64,
    /// Prompt tokens from the prefix cache (None: the endpoint keeps none).
    pub cached: Option<u64>,
    pub reasoning: u64,
    /// Answer tokens (after the reasoning).
    pub answer: u64,
}

/// One answer's events.
pub(crate) struct Events {
    pub api: Api,
    /// Chat and completions: `{"id":…,"object":…,"created":…,"model":…,` — each chunk's start.
    pub prefix: String,
    /// The answer's id (`resp_…`, `msg_…`) and model, as JSON.
    id: String,
    model: String,
    created: u64,
    pub counts: Counts,
    /// The answer reached `max_tokens` (finish `length`, `max_tokens`, `incomplete`).
    cut: bool,
    /// Chat and completions: the final `usage` object.
    pub usage: String,
}

impl Events {
    pub fn new(api: Api, id: u64, created: u64, model: String, counts: Counts, cut: bool) -> Self {
        let (id_prefix, object) = match api {
            Api::Completions => ("cmpl", "text_completion"),
            Api::Responses => ("resp", "response"),
            Api::Messages => ("msg", "message"),
            Api::Chat | Api::Embeddings => ("chatcmpl", "chat.completion.chunk"),
        };
        let prefix = format!(
            "{{\"id\":\"{id_prefix}-mock-{id}\",\"object\":\"{object}\",\"created\":{created},\"model\":{model},"
        );
        let details = counts.cached.map_or(String::new(), |c| {
            format!(",\"prompt_tokens_details\":{{\"cached_tokens\":{c}}}")
        });
        let reasoning = if counts.reasoning > 0 {
            let r = counts.reasoning;
            format!(",\"completion_tokens_details\":{{\"reasoning_tokens\":{r}}}")
        } else {
            String::new()
        };
        let output = counts.reasoning + counts.answer;
        let usage = format!(
            "{{\"prompt_tokens\":{},\"completion_tokens\":{output},\"total_tokens\":{}{details}{reasoning}}}",
            counts.prompt,
            counts.prompt + output
        );
        Self {
            api,
            prefix,
            id: format!("{id_prefix}_mock-{id}"),
            model,
            created,
            counts,
            cut,
            usage,
        }
    }

    /// Whether the answer reached `max_tokens`.
    pub fn cut(&self) -> bool {
        self.cut
    }

    /// What opens the stream, before any token: chat's role chunk (when `role_chunk`), the
    /// response's creation, or the message's start with the prompt's usage.
    pub fn start(&self, out: &mut Vec<u8>, role_chunk: bool, extra: &str) {
        match self.api {
            Api::Chat if role_chunk => {
                let role = "{\"role\":\"assistant\",\"content\":\"\"}";
                push_event(out, &self.prefix, role, "null", extra);
            }
            Api::Responses => push_chunk(
                out,
                &format!(
                    "event: response.created\ndata: {{\"type\":\"response.created\",\"response\":{{\"id\":\"{}\",\"object\":\"response\",\"created_at\":{},\"status\":\"in_progress\",\"model\":{}}}}}\n\n",
                    self.id, self.created, self.model
                ),
            ),
            Api::Messages => {
                let c = self.counts;
                let cached = c.cached.unwrap_or(0).min(c.prompt);
                push_chunk(
                    out,
                    &format!(
                        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"{}\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":{},\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\"input_tokens\":{},\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":{cached},\"output_tokens\":0}}}}}}\n\n",
                        self.id, self.model, c.prompt - cached
                    ),
                );
                let block = if c.reasoning > 0 {
                    "{\"type\":\"thinking\",\"thinking\":\"\"}"
                } else {
                    "{\"type\":\"text\",\"text\":\"\"}"
                };
                push_chunk(out, &block_start(0, block));
                push_chunk(out, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
            }
            _ => {}
        }
    }

    /// One piece of text: `words` (the inside of a JSON string) after `sent` tokens of the
    /// answer; reasoning while `sent` is below the reasoning's length. `extra` (chat and
    /// completions: running usage, a send stamp) goes at the chunk's end.
    pub fn piece(&self, out: &mut Vec<u8>, words: &str, sent: u64, extra: &str) {
        let reasoning = sent < self.counts.reasoning;
        match self.api {
            Api::Chat | Api::Embeddings => {
                let key = if reasoning {
                    "reasoning_content"
                } else {
                    "content"
                };
                let delta = format!("{{\"{key}\":\"{words}\"}}");
                push_event(out, &self.prefix, &delta, "null", extra);
            }
            Api::Completions => {
                push_text_event(out, &self.prefix, &format!("\"{words}\""), "null", extra)
            }
            Api::Responses => {
                let (kind, item) = if reasoning {
                    ("response.reasoning_text.delta", "rs")
                } else {
                    ("response.output_text.delta", "msg")
                };
                push_chunk(
                    out,
                    &format!(
                        "event: {kind}\ndata: {{\"type\":\"{kind}\",\"item_id\":\"{item}_{}\",\"output_index\":0,\"content_index\":0,\"delta\":\"{words}\"}}\n\n",
                        self.id
                    ),
                );
            }
            Api::Messages => {
                let c = self.counts;
                if !reasoning && sent == c.reasoning && c.reasoning > 0 {
                    // The thinking block ends where the answer's text block starts.
                    push_chunk(out, &block_stop(0));
                    push_chunk(out, &block_start(1, "{\"type\":\"text\",\"text\":\"\"}"));
                }
                let (index, kind, key) = match reasoning {
                    true => (0, "thinking_delta", "thinking"),
                    false => (u64::from(c.reasoning > 0), "text_delta", "text"),
                };
                push_chunk(
                    out,
                    &format!(
                        "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"{kind}\",\"{key}\":\"{words}\"}}}}\n\n"
                    ),
                );
            }
        }
    }

    /// What ends the stream (with usage when `usage`), and the chunked body's end.
    pub fn finish(&self, out: &mut Vec<u8>, usage: bool, extra: &str) {
        match self.api {
            Api::Chat | Api::Completions | Api::Embeddings => self.finish_chunks(out, usage, extra),
            Api::Responses => {
                let (kind, status) = match self.cut {
                    true => ("response.incomplete", "incomplete"),
                    false => ("response.completed", "completed"),
                };
                let detail = match self.cut {
                    true => ",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}",
                    false => "",
                };
                let c = self.counts;
                let usage = match usage {
                    true => format!(
                        ",\"usage\":{{\"input_tokens\":{},\"input_tokens_details\":{{\"cached_tokens\":{}}},\"output_tokens\":{},\"output_tokens_details\":{{\"reasoning_tokens\":{}}},\"total_tokens\":{}}}",
                        c.prompt,
                        c.cached.unwrap_or(0),
                        c.reasoning + c.answer,
                        c.reasoning,
                        c.prompt + c.reasoning + c.answer
                    ),
                    false => String::new(),
                };
                push_chunk(
                    out,
                    &format!(
                        "event: {kind}\ndata: {{\"type\":\"{kind}\",\"response\":{{\"id\":\"{}\",\"object\":\"response\",\"created_at\":{},\"status\":\"{status}\",\"model\":{}{detail}{usage}}}}}\n\n",
                        self.id, self.created, self.model
                    ),
                );
            }
            Api::Messages => {
                let c = self.counts;
                push_chunk(out, &block_stop(u64::from(c.reasoning > 0)));
                let stop = if self.cut { "max_tokens" } else { "end_turn" };
                let usage = match usage {
                    true => format!(
                        ",\"usage\":{{\"output_tokens\":{}}}",
                        c.reasoning + c.answer
                    ),
                    false => String::new(),
                };
                push_chunk(
                    out,
                    &format!(
                        "event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"{stop}\",\"stop_sequence\":null}}{usage}}}\n\n"
                    ),
                );
                push_chunk(
                    out,
                    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                );
            }
        }
        if self.api != Api::Chat && self.api != Api::Completions {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }

    /// Chat's and completions' end: the finish chunk, the usage chunk when asked for, `[DONE]`
    /// and the chunked body's end.
    fn finish_chunks(&self, out: &mut Vec<u8>, usage: bool, extra: &str) {
        let finish = if self.cut { "\"length\"" } else { "\"stop\"" };
        match self.api {
            Api::Completions => push_text_event(out, &self.prefix, "\"\"", finish, extra),
            _ => push_event(out, &self.prefix, "{}", finish, extra),
        }
        if usage {
            push_chunk(
                out,
                &format!(
                    "data: {}\"choices\":[],\"usage\":{}}}\n\n",
                    self.prefix, self.usage
                ),
            );
        }
        push_chunk(out, "data: [DONE]\n\n");
        out.extend_from_slice(b"0\r\n\r\n");
    }
}

fn block_start(index: u64, block: &str) -> String {
    format!(
        "event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{block}}}\n\n"
    )
}

fn block_stop(index: u64) -> String {
    format!(
        "event: content_block_stop\ndata: {{\"type\":\"content_block_stop\",\"index\":{index}}}\n\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::openai::{ChunkInfo, ChunkParser, Inspect};
    use crate::http::sse::SseParser;

    /// The events' JSON as the client reads them.
    fn read(api: Api, inspect: Inspect, reasoning: u64) -> Vec<ChunkInfo> {
        let counts = Counts {
            prompt: 20,
            cached: Some(8),
            reasoning,
            answer: 2,
        };
        let e = Events::new(api, 7, 1, "\"m\"".into(), counts, true);
        let mut out = Vec::new();
        e.start(&mut out, true, "");
        for sent in 0..reasoning + 2 {
            e.piece(&mut out, "w\\\"", sent, "");
        }
        e.finish(&mut out, true, "");
        let body = crate::http::body::unchunk(&out);
        let mut parser = ChunkParser::new();
        let mut infos = Vec::new();
        SseParser::new()
            .feed(&body, |ev| {
                if !ev.is_done() {
                    infos.push(parser.parse_with(ev.data, None, inspect).unwrap());
                }
                crate::http::sse::Flow::Continue
            })
            .unwrap();
        infos
    }

    #[test]
    fn responses_and_messages_read_as_the_client_reads_them() {
        use crate::api::{anthropic, responses};
        for (api, inspect) in [
            (Api::Responses, responses::inspect as Inspect),
            (Api::Messages, anthropic::inspect),
        ] {
            let infos = read(api, inspect, 3);
            let outputs = infos.iter().filter(|i| i.has_output).count();
            let answers = infos.iter().filter(|i| i.has_answer).count();
            assert_eq!((outputs, answers), (5, 2), "{api:?}");
            assert!(infos.iter().any(|i| i.finished), "{api:?}");
            let last = |f: fn(&ChunkInfo) -> Option<u64>| infos.iter().rev().find_map(f);
            assert_eq!(last(|i| i.prompt_tokens), Some(20), "{api:?}");
            assert_eq!(last(|i| i.cached_tokens), Some(8), "{api:?}");
            assert_eq!(last(|i| i.completion_tokens), Some(5), "{api:?}");
        }
        let infos = read(Api::Responses, responses::inspect, 3);
        assert_eq!(infos.iter().find_map(|i| i.reasoning_tokens), Some(3));
    }
}
