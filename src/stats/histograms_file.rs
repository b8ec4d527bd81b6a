//! Mergeable results (`histograms.json`): per level, every histogram the results report as
//! percentiles, serialized in HdrHistogram's standard V2 format (base64), with the level's
//! counters and its window in wall-clock time beside them. HDR histograms merge without loss, so
//! the shards of one schedule can later be combined into exactly what one process would have
//! measured; averaging the shards' percentiles would not be.
//!
//! Data flow: `bench` builds a [`LevelHistograms`] from each level's merged `recorder::Recorder`
//! and rewrites the file after every level; `merge` reads the shards' files back into recorders
//! ([`LevelHistograms::to_recorder`]) and merges those.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::engine::LevelRun;
use crate::recording::endpoints::EndpointRecorder;
use crate::recording::outcome::{ErrorKind, ErrorStat};
use crate::recording::recorder::Recorder;
use crate::stats::LevelStats;

/// One level's histograms and counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LevelHistograms {
    /// From 1.
    pub level: usize,
    pub qps_target: f64,
    /// The measured sending window and the level's end, Unix seconds.
    pub window_start_unix_s: f64,
    pub window_end_unix_s: f64,
    pub end_unix_s: f64,
    /// The first and last send and the last successful completion, Unix seconds (null: none).
    #[serde(default)]
    pub first_send_unix_s: Option<f64>,
    #[serde(default)]
    pub last_send_unix_s: Option<f64>,
    #[serde(default)]
    pub last_ok_unix_s: Option<f64>,
    /// Arrivals this process planned in the measured window.
    #[serde(default)]
    pub planned: usize,
    #[serde(default)]
    pub interrupted: bool,
    /// This process's verdict on itself (the merge names the shard behind each reason).
    #[serde(default)]
    pub client_limited: bool,
    #[serde(default)]
    pub client_limited_reasons: Vec<String>,
    #[serde(default)]
    pub start_lag_s: Option<f64>,
    #[serde(default)]
    pub missed_requests: Option<u64>,
    pub counters: Counters,
    /// Name (as in the results, with its unit) → V2-serialized histogram, base64.
    pub histograms: BTreeMap<String, String>,
    /// Every measured send, µs after `window_start_unix_s`: the merge fits the union of the
    /// shards' send gaps to the whole schedule's arrival process.
    #[serde(default)]
    pub send_times_us: Vec<u64>,
    /// With several `--endpoint`s: each one's counts and TTFT histogram.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointHistograms>,
    /// With sessions: their counts and each turn bucket's counts and histograms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turns: Option<TurnsHistograms>,
}

/// A level's sessions (`session_counts::Turns`), saved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnsHistograms {
    pub sessions: crate::recording::session_counts::SessionCounts,
    /// Turn 1, 2, …, the last for every turn from `session_counts::TURN_BUCKETS` on.
    pub buckets: Vec<TurnBucketSaved>,
}

/// One turn bucket, saved: counts, and its TTFT and E2E histograms (V2, base64).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TurnBucketSaved {
    pub sent: u64,
    pub succeeded: u64,
    pub prompt_tokens: u64,
    pub prompt_reported: u64,
    pub cache: crate::recording::outcome::CacheCounts,
    pub ttft_us: String,
    pub e2e_us: String,
}

