//! Layer 10 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `engine`; `report` and the layers after it use it.
//!
//! The per-level schema: [`LevelStats`], the object written to `benchmark_qps_results.json` and
//! shown in the console table, built from one merged [`Recorder`], and the pieces it is made of
//! (percentiles, send lag, connections, CPU; `reasoning` and `embeddings`: the figures only some
//! APIs' answers have).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::LevelRun;
use crate::recording::recorder::{Recorder, TPS_SCALE};
pub use crate::stats::percentiles::{json_percentiles, pct_key, round6, Percentiles};

mod client;
mod context;
mod embeddings;
pub mod endpoints;
pub mod histograms_file;
mod parts;
pub mod per_turn;
pub mod percentiles;
pub mod prompt_cache;
mod reasoning;
pub mod validity;

pub use context::{ClientVerdict, LevelContext, LevelPlace, Parts, ReplayStats, ServerFigures};
pub use embeddings::EmbeddingStats;
use parts::{rate, top_stream_messages};
pub use parts::{
    CapStats, ConnectionStats, CoreCpu, LevelClock, SendLag, StreamMessage, WarmupStats,
    BUFFERED_SHARE,
};
pub use reasoning::ReasoningStats;

/// One level's merged result: the object written to `benchmark_qps_results.json`.
#[derive(Debug, Clone, Serialize)]
pub struct LevelStats {
    pub qps_target: f64,
    pub actual_qps: f64,
    pub success_rate: f64,
    pub ttft: Percentiles,
    /// With a reasoning model: TTFOT and reasoning tokens (`ttfot`, `reasoning_tokens`,
    /// `reasoning_requests`), written beside the other figures.
    #[serde(flatten)]
    pub reasoning: ReasoningStats,
    pub e2e_latency: Percentiles,
    pub tokens_per_sec: Percentiles,
    /// Output tokens per successful request (as counted: `token_count_source`).
    pub output_tokens: Percentiles,
    /// `usage.prompt_tokens` per successful request, as the server counted them (null without
    /// usage).
    pub prompt_tokens: Percentiles,
    /// What the server's prefix cache gave the level's requests (`cached_prompt_tokens`,
    /// `prompt_cache_hit_share`, `cache_hit_requests`, …), written beside the other figures.
    #[serde(flatten)]
    pub prompt_cache: crate::stats::prompt_cache::PromptCache,
    /// Time to first byte, seconds.
    pub ttfb: Percentiles,
    /// Time per output token after the first, seconds.
    pub tpot: Percentiles,
    /// Inter-token latency, seconds.
    pub itl: Percentiles,
    /// All output tokens of the level ÷ `completion_window_s`.
    pub output_tokens_per_sec: f64,
    pub errors: BTreeMap<String, u64>,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    /// Requests abandoned by `--cancel-rate` (in `total_requests`; not in `failed_requests`,
    /// `errors`, the latencies or the success rate).
    pub cancelled_requests: u64,
    /// Successful requests ÷ `completion_window_s` (vLLM's request throughput): what the
    /// endpoint finished, over the time it took, stragglers included.
    pub throughput_qps: f64,
    /// Successful requests that completed inside the sending window ÷ `--duration`: the
    /// steady-state rate, never more than the endpoint finished while load was applied.
    pub in_window_throughput_qps: f64,
    /// From the level's start to its last successful completion, seconds (an interrupted level:
    /// to the end of the grace period; 0 with no success).
    pub completion_window_s: f64,
    /// The last successful completion − the end of the sending window, seconds (0 if before).
    pub drain_s: f64,
    /// Successful requests that met every SLO given (`--slo-ttft`, `--slo-e2e`; all successful
    /// requests when none is) ÷ `completion_window_s`.
    pub goodput_qps: f64,
    pub send_lag_us: SendLag,
    /// The run was stopped (Ctrl-C / SIGTERM) during this level: it sent only part of its
    /// schedule, and `unfinished_requests` were still in flight after the grace period.
    pub interrupted: bool,
    pub unfinished_requests: u64,
    /// The client's verdict on itself and what it rests on (`client_limited`, its reasons, the
    /// send gaps' fit, CPU per core, the cap, the warm-up), written beside the other figures.
    #[serde(flatten)]
    pub client: ClientVerdict,
    /// Read time − the built-in endpoint's send stamp, per chunk, µs (only against
    /// `serve-mock --stamp-chunks`, as `qpsbench selftest` runs it).
    pub client_added_delay_us: Option<SendLag>,
    pub duration_s: f64,
    pub sending_window_s: f64,
    pub output_tokens_total: u64,
    /// `usage`, `estimated`, `mixed`, or `none` (no successful request).
    pub token_count_source: &'static str,
    pub requests_with_usage: u64,
    pub requests_estimated: u64,
    pub prompt_tokens_total: u64,
    pub error_samples: BTreeMap<String, String>,
    /// The most frequent messages behind `Stream error` (at most five, the rest as `other`).
    pub stream_error_messages: Vec<StreamMessage>,
    /// Idle keep-alive connections the server had closed, found and discarded before reuse
    /// (no request was written to them, so none failed).
    pub idle_connections_closed_by_server: u64,
    /// Where the level sits in its run (`replay`, `shard_qps`, `prompt_passes`, `start_lag_s`,
    /// `missed_requests`, `endpoints`), written beside the other figures.
    #[serde(flatten)]
    pub place: LevelPlace,
    /// With `--server-metrics`: the server's own figures over the level, written beside the
    /// other figures.
    #[serde(flatten)]
    pub server: ServerFigures,
    pub new_connections: u64,
    pub client_cpu_s: f64,
    /// Time the pacer spent spinning just before arrivals for precision, apart from the work
    /// other tasks of the core did while it yielded: `client_cpu_s` minus this is work.
    pub pacer_spin_s: f64,
    pub client_cpu_us_per_request: Option<f64>,
    pub client_cpu_us_per_token: Option<f64>,
    pub connections: Option<ConnectionStats>,
    /// Successful responses with more than one token whose tokens all came in one read.
    pub single_read_responses: u64,
    /// With `--session-turns`: the level's sessions (started, completed, ended early).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<crate::stats::per_turn::SessionStats>,
    /// With `--session-turns`: each turn's requests, latencies and prompt-cache figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_turn: Option<Vec<crate::stats::per_turn::TurnStats>>,
    /// With `--api embeddings`: inputs embedded and their rates.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embeddings: Option<EmbeddingStats>,
    pub warnings: Vec<String>,
}

