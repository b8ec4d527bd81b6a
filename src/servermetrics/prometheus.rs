//! A parser of the Prometheus text exposition format (what vLLM, SGLang and TGI serve on
//! `/metrics`), zero-copy for names: `# HELP` / `# TYPE` lines, samples
//! `name{label="value",…} value [timestamp]`, and OpenMetrics exemplars after ` # `, which are
//! ignored. Values may be `NaN`, `+Inf` and `-Inf`. A line that is not a sample is skipped and
//! counted: a scrape never fails on one odd line.
//!
//! Data flow: the server-metrics scraper (`servermetrics`) reads `/metrics` about once a second
//! and picks the series it knows from the [`Exposition`].

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// Label names and (unescaped) values, in the order written.
    pub labels: Vec<(&'a str, String)>,
    pub value: f64,
}

/// A parsed `/metrics` text.
#[derive(Debug, Default)]
pub struct Exposition<'a> {
    pub samples: Vec<Sample<'a>>,
    /// `# TYPE name kind` (counter, gauge, histogram, …).
    pub types: HashMap<&'a str, &'a str>,
    /// Lines that were neither a sample, a comment nor blank.
    pub skipped: usize,
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Exposition<'_> {
    let mut out = Exposition::default();
    for line in text.lines() {
        let line = line.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(kind)) = (words.next(), words.next()) {
                    out.types.insert(name, kind);
                }
            }
            continue;
        }
        match sample(line) {
            Some(s) => out.samples.push(s),
            None => out.skipped += 1,
        }
    }
    out
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .enumerate()
        .take_while(|&(i, b)| {
            b == b'_' || b == b':' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit())
        })
        .count()
}

/// One sample line, or `None` if it is not one.
fn sample(line: &str) -> Option<Sample<'_>> {
    let n = name_len(line);
    if n == 0 {
        return None;
    }
    let (name, mut rest) = line.split_at(n);
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    // The value, then an optional timestamp, then an optional exemplar after `#`.
    let rest = rest.split('#').next().unwrap_or_default();
    let mut fields = rest.split_whitespace();
    let value = number(fields.next()?)?;
    match fields.next() {
        None => {}
        Some(ts) if ts.parse::<f64>().is_ok() => {}
        Some(_) => return None,
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Labels after `{`, up to and including `}`; returns what follows.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(&'a str, String)>) -> Option<&'a str> {
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some(after);
        }
        let n = name_len(s);
        if n == 0 {
            return None;
        }
        let (key, after) = s.split_at(n);
        let after = after.trim_start().strip_prefix('=')?.trim_start();
        let after = after.strip_prefix('"')?;
        let (value, after) = quoted(after)?;
        out.push((key, value));
        s = after.trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

/// A label value after its opening quote, unescaped (`\\`, `\"`, `\n`); returns what follows
/// the closing quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// A sample value: a float, `NaN`, `+Inf`, `-Inf`.
fn number(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ if s
            .bytes()
            .all(|b| b.is_ascii_digit() || b".eE+-".contains(&b)) =>
        {
            s.parse().ok()
        }
        _ => None,
    }
}

/// A sample written back in the canonical form (for the fuzz target's round trip).
pub fn render(s: &Sample<'_>) -> String {
    let mut out = s.name.to_string();
    if !s.labels.is_empty() {
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|(k, v)| {
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                format!("{k}=\"{v}\"")
            })
            .collect();
        out.push_str(&format!("{{{}}}", labels.join(",")));
    }
    let v = match s.value {
        v if v.is_nan() => "NaN".to_string(),
        v if v == f64::INFINITY => "+Inf".to_string(),
        v if v == f64::NEG_INFINITY => "-Inf".to_string(),
        v => format!("{v:e}"),
    };
    format!("{out} {v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_comments_special_values_and_exemplars() {
        let text = r#"
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3-8B"} 143.0
vllm:kv_cache_usage_perc{model_name="a \"quoted\" \\ name\nx"} 0.5 1700000000000
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model_name="m"} 12 # {trace_id="abc"} 1.2 1700000000.1
tgi_queue_size 7
odd NaN
neg -Inf
pos +Inf
sci 1.5e3
this is not a sample
bad{x="unterminated} 1
"#;
        let e = parse(text);
        assert_eq!(e.types["vllm:num_requests_waiting"], "gauge");
        assert_eq!(e.types["vllm:e2e_request_latency_seconds"], "histogram");
        let get = |n: &str| e.samples.iter().find(|s| s.name == n).unwrap();
        let w = get("vllm:num_requests_waiting");
        assert_eq!(w.value, 143.0);
        assert_eq!(
            w.labels,
            vec![
                ("engine", "0".into()),
                ("model_name", "Qwen/Qwen3-8B".into())
            ]
        );
        assert_eq!(
            get("vllm:kv_cache_usage_perc").labels[0].1,
            "a \"quoted\" \\ name\nx"
        );
        assert_eq!(get("vllm:e2e_request_latency_seconds_bucket").value, 12.0);
        assert_eq!(get("tgi_queue_size").value, 7.0);
        assert!(get("odd").value.is_nan());
        assert_eq!(get("neg").value, f64::NEG_INFINITY);
        assert_eq!(get("pos").value, f64::INFINITY);
        assert_eq!(get("sci").value, 1500.0);
        assert_eq!(e.skipped, 2);
        // The canonical form reads back the same.
        for s in &e.samples {
            let back = render(s);
            let again = parse(&back);
            assert_eq!(again.samples.len(), 1, "{back}");
            assert_eq!(again.samples[0].labels, s.labels);
        }
    }
}
