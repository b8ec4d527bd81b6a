//! Percentiles of one metric as the results report them: the percentiles asked for, then `max`,
//! read from an HdrHistogram and scaled to the unit the results use; `null` for a level that had
//! no sample of the metric. Used by `stats` (every level's figures) and `prefix_cache`.

use hdrhistogram::Histogram;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// Percentiles of one metric, in the order they were asked for, then `max`. `null` when the
/// level had no sample of it (e.g. no successful request).
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<(String, Option<f64>)>);

impl Percentiles {
    pub fn from_hist(h: &Histogram<u64>, pcts: &[f64], scale: f64) -> Self {
        let mut v: Vec<(String, Option<f64>)> = pcts
            .iter()
            .map(|&p| {
                let val = (!h.is_empty()).then(|| h.value_at_quantile(p / 100.0) as f64 * scale);
                (pct_key(p), val)
            })
            .collect();
        v.push((
            "max".into(),
            (!h.is_empty()).then(|| h.max() as f64 * scale),
        ));
        Self(v)
    }

    /// The keys of `pcts` and `max`, every value empty (a figure that does not apply: it reads
    /// `-`, and `null` in JSON).
    pub fn none(pcts: &[f64]) -> Self {
        let mut v: Vec<(String, Option<f64>)> = pcts.iter().map(|&p| (pct_key(p), None)).collect();
        v.push(("max".into(), None));
        Self(v)
    }

    /// The value at percentile key `p50`, `p95`, … or `max`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.0.iter().find(|(k, _)| k == key).and_then(|(_, v)| *v)
    }
}

impl Serialize for Percentiles {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, &v.map(round6))?;
        }
        m.end()
    }
}

/// `50` → `p50`, `99.9` → `p99.9`.
pub fn pct_key(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("p{}", p as u64)
    } else {
        format!("p{p}")
    }
}

/// Rounded to 6 decimals (µs of a second), as every figure in the results.
pub fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// The percentiles always computed for the JSON (p90 included), merged with the user's.
pub fn json_percentiles(user: &[f64]) -> Vec<f64> {
    let mut all: Vec<f64> = vec![50.0, 90.0, 95.0, 99.0];
    for &p in user {
        if !all.contains(&p) {
            all.push(p);
        }
    }
    all.sort_by(|a, b| a.total_cmp(b));
    all
}