impl LevelStats {
    /// A benchmark's level, built whole: from the engine's run of it (its cores' recorders
    /// merged) and the connections opened before it. The client's verdict on itself (from the
    /// recorder's own figures), the level's place in the run, then every figure at once.
    pub fn build(run: &LevelRun, connections: &Recorder, ctx: &LevelContext<'_>) -> Self {
        let r = &run.merged;
        let clock = LevelClock {
            start_ns: run.window_start_ns,
            duration_s: ctx.duration_s,
            end_ns: run.end_ns,
            interrupted: ctx.interrupted,
        };
        let client = client::client_verdict(run, ctx);
        let warnings = client::gap_fit_warning(&client, r, ctx.arrival)
            .into_iter()
            .collect();
        let place = LevelPlace {
            replay: ctx.replay,
            shard_qps: (ctx.shards > 1).then(|| ctx.qps / ctx.shards as f64),
            prompt_passes: ctx.prompt_passes,
            start_lag_s: ctx.start_lag_s.map(|s| (s * 1e6).round() / 1e6),
            missed_requests: ctx.missed_requests,
            endpoints: endpoints::stats(&r.endpoints, ctx.endpoint_urls),
        };
        let parts = Parts {
            client,
            place,
            connections: Some(ConnectionStats::new(connections, r)),
            session_rate: ctx.session_turns.map(|t| ctx.qps / t),
            embedding_batch: ctx.embedding_batch,
            warnings,
        };
        Self::new(r, ctx.qps, clock, ctx.percentiles, parts)
    }

    /// With `--server-metrics`: the server's figures over the level, and the share of prompt
    /// tokens its own counters say its cache served, from the scrapes (a later stage than the
    /// level's own: the scraper's view is summed up once the level has ended).
    pub fn attach_server_figures(
        &mut self,
        server: ServerFigures,
        server_prompt_cache: Option<prompt_cache::ServerCache>,
    ) {
        self.server = server;
        self.prompt_cache.server_prompt_cache = server_prompt_cache;
    }

