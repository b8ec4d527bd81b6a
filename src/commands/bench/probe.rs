//! Stage 2, the probe: before the first level, one request checks that the endpoint answers at
//! all, a few more measure it unloaded, and the optional body fields that some servers refuse
//! are kept or dropped: vLLM's `stream_options.continuous_usage_stats`, and `ignore_eos` with
//! `min_tokens` (exact answer lengths).
//!
//! - An endpoint that cannot answer (no connection, no TLS, no HTTP, a 4xx to even the plainest
//!   request, an answer in another API's form) stops the run here, with exit status 4, one
//!   message and no results folder: a sweep against it would measure nothing and could only
//!   mislead ([`probe_answer`] classifies and hints).
//! - A busy one (429, 5xx) is asked again for up to `--probe-wait` seconds, then the run goes on
//!   with a warning.
//! - A 4xx to the request as asked may be an optional field: they are dropped in turn.
//! - Once it answers, [`BASELINE_REQUESTS`] requests in all, one at a time, give the unloaded
//!   TTFT and E2E that the saturation rules compare every level with (`report::analysis`).
//!
//! Every probe request sends a prompt that no level sends (`prepared::unique`), so it warms no
//! cache for the levels, and none of them is in the results.

use std::time::{Duration, Instant};

use super::plan::Plan;
use super::probe_answer::{self, Class};
use crate::cli::ContinuousUsage;
use crate::engine::Engine;
use crate::foundation::error::{Result, UserError};
use crate::recording::outcome::ErrorKind;
use crate::report::analysis::Unloaded;
use crate::workload::prepared::RunRequests;

/// Requests the unloaded baseline is made of (the first is the check's own).
pub const BASELINE_REQUESTS: u64 = 3;

/// What metadata.json records of the probe.
#[derive(serde::Serialize)]
pub struct Outcome {
    /// Whether `stream_options.continuous_usage_stats` was sent, and why.
    #[serde(rename = "continuous_usage_stats")]
    pub continuous_usage: String,
    /// Whether requests asked for exact answer lengths (`ignore_eos`, `min_tokens`), and why.
    pub ignore_eos: String,
    /// What the check before level 1 found (`answered`, `skipped (--no-probe)`, …).
    pub endpoint_check: String,
    /// The endpoint unloaded (the probe's sequential requests): the saturation rules'
    /// baseline; null with `--no-probe` or a busy endpoint (the lowest level is then).
    pub baseline: Option<Unloaded>,
}

/// One probe request's answer.
enum Answer {
    /// A whole answer: its TTFT (none for embeddings) and E2E, seconds.
    Answered(Option<f64>, f64),
    /// Failed: its category, class and the server's own text, if any.
    Failed(ErrorKind, Class, Option<String>),
}

/// The optional fields a request carries: (continuous usage, ignore_eos).
type Fields = (bool, bool);

/// An answered probe's TTFT (none for embeddings) and E2E, seconds.
type Timing = (Option<f64>, f64);

/// Checks the endpoint and measures it unloaded; leaves the engine clean (no pooled connection
/// from a probe) and `requests` rendered as the run will send them. An endpoint that does not
/// answer is an error with exit status 4.
pub fn check(engine: &Engine, plan: &mut Plan, requests: &mut RunRequests) -> Result<Outcome> {
    let asked: Fields = (plan.continuous_usage, plan.workload.ignore_eos);
    // Only what is asked for and not forced is probed (--continuous-usage on forces it).
    let probed: Fields = (
        asked.0 && plan.args.continuous_usage == ContinuousUsage::Auto,
        asked.1,
    );
    let mut outcome = Outcome {
        continuous_usage: if asked.0 { "requested" } else { "off" }.to_string(),
        ignore_eos: if asked.1 { "requested" } else { "off" }.to_string(),
        endpoint_check: String::new(),
        baseline: None,
    };
    if plan.args.checks.no_probe {
        outcome.endpoint_check = "skipped (--no-probe)".into();
        return Ok(outcome);
    }
    let describe = |o: &mut Outcome, what: &str| {
        if probed.0 {
            o.continuous_usage = format!("requested ({what})");
        }
        if probed.1 {
            o.ignore_eos = format!("requested ({what})");
        }
    };
    let wait = Duration::from_secs_f64(plan.args.checks.probe_wait);
    let (first, busy) = ask_waiting(engine, requests, 0, wait)?;
    let answered = match first {
        Answer::Answered(ttft, e2e) => {
            describe(&mut outcome, "probe accepted");
            (ttft, e2e)
        }
        Answer::Failed(kind, Class::Busy, sample) => {
            let what = said(&kind, sample.as_deref());
            eprintln!(
                "warning: the endpoint was still busy after {} s ({what}); going on: its first levels may measure a server that is still warming up",
                plan.args.checks.probe_wait
            );
            describe(&mut outcome, &format!("probe inconclusive: {kind}"));
            outcome.endpoint_check = format!(
                "busy for {} s ({kind}); went on",
                plan.args.checks.probe_wait
            );
            return Ok(outcome);
        }
        Answer::Failed(kind, Class::Broken, sample) => {
            return Err(stop(plan, &kind, sample.as_deref()));
        }
        Answer::Failed(kind, _, sample) => {
            let Some(answer) = drop_fields(engine, plan, requests, asked, probed)? else {
                return Err(stop(plan, &kind, sample.as_deref()));
            };
            report_dropped(&mut outcome, asked, answer.0, &kind);
            answer.1
        }
    };
    outcome.endpoint_check = if busy > 0 {
        format!("answered after {busy} busy answer(s)")
    } else {
        "answered".into()
    };
    outcome.baseline = Some(baseline(engine, requests, answered)?);
    Ok(outcome)
}

