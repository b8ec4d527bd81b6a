//! Layer 5 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `http`; `servermetrics` and the layers after it use it.
//!
//! The APIs' answers: what each API's stream events (or, for embeddings, its one JSON answer)
//! say about a request, read where the bytes land. `openai` holds the chat and completions
//! chunk reader and the reused simd-json parser that every event reader shares (`anthropic`
//! for Messages, `responses` for Responses); `embeddings` checks a non-streamed answer, and
//! `json_text` is the key-and-nesting scanner it shares with a session's history cut.
//!
//! Data flow: `sse` (events) or the body's bytes → here → `engine::stream`, which times them.

pub mod anthropic;
pub mod embeddings;
pub mod json_text;
pub mod openai;
pub mod responses;