    /// The level's result, whole: the recorder's figures (`pcts` are the percentiles to report)
    /// with `parts`.
    pub fn new(
        r: &Recorder,
        qps_target: f64,
        clock: LevelClock,
        pcts: &[f64],
        parts: Parts,
    ) -> Self {
        let (start_ns, duration_s) = (clock.start_ns, clock.duration_s);
        let completion_s = clock.completion_window_s(r);
        let window_s = sending_window_s(r, start_ns);
        let failed: u64 = r.errors.values().map(|e| e.count).sum();
        let per = |n: u64| (n > 0).then(|| round6(r.cpu_ns as f64 / 1000.0 / n as f64));
        // An embeddings answer generates nothing: its token figures read `-`, not 0.
        let generated = parts.embedding_batch.is_none();
        let of = |h, scale| {
            if generated {
                Percentiles::from_hist(h, pcts, scale)
            } else {
                Percentiles::none(pcts)
            }
        };
        // With sessions (`session_rate`: their planned starts per second): the level's sessions
        // and per-turn figures.
        let (sessions, per_turn) = match (&r.turns, parts.session_rate) {
            (Some(t), Some(rate)) => {
                let (s, p) = per_turn::build(t, rate, pcts);
                (Some(s), Some(p))
            }
            _ => (None, None),
        };
        let mut warnings: Vec<String> = buffering_warning(r).into_iter().collect();
        warnings.extend(parts.warnings);
        Self {
            qps_target,
            actual_qps: round6(actual_qps(r, window_s)),
            // Abandoned requests never read as failures: they are out of the denominator.
            success_rate: match r.sent.saturating_sub(r.cancelled) {
                0 => 0.0,
                n => round6(r.succeeded as f64 * 100.0 / n as f64),
            },
            ttft: Percentiles::from_hist(&r.hist.ttft_us, pcts, 1e-6),
            reasoning: ReasoningStats::new(r, pcts),
            e2e_latency: Percentiles::from_hist(&r.hist.e2e_us, pcts, 1e-6),
            tokens_per_sec: of(&r.hist.tps_milli, 1.0 / TPS_SCALE),
            output_tokens: of(&r.hist.output_tokens_n, 1.0),
            prompt_tokens: Percentiles::from_hist(&r.hist.prompt_tokens_n, pcts, 1.0),
            prompt_cache: prompt_cache::PromptCache::new(&r.hist.cached_tokens_n, &r.cache, pcts),
            ttfb: Percentiles::from_hist(&r.hist.ttfb_us, pcts, 1e-6),
            tpot: of(&r.hist.tpot_us, 1e-6),
            itl: of(&r.hist.itl_us, 1e-6),
            output_tokens_per_sec: rate(r.output_tokens, completion_s),
            errors: r
                .errors
                .iter()
                .map(|(k, v)| (k.to_string(), v.count))
                .collect(),
            total_requests: r.sent,
            successful_requests: r.succeeded,
            failed_requests: failed,
            cancelled_requests: r.cancelled,
            throughput_qps: rate(r.succeeded, completion_s),
            in_window_throughput_qps: rate(r.ok_in_window, duration_s),
            completion_window_s: round6(completion_s),
            drain_s: round6((completion_s - duration_s).max(0.0)),
            goodput_qps: rate(r.slo_met, completion_s),
            send_lag_us: SendLag::from_ns(&r.hist.send_lag_ns),
            interrupted: clock.interrupted,
            unfinished_requests: r.sent.saturating_sub(r.succeeded + failed),
            client: parts.client,
            client_added_delay_us: (!r.hist.added_delay_ns.is_empty())
                .then(|| SendLag::from_ns(&r.hist.added_delay_ns)),
            duration_s,
            sending_window_s: round6(window_s),
            output_tokens_total: r.output_tokens,
            token_count_source: token_count_source(r),
            requests_with_usage: r.usage_counted,
            requests_estimated: r.estimated_counted,
            prompt_tokens_total: r.prompt_tokens,
            error_samples: error_samples(r),
            stream_error_messages: top_stream_messages(r),
            idle_connections_closed_by_server: r.idle_closed,
            place: parts.place,
            server: ServerFigures::default(),
            new_connections: r.new_connections,
            client_cpu_s: round6(r.cpu_ns as f64 / 1e9),
            pacer_spin_s: round6(r.pacer_spin_ns as f64 / 1e9),
            client_cpu_us_per_request: per(r.sent),
            client_cpu_us_per_token: per(r.output_tokens).filter(|_| generated),
            connections: parts.connections,
            single_read_responses: r.single_read_successes,
            sessions,
            per_turn,
            embeddings: parts
                .embedding_batch
                .map(|batch| EmbeddingStats::new(r, batch, round6(completion_s))),
            warnings,
        }
    }
}