/// Sends probe request `k`, asking again while the endpoint is busy (429, 5xx) for up to
/// `wait`; returns the last answer and how many busy answers came before it.
fn ask_waiting(
    engine: &Engine,
    requests: &RunRequests,
    k: u64,
    wait: Duration,
) -> Result<(Answer, u32)> {
    let until = Instant::now() + wait;
    let mut busy = 0;
    loop {
        let answer = ask(engine, requests, k)?;
        let Answer::Failed(kind, Class::Busy, sample) = &answer else {
            return Ok((answer, busy));
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok((answer, busy));
        }
        busy += 1;
        if busy == 1 || busy % 10 == 0 {
            eprintln!(
                "note: the endpoint is busy ({}); asking again each second for up to {:.0} s (--probe-wait)",
                said(kind, sample.as_deref()),
                left.as_secs_f64()
            );
        }
        std::thread::sleep(left.min(Duration::from_secs(1)));
        if crate::foundation::interrupt::requested() {
            return Err(UserError {
                message: "interrupted before the first level: nothing was measured".into(),
                exit_code: crate::foundation::error::exit::INTERRUPTED,
            });
        }
    }
}

/// The request as asked was refused: drops the probed fields in turn (continuous usage first,
/// the likelier to be refused, then ignore_eos, then both; a forced field stays). Returns the
/// fields of the first request answered, and its answer; `None` when even the plainest was
/// refused.
fn drop_fields(
    engine: &Engine,
    plan: &mut Plan,
    requests: &mut RunRequests,
    asked: Fields,
    probed: Fields,
) -> Result<Option<(Fields, Timing)>> {
    let mut tries: Vec<Fields> = Vec::new();
    if probed.0 {
        tries.push((false, asked.1));
    }
    if probed.1 {
        tries.push((asked.0, false));
    }
    if probed.0 && probed.1 {
        tries.push((false, false));
    }
    for fields in tries {
        set(plan, fields);
        *requests = plan.render()?;
        if let Answer::Answered(ttft, e2e) = ask(engine, requests, 0)? {
            return Ok(Some((fields, (ttft, e2e))));
        }
    }
    set(plan, asked);
    *requests = plan.render()?;
    Ok(None)
}

/// The unloaded baseline: the first answer and [`BASELINE_REQUESTS`] − 1 more, one at a time,
/// each with a prompt of its own: their medians and maxima (`analysis::Unloaded`).
fn baseline(
    engine: &Engine,
    requests: &RunRequests,
    first: (Option<f64>, f64),
) -> Result<Unloaded> {
    let mut ttft: Vec<f64> = first.0.into_iter().collect();
    let mut e2e = vec![first.1];
    for k in 1..BASELINE_REQUESTS {
        if let Answer::Answered(t, e) = ask(engine, requests, k)? {
            ttft.extend(t);
            e2e.push(e);
        }
    }
    ttft.sort_by(f64::total_cmp);
    e2e.sort_by(f64::total_cmp);
    let median = |v: &[f64]| (!v.is_empty()).then(|| round_us(v[v.len() / 2]));
    let max = |v: &[f64]| v.last().map(|&x| round_us(x));
    Ok(Unloaded {
        requests: e2e.len() as u32,
        ttft_s: median(&ttft),
        ttft_max_s: max(&ttft),
        e2e_s: median(&e2e).unwrap_or(0.0),
        e2e_max_s: max(&e2e),
    })
}

