//! A level's `endpoints`, with several `--endpoint`s: each endpoint's requests, successes, errors
//! and TTFT percentiles beside its masked URL, from the merged `recording::endpoints` counts.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::recording::endpoints::EndpointRecorder;

/// One endpoint's share of a level, in its JSON.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStats {
    /// As given, secret query parameters masked.
    pub url: String,
    pub total_requests: u64,
    pub successful_requests: u64,
    pub errors: BTreeMap<String, u64>,
    /// TTFT p50 and p99 of its successful requests, seconds (null without one).
    pub ttft: BTreeMap<&'static str, Option<f64>>,
}

/// The level's `endpoints`: each endpoint's figures beside its (masked) URL; `None` with one
/// endpoint.
pub fn stats(recorders: &[EndpointRecorder], urls: &[String]) -> Option<Vec<EndpointStats>> {
    if urls.len() <= 1 {
        return None;
    }
    let empty = EndpointRecorder::default();
    let at =
        |h: &Histogram<u64>, q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e6);
    Some(
        urls.iter()
            .enumerate()
            .map(|(i, url)| {
                let r = recorders.get(i).unwrap_or(&empty);
                EndpointStats {
                    url: url.clone(),
                    total_requests: r.sent,
                    successful_requests: r.succeeded,
                    errors: r.errors.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
                    ttft: BTreeMap::from([
                        ("p50", at(&r.ttft_us, 0.5)),
                        ("p99", at(&r.ttft_us, 0.99)),
                    ]),
                }
            })
            .collect(),
    )
}