/// From the measured window's start to the last send, seconds (0 with nothing sent).
pub(crate) fn sending_window_s(r: &Recorder, start_ns: u64) -> f64 {
    if r.sent > 0 {
        r.last_send_ns.saturating_sub(start_ns) as f64 / 1e9
    } else {
        0.0
    }
}

/// Requests sent ÷ the sending window.
pub(crate) fn actual_qps(r: &Recorder, window_s: f64) -> f64 {
    if window_s > 0.0 {
        r.sent as f64 / window_s
    } else {
        0.0
    }
}

/// The first response body of each error category that had one.
fn error_samples(r: &Recorder) -> BTreeMap<String, String> {
    r.errors
        .iter()
        .filter_map(|(k, v)| v.sample.clone().map(|s| (k.to_string(), s)))
        .collect()
}

impl LevelStats {
    /// The level's prefix-cache warning, if it has one.
    pub fn prompt_cache_warning(&self) -> Option<&str> {
        self.prompt_cache.prompt_cache_warning.as_deref()
    }

    /// Sets the prefix-cache warning the level's figures call for (`prompt_cache::warning`),
    /// in `prompt_cache_warning` and among its `warnings`; returns it.
    pub fn warn_about_cache(
        &mut self,
        cx: crate::stats::prompt_cache::WarningContext<'_>,
    ) -> Option<&str> {
        let w = crate::stats::prompt_cache::warning(
            self.qps_target,
            self.successful_requests,
            &self.prompt_cache,
            cx,
        );
        self.warnings.extend(w.clone());
        self.prompt_cache.prompt_cache_warning = w;
        self.prompt_cache_warning()
    }
}

/// Where a level's output token counts came from: `usage`, `estimated`, `mixed` or `none`.
fn token_count_source(r: &Recorder) -> &'static str {
    match (r.usage_counted, r.estimated_counted) {
        (0, 0) => "none",
        (_, 0) => "usage",
        (0, _) => "estimated",
        _ => "mixed",
    }
}