impl TurnsHistograms {
    fn new(t: &crate::recording::session_counts::Turns) -> Result<Self, String> {
        let buckets = t
            .buckets
            .iter()
            .map(|b| {
                Ok(TurnBucketSaved {
                    sent: b.sent,
                    succeeded: b.succeeded,
                    prompt_tokens: b.prompt_tokens,
                    prompt_reported: b.prompt_reported,
                    cache: b.cache,
                    ttft_us: encode(&b.ttft_us)?,
                    e2e_us: encode(&b.e2e_us)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            sessions: t.sessions,
            buckets,
        })
    }

    fn to_turns(&self) -> Result<crate::recording::session_counts::Turns, String> {
        let mut t = crate::recording::session_counts::Turns {
            sessions: self.sessions,
            ..Default::default()
        };
        for (i, (b, saved)) in t.buckets.iter_mut().zip(&self.buckets).enumerate() {
            (b.sent, b.succeeded) = (saved.sent, saved.succeeded);
            (b.prompt_tokens, b.prompt_reported) = (saved.prompt_tokens, saved.prompt_reported);
            b.cache = saved.cache;
            for (name, h, text) in [
                ("ttft_us", &mut b.ttft_us, &saved.ttft_us),
                ("e2e_us", &mut b.e2e_us, &saved.e2e_us),
            ] {
                let what = |e: String| format!("turn bucket {}'s {name}: {e}", i + 1);
                h.add(&decode(text).map_err(what)?)
                    .map_err(|e| what(e.to_string()))?;
            }
        }
        Ok(t)
    }
}

/// One endpoint's share of a level.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndpointHistograms {
    pub url: String,
    pub sent: u64,
    pub succeeded: u64,
    pub errors: BTreeMap<String, u64>,
    /// V2-serialized, base64.
    pub ttft_us: String,
}

/// The level's counts, summed when shards merge.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub sent: u64,
    pub succeeded: u64,
    /// Abandoned by `--cancel-rate`.
    pub cancelled: u64,
    pub errors: BTreeMap<String, u64>,
    /// The first response body of each error category, when there was one.
    pub error_samples: BTreeMap<String, String>,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub usage_counted: u64,
    pub estimated_counted: u64,
    pub ok_in_window: u64,
    pub slo_met: u64,
    pub idle_closed: u64,
    pub new_connections: u64,
    pub multi_token_successes: u64,
    pub single_read_successes: u64,
    pub cpu_ns: u64,
    pub pacer_spin_ns: u64,
    pub capped: u64,
    pub warmup_sent: u64,
    pub warmup_succeeded: u64,
    pub stream_messages: Vec<(String, u64)>,
    pub stream_messages_other: u64,
    /// What the successes reported of the server's prefix cache.
    pub cache: crate::recording::outcome::CacheCounts,
    /// Successes that reasoned before answering.
    pub reasoning_requests: u64,
}

/// A histogram as V2 bytes in base64.
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The histogram [`encode`] wrote.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not a V2 histogram: {e}"))
}

/// Monotonic ns → Unix seconds, to the µs, through the clock pair `unix_now_s` (Unix s) and
/// `mono_now_ns` read once for a whole level: converting each instant through fresh readings
/// would move each one by however long the thread waited between its two readings.
fn unix_s((unix_now_s, mono_now_ns): (f64, u64), t_ns: u64) -> f64 {
    let s = unix_now_s - (mono_now_ns as f64 - t_ns as f64) / 1e9;
    (s * 1e6).round() / 1e6
}

/// Unix seconds → ns on the Unix clock: the common time base of a merge.
pub fn unix_ns(s: f64) -> u64 {
    (s * 1e9).round().max(0.0) as u64
}

/// Each endpoint's counts and TTFT (none with one endpoint).
fn endpoints(r: &Recorder, stats: &LevelStats) -> Result<Vec<EndpointHistograms>, String> {
    let Some(shown) = &stats.place.endpoints else {
        return Ok(Vec::new());
    };
    shown
        .iter()
        .zip(&r.endpoints)
        .map(|(s, e)| {
            Ok(EndpointHistograms {
                url: s.url.clone(),
                sent: e.sent,
                succeeded: e.succeeded,
                errors: s.errors.clone(),
                ttft_us: encode(&e.ttft_us)?,
            })
        })
        .collect()
}

impl EndpointHistograms {
    fn to_recorder(&self) -> Result<EndpointRecorder, String> {
        let mut one = EndpointRecorder {
            sent: self.sent,
            succeeded: self.succeeded,
            ..Default::default()
        };
        for (key, &n) in &self.errors {
            let kind =
                ErrorKind::parse(key).ok_or_else(|| format!("unknown error category {key:?}"))?;
            one.errors.insert(kind, n);
        }
        let saved = decode(&self.ttft_us).map_err(|e| format!("{}'s TTFT: {e}", self.url))?;
        one.ttft_us
            .add(&saved)
            .map_err(|e| format!("{}'s TTFT: {e}", self.url))?;
        Ok(one)
    }
}