/// Seconds to the microsecond.
fn round_us(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}

fn set(plan: &mut Plan, (continuous_usage, ignore_eos): Fields) {
    plan.continuous_usage = continuous_usage;
    plan.workload.ignore_eos = ignore_eos;
}

/// `HTTP 503: "the model is loading"`: a category with the server's words, if any.
fn said(kind: &ErrorKind, sample: Option<&str>) -> String {
    match sample.filter(|s| !s.trim().is_empty()) {
        Some(s) => format!("{kind}: {}", crate::report::recommend::excerpt(s, 120)),
        None => kind.to_string(),
    }
}

/// The error that stops the run: the cause, the URL (never the key), the server's own words
/// and a hint.
fn stop(plan: &Plan, kind: &ErrorKind, sample: Option<&str>) -> UserError {
    let cx = probe_answer::Context {
        url: &plan.shown_endpoint,
        api: plan.api,
        api_given: plan.args.api.is_some(),
        key_sent: !plan.api_key.is_empty(),
    };
    let mut msg = format!(
        "the endpoint did not answer a plain {} request, so no level was run.\n  URL:    {}\n  cause:  {kind}",
        plan.api, plan.shown_endpoint
    );
    if let Some(s) = sample.filter(|s| !s.trim().is_empty()) {
        let s = crate::foundation::secret::scrub(s, &plan.api_key);
        msg.push_str(&format!(
            "\n  server: {}",
            crate::report::recommend::excerpt(&s, 300)
        ));
    }
    if let Some(h) = probe_answer::hint(kind, sample, &cx) {
        msg.push_str(&format!("\n  hint:   {h}"));
    }
    msg.push_str("\n  (--no-probe skips this check, for a server whose probe cannot succeed)");
    UserError::endpoint(msg)
}

/// Says which fields the endpoint refused (those `accepted` lacks), and records it.
fn report_dropped(o: &mut Outcome, asked: Fields, accepted: Fields, code: &ErrorKind) {
    let fields = [
        (
            asked.0,
            accepted.0,
            &mut o.continuous_usage,
            "stream_options.continuous_usage_stats",
            "it, so ITL counts one token per chunk unless the server says otherwise",
        ),
        (
            asked.1,
            accepted.1,
            &mut o.ignore_eos,
            "ignore_eos and min_tokens",
            "them, so answers may end before max_tokens",
        ),
    ];
    for (asked, accepted, record, what, so) in fields {
        if asked && !accepted {
            eprintln!(
                "note: the endpoint refused a request with {what} ({code}); sending without {so}"
            );
            *record = format!("not requested (refused by the endpoint: {code})");
        } else if asked {
            *record = "requested (probe accepted)".to_string();
        }
    }
}

/// Sends probe request `k` alone and resets the engine's connections after it.
fn ask(engine: &Engine, requests: &RunRequests, k: u64) -> Result<Answer> {
    let run = engine
        .run_level(
            &[crate::engine::PlannedArrival {
                offset_ns: 0,
                sample: 0,
                endpoint: 0,
            }],
            0,
            (0, 0),
            None,
            Some(requests.probe_request(k)?),
            Default::default(),
        )
        .map_err(UserError::runtime)?;
    engine.reset(None).map_err(UserError::runtime)?;
    let m = &run.merged;
    if m.succeeded == 1 {
        let us = |h: &hdrhistogram::Histogram<u64>| (!h.is_empty()).then(|| h.max() as f64 / 1e6);
        return Ok(Answer::Answered(
            us(&m.hist.ttft_us),
            us(&m.hist.e2e_us).unwrap_or(0.0),
        ));
    }
    let Some((kind, stat)) = m.errors.iter().next() else {
        return Ok(Answer::Failed(
            ErrorKind::Malformed("no answer".into()),
            Class::Broken,
            None,
        ));
    };
    let sample = match kind {
        ErrorKind::Stream => m.stream_messages.first().map(|(s, _)| s.clone()),
        _ => stat.sample.clone(),
    };
    Ok(Answer::Failed(
        kind.clone(),
        probe_answer::classify(kind),
        sample,
    ))
}
