//! Per-request records (`--save-requests`): one line of `requests.jsonl` per request sent.
//!
//! Data flow: a core's request task fills a [`RequestRecord`] when the request ends and pushes it
//! into the core's recorder (a plain `Vec`, no I/O and no lock in the timed window). After the
//! level, `bench` merges the cores' records and [`write_level`] appends them to the file, so
//! the file is written while nothing is being measured.

use std::io::Write;

use serde::Serialize;

use crate::recording::outcome::TokenSource;

/// One request, with raw monotonic-clock times (converted when written).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The row the request sent (the dataset's, the pool's or the trace's; a drawn prompt's
    /// number); the engine fills in the request's place in the level, which `bench` maps.
    pub sample: u64,
    pub core: u16,
    /// Sent during `--warmup`: not in the level's statistics.
    pub warmup: bool,
    pub intended_ns: u64,
    pub sent_ns: u64,
    pub first_byte_ns: Option<u64>,
    pub done_ns: u64,
    /// HTTP status; 0 when no response head arrived.
    pub status: u16,
    /// Error category (the key in `errors`), for failed requests.
    pub error: Option<String>,
    /// Output tokens of a successful request, and where the count came from.
    pub output_tokens: Option<u64>,
    /// `usage.prompt_tokens` of a successful request, when the server reported it.
    pub prompt_tokens: Option<u64>,
    /// Of those, the tokens the server took from its prefix cache, when it reported them.
    pub cached_tokens: Option<u64>,
    pub token_source: Option<TokenSource>,
    /// Times of the reads that carried output tokens.
    pub token_reads_ns: Vec<u64>,
    /// With sessions: the session (its first prompt's number) and the turn (from 1).
    pub session: Option<u64>,
    pub turn: Option<u32>,
    /// Abandoned (`--cancel-rate`): its connection was closed before the answer ended.
    pub cancelled: bool,
    /// The read with the first answer text, after any reasoning (TTFOT), and the reasoning
    /// tokens the server reported.
    pub first_answer_ns: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

/// A record as a JSON line: times in µs from the level's start (warm-up included).
#[derive(Serialize)]
struct Line<'a> {
    level: usize,
    qps_target: f64,
    sample: u64,
    /// With a trace: the sample's line in the trace file.
    #[serde(skip_serializing_if = "Option::is_none")]
    trace_row: Option<u32>,
    core: u16,
    warmup: bool,
    intended_us: f64,
    sent_us: f64,
    first_byte_us: Option<f64>,
    first_token_us: Option<f64>,
    last_token_us: Option<f64>,
    done_us: f64,
    status: u16,
    error: Option<&'a str>,
    output_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    cached_tokens: Option<u64>,
    token_source: Option<&'static str>,
    token_read_us: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    turn: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancelled: bool,
    /// The first answer text after any reasoning (when it came later than the first token).
    #[serde(skip_serializing_if = "Option::is_none")]
    first_output_token_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<u64>,
}

/// Where a level's records go, and what they share.
pub struct LevelRecords<'a> {
    /// From 1.
    pub level: usize,
    pub qps_target: f64,
    /// The level's start on the monotonic clock.
    pub start_ns: u64,
    /// With a trace: each sample's line in the trace file.
    pub trace_rows: Option<&'a [u32]>,
}

/// Appends one level's records (sorted by intended time) to `out`.
pub fn write_level(
    out: &mut impl Write,
    at: &LevelRecords<'_>,
    records: &mut [RequestRecord],
) -> std::io::Result<()> {
    let (level, qps_target, start_ns) = (at.level, at.qps_target, at.start_ns);
    records.sort_by_key(|r| r.intended_ns);
    // 0.1 µs resolution keeps lines short and is below any timestamp's precision.
    let us = |t: u64| ((t as i64 - start_ns as i64) as f64 / 100.0).round() / 10.0;
    for r in records.iter() {
        let line = Line {
            level,
            qps_target,
            sample: r.sample,
            trace_row: at
                .trace_rows
                .and_then(|rows| rows.get(r.sample as usize).copied()),
            core: r.core,
            warmup: r.warmup,
            intended_us: us(r.intended_ns),
            sent_us: us(r.sent_ns),
            first_byte_us: r.first_byte_ns.map(us),
            first_token_us: r.token_reads_ns.first().copied().map(us),
            last_token_us: r.token_reads_ns.last().copied().map(us),
            done_us: us(r.done_ns),
            status: r.status,
            error: r.error.as_deref(),
            output_tokens: r.output_tokens,
            prompt_tokens: r.prompt_tokens,
            cached_tokens: r.cached_tokens,
            token_source: r.token_source.map(|s| match s {
                TokenSource::Usage => "usage",
                TokenSource::Estimated => "estimated",
            }),
            token_read_us: r.token_reads_ns.iter().map(|&t| us(t)).collect(),
            session: r.session,
            turn: r.turn,
            cancelled: r.cancelled,
            first_output_token_us: r
                .first_answer_ns
                .filter(|&a| r.token_reads_ns.first().is_some_and(|&f| a > f))
                .map(us),
            reasoning_tokens: r.reasoning_tokens,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