/// The counts of the level's merged recorder `r` (and its warm-up's).
fn counters(r: &Recorder, warmup: &Recorder) -> Counters {
    Counters {
        sent: r.sent,
        succeeded: r.succeeded,
        cancelled: r.cancelled,
        errors: r
            .errors
            .iter()
            .map(|(k, v)| (k.to_string(), v.count))
            .collect(),
        error_samples: r
            .errors
            .iter()
            .filter_map(|(k, v)| v.sample.clone().map(|s| (k.to_string(), s)))
            .collect(),
        output_tokens: r.output_tokens,
        prompt_tokens: r.prompt_tokens,
        usage_counted: r.usage_counted,
        estimated_counted: r.estimated_counted,
        ok_in_window: r.ok_in_window,
        slo_met: r.slo_met,
        idle_closed: r.idle_closed,
        new_connections: r.new_connections,
        multi_token_successes: r.multi_token_successes,
        single_read_successes: r.single_read_successes,
        cpu_ns: r.cpu_ns,
        pacer_spin_ns: r.pacer_spin_ns,
        capped: r.capped,
        warmup_sent: warmup.sent,
        warmup_succeeded: warmup.succeeded,
        stream_messages: r.stream_messages.clone(),
        stream_messages_other: r.stream_messages_other,
        cache: r.cache,
        reasoning_requests: r.reasoning_requests,
    }
}

impl LevelHistograms {
    /// Level `level`'s record: its result `stats` and the engine's run of it.
    pub fn new(level: usize, stats: &LevelStats, run: &LevelRun) -> Result<Self, String> {
        let r = &run.merged;
        let histograms = r
            .hist
            .each()
            .map(|(name, h)| Ok((name.to_string(), encode(h)?)))
            .collect::<Result<_, String>>()?;
        let clocks = (
            crate::foundation::clock::unix_now_s(),
            crate::foundation::clock::now_ns(),
        );
        let unix_s = |t| unix_s(clocks, t);
        let window_start_unix_s = unix_s(run.window_start_ns);
        let start_us = |t: u64| t.saturating_sub(run.window_start_ns) / 1_000;
        Ok(Self {
            level,
            qps_target: stats.qps_target,
            window_start_unix_s,
            window_end_unix_s: unix_s(run.window_end_ns),
            end_unix_s: unix_s(run.end_ns),
            first_send_unix_s: (r.sent > 0).then(|| unix_s(r.first_send_ns)),
            last_send_unix_s: (r.sent > 0).then(|| unix_s(r.last_send_ns)),
            last_ok_unix_s: (r.succeeded > 0).then(|| unix_s(r.last_ok_ns)),
            planned: run.planned,
            interrupted: stats.interrupted,
            client_limited: stats.client.client_limited,
            client_limited_reasons: stats.client.client_limited_reasons.clone(),
            start_lag_s: stats.place.start_lag_s,
            missed_requests: stats.place.missed_requests,
            counters: counters(r, &run.warmup),
            histograms,
            send_times_us: r.send_times_ns.iter().map(|&t| start_us(t)).collect(),
            endpoints: endpoints(r, stats)?,
            turns: r.turns.as_deref().map(TurnsHistograms::new).transpose()?,
        })
    }