/// When nearly every successful multi-token response arrived in one read (TTFT ≈ E2E), something
/// between client and server is buffering the stream and TTFT means nothing.
fn buffering_warning(r: &Recorder) -> Option<String> {
    let n = r.multi_token_successes;
    let single = r.single_read_successes;
    (n >= 5 && single as f64 >= BUFFERED_SHARE * n as f64).then(|| {
        format!(
            "{single} of {n} responses delivered all their tokens in one read (TTFT ≈ E2E): the stream looks buffered by something between client and server (a proxy with buffering on, e.g. nginx proxy_buffering); TTFT is meaningless here"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::outcome::{ErrorKind, Success, TokenSource};
    use crate::recording::recorder::STREAM_MESSAGES_SHOWN;

    fn ok(ttft_ms: u64, e2e_ms: u64, tokens: u64) -> Success {
        Success {
            ttft_ns: Some(ttft_ms * 1_000_000),
            e2e_ns: e2e_ms * 1_000_000,
            output_tokens: tokens,
            source: TokenSource::Usage,
            prompt_tokens: Some(10),
            cached_tokens: None,
            token_reads: 5,
            ttfb_ns: ttft_ms * 1_000_000,
            decode_ns: (e2e_ms - ttft_ms) * 1_000_000,
            done_ns: e2e_ms * 1_000_000,
            reasoning: Default::default(),
        }
    }

    fn clock(start_ns: u64, duration_s: f64) -> LevelClock {
        LevelClock {
            start_ns,
            duration_s,
            end_ns: start_ns,
            interrupted: false,
        }
    }

    #[test]
    fn merge_and_stats() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for i in 0..100 {
            a.record_send(1_000_000_000 + i * 10_000_000, 20_000, false, 0);
            a.record_success(ok(100 + i, 1000, 50));
        }
        for i in 0..100 {
            b.record_send(1_000_000_000 + i * 10_000_000, 40_000, false, 0);
            b.record_error(ErrorKind::Http(503), Some(b"{\"error\":\"busy\"}"));
        }
        a.merge(&b);
        let s = LevelStats::new(
            &a,
            100.0,
            clock(1_000_000_000 - 10_000_000, 1.0),
            &json_percentiles(&[50.0]),
            Default::default(),
        );
        assert_eq!(s.total_requests, 200);
        assert_eq!(s.successful_requests, 100);
        assert_eq!(s.success_rate, 50.0);
        assert_eq!(s.errors.get("HTTP 503"), Some(&100));
        assert_eq!(
            s.error_samples.get("HTTP 503").map(String::as_str),
            Some("{\"error\":\"busy\"}")
        );
        assert!((s.ttft.get("p50").unwrap() - 0.149).abs() < 0.002);
        assert!((s.tokens_per_sec.get("p99").unwrap() - 50.0).abs() < 0.1);
        assert_eq!(s.token_count_source, "usage");
        assert!((s.actual_qps - 200.0).abs() < 0.01);
        assert!((s.send_lag_us.p99 - 40.0).abs() < 0.1);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["ttft"].as_object().unwrap().keys().count(), 5);
        assert!(json["ttft"]["p90"].is_number());
    }

    #[test]
    fn empty_level_has_null_percentiles() {
        let s = LevelStats::new(
            &Recorder::new(),
            1.0,
            clock(0, 1.0),
            &[50.0],
            Default::default(),
        );
        assert_eq!(s.throughput_qps, 0.0);
        assert_eq!(s.completion_window_s, 0.0);
        assert_eq!(s.ttft.get("p50"), None);
        assert_eq!(
            serde_json::to_value(&s).unwrap()["ttft"]["p50"],
            serde_json::Value::Null
        );
        assert_eq!(s.token_count_source, "none");
        assert_eq!(pct_key(99.9), "p99.9");
    }

    #[test]
    fn throughput_counts_the_time_the_work_took() {
        // 10 s window; 200 successes, the last completing at 20 s, 100 of them by 10 s.
        let start = 1_000_000_000;
        let mut r = Recorder::new();
        r.window_end_ns = start + 10_000_000_000;
        for i in 0..200u64 {
            r.record_send(start + i * 50_000_000, 0, false, 0);
            let mut s = ok(50, 100, 20);
            s.done_ns = start + (i + 1) * 100_000_000;
            r.record_success(s);
        }
        let s = LevelStats::new(&r, 20.0, clock(start, 10.0), &[50.0], Default::default());
        assert_eq!(s.completion_window_s, 20.0);
        assert_eq!(s.throughput_qps, 10.0);
        assert_eq!(s.in_window_throughput_qps, 10.0);
        assert_eq!(s.drain_s, 10.0);
        assert_eq!(s.output_tokens_per_sec, 200.0);
        assert_eq!(s.goodput_qps, 0.0, "slo_met is counted by the engine");
        // Interrupted: the window runs to the end of the grace period.
        let mut c = clock(start, 10.0);
        c.interrupted = true;
        c.end_ns = start + 40_000_000_000;
        let s = LevelStats::new(&r, 20.0, c, &[50.0], Default::default());
        assert_eq!(s.completion_window_s, 40.0);
        assert_eq!(s.throughput_qps, 5.0);
    }

    #[test]
    fn stream_errors_are_one_category_with_their_messages_counted() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for i in 0..30 {
            a.record_stream_error(&format!("overloaded (request {i})"));
        }
        for _ in 0..7 {
            b.record_stream_error("context too long");
        }
        b.record_stream_error(&"é".repeat(300));
        a.merge(&b);
        let s = LevelStats::new(&a, 1.0, clock(0, 1.0), &[50.0], Default::default());
        assert_eq!(s.errors.len(), 1);
        assert_eq!(s.errors["Stream error"], 38);
        let m = &s.stream_error_messages;
        assert_eq!(m.len(), STREAM_MESSAGES_SHOWN + 1);
        assert_eq!((m[0].message.as_str(), m[0].count), ("context too long", 7));
        assert_eq!(m.last().unwrap().message, "other");
        assert_eq!(m.iter().map(|m| m.count).sum::<u64>(), 38);
        assert!(a.stream_messages.len() <= 2 * crate::recording::recorder::STREAM_MESSAGES_KEPT);
    }
}
