//! Mergeable results (`histograms.json`): per level, every histogram the results report as
//! percentiles, serialized in HdrHistogram's standard V2 format (base64), with the level's
//! counters and its window in wall-clock time beside them. HDR histograms merge without loss, so
//! the shards of one schedule can later be combined into exactly what one process would have
//! measured; averaging the shards' percentiles would not be.
//!
//! Data flow: `bench` builds a [`LevelHistograms`] from each level's merged `recorder::Recorder`
//! and rewrites the file after every level.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::recorder::Recorder;

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
    pub counters: Counters,
    /// Name (as in the results, with its unit) → V2-serialized histogram, base64.
    pub histograms: BTreeMap<String, String>,
}

/// The level's counts, summed when shards merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counters {
    pub sent: u64,
    pub succeeded: u64,
    pub errors: BTreeMap<String, u64>,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub ok_in_window: u64,
    pub slo_met: u64,
}

/// The histograms kept, by the name they are saved under.
fn histograms(r: &Recorder) -> [(&'static str, &Histogram<u64>); 11] {
    [
        ("ttft_us", &r.ttft_us),
        ("e2e_us", &r.e2e_us),
        ("ttfb_us", &r.ttfb_us),
        ("itl_us", &r.itl_us),
        ("tpot_us", &r.tpot_us),
        ("tokens_per_sec_milli", &r.tps_milli),
        ("send_lag_ns", &r.send_lag_ns),
        ("output_tokens", &r.output_tokens_n),
        ("prompt_tokens", &r.prompt_tokens_n),
        ("connect_us", &r.connect_us),
        ("tls_handshake_us", &r.handshake_us),
    ]
}

/// A histogram as V2 bytes in base64.
pub fn encode(h: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2Serializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| format!("{e:?}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The histogram [`encode`] wrote.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("not base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("not a V2 histogram: {e:?}"))
}

/// Monotonic ns → Unix seconds, to the µs.
fn unix_s(t_ns: u64) -> f64 {
    (crate::clock::mono_to_unix_s(t_ns) * 1e6).round() / 1e6
}

impl LevelHistograms {
    /// Level `level`'s record: the merged recorder `r`, its window (monotonic ns) and end.
    pub fn new(
        level: usize,
        qps_target: f64,
        r: &Recorder,
        (window_start_ns, window_end_ns, end_ns): (u64, u64, u64),
    ) -> Result<Self, String> {
        let histograms = histograms(r)
            .into_iter()
            .map(|(name, h)| Ok((name.to_string(), encode(h)?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            level,
            qps_target,
            window_start_unix_s: unix_s(window_start_ns),
            window_end_unix_s: unix_s(window_end_ns),
            end_unix_s: unix_s(end_ns),
            counters: Counters {
                sent: r.sent,
                succeeded: r.succeeded,
                errors: r
                    .errors
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.count))
                    .collect(),
                output_tokens: r.output_tokens,
                prompt_tokens: r.prompt_tokens,
                ok_in_window: r.ok_in_window,
                slo_met: r.slo_met,
            },
            histograms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_round_trip_through_v2_base64() {
        let mut r = Recorder::new();
        for v in [1_000u64, 20_000, 20_500, 3_000_000] {
            r.ttft_us.saturating_record(v);
        }
        r.sent = 4;
        let l = LevelHistograms::new(1, 10.0, &r, (0, 0, 0)).unwrap();
        let back = decode(&l.histograms["ttft_us"]).unwrap();
        assert_eq!(back.len(), 4);
        assert_eq!(
            back.value_at_quantile(0.5),
            r.ttft_us.value_at_quantile(0.5)
        );
        assert_eq!(back.max(), r.ttft_us.max());
        assert_eq!(l.histograms.len(), 11);
        assert_eq!(l.counters.sent, 4);
        assert!(decode("not base64!").is_err());
    }
}