    /// The recorder these counts and histograms came from, with its times on the Unix clock
    /// ([`unix_ns`]), so that recorders of several processes merge on one time base.
    pub fn to_recorder(&self) -> Result<Recorder, String> {
        let mut r = Recorder::new();
        for (name, h) in r.hist.each_mut() {
            if let Some(text) = self.histograms.get(name) {
                let saved = decode(text).map_err(|e| format!("histogram {name}: {e}"))?;
                h.add(&saved)
                    .map_err(|e| format!("histogram {name}: {e}"))?;
            }
        }
        let c = &self.counters;
        for (key, &count) in &c.errors {
            let kind =
                ErrorKind::parse(key).ok_or_else(|| format!("unknown error category {key:?}"))?;
            r.errors.insert(
                kind,
                ErrorStat {
                    count,
                    sample: c.error_samples.get(key).cloned(),
                },
            );
        }
        (r.sent, r.succeeded, r.cancelled) = (c.sent, c.succeeded, c.cancelled);
        (r.output_tokens, r.prompt_tokens) = (c.output_tokens, c.prompt_tokens);
        (r.usage_counted, r.estimated_counted) = (c.usage_counted, c.estimated_counted);
        (r.ok_in_window, r.slo_met) = (c.ok_in_window, c.slo_met);
        (r.idle_closed, r.new_connections) = (c.idle_closed, c.new_connections);
        r.multi_token_successes = c.multi_token_successes;
        r.single_read_successes = c.single_read_successes;
        (r.cpu_ns, r.pacer_spin_ns, r.capped) = (c.cpu_ns, c.pacer_spin_ns, c.capped);
        r.stream_messages.clone_from(&c.stream_messages);
        r.stream_messages_other = c.stream_messages_other;
        r.cache = c.cache;
        r.reasoning_requests = c.reasoning_requests;
        r.first_send_ns = self.first_send_unix_s.map_or(u64::MAX, unix_ns);
        r.last_send_ns = self.last_send_unix_s.map_or(0, unix_ns);
        r.last_ok_ns = self.last_ok_unix_s.map_or(0, unix_ns);
        r.window_end_ns = unix_ns(self.window_end_unix_s);
        let start = unix_ns(self.window_start_unix_s);
        r.send_times_ns = self
            .send_times_us
            .iter()
            .map(|&t| start + t * 1_000)
            .collect();
        for e in &self.endpoints {
            r.endpoints.push(e.to_recorder()?);
        }
        if let Some(t) = &self.turns {
            r.turns = Some(Box::new(t.to_turns()?));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_and_counters_round_trip() {
        let mut r = Recorder::new();
        for v in [1_000u64, 20_000, 20_500, 3_000_000] {
            r.hist.ttft_us.saturating_record(v);
        }
        r.sent = 4;
        r.succeeded = 3;
        r.errors.insert(
            ErrorKind::Http(503),
            ErrorStat {
                count: 1,
                sample: Some("busy".into()),
            },
        );
        let t0 = crate::foundation::clock::now_ns();
        r.send_times_ns = vec![t0, t0 + 1_500_000, t0 + 9_000_000];
        (r.first_send_ns, r.last_send_ns, r.last_ok_ns) = (t0, t0 + 9_000_000, t0 + 50_000_000);
        let clock = crate::stats::LevelClock {
            start_ns: t0,
            duration_s: 1.0,
            end_ns: t0 + 60_000_000,
            interrupted: false,
        };
        let stats = LevelStats::new(&r, 10.0, clock, &[50.0, 99.0], Default::default());
        let run = LevelRun {
            start_ns: t0,
            window_start_ns: t0,
            window_end_ns: t0 + 1_000_000_000,
            merged: r.clone(),
            per_core: Vec::new(),
            warmup: Recorder::new(),
            end_ns: t0 + 60_000_000,
            planned: 4,
        };
        let l = LevelHistograms::new(1, &stats, &run).unwrap();
        // Every histogram of the recorder is saved (its one list: `histograms!`).
        assert_eq!(l.histograms.len(), r.hist.each().count());
        assert!(l.histograms.len() >= 16);
        let back = decode(&l.histograms["ttft_us"]).unwrap();
        assert_eq!(
            back.value_at_quantile(0.5),
            r.hist.ttft_us.value_at_quantile(0.5)
        );
        assert!(decode("not base64!").is_err());
        // Through JSON and back into a recorder on the Unix clock.
        let json = serde_json::to_string(&l).unwrap();
        let l2: LevelHistograms = serde_json::from_str(&json).unwrap();
        let r2 = l2.to_recorder().unwrap();
        assert_eq!((r2.sent, r2.succeeded), (4, 3));
        assert_eq!(
            r2.errors[&ErrorKind::Http(503)].sample.as_deref(),
            Some("busy")
        );
        assert_eq!(r2.hist.ttft_us.max(), r.hist.ttft_us.max());
        assert_eq!(r2.send_times_ns.len(), 3);
        assert_eq!(r2.send_times_ns[1] - r2.send_times_ns[0], 1_500_000);
        // Each end is rounded to the µs (±0.5 µs), and Unix seconds in an f64 hold about a
        // quarter of a µs more: the span is exact within 1.5 µs (1 µs failed about 1 run in 10).
        assert!((r2.last_send_ns - r2.first_send_ns).abs_diff(9_000_000) <= 1_500);
    }
}
