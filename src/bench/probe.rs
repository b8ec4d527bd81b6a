//! Stage 2, the probe: one request before the first level decides whether to keep the optional
//! body fields that some servers refuse: vLLM's `stream_options.continuous_usage_stats`, and
//! `ignore_eos` with `min_tokens` (exact answer lengths). Hosted APIs refuse unknown fields with
//! HTTP 4xx, and a run of 4xx would measure nothing. When the request as asked is refused, the
//! probe finds which field it was by dropping them in turn.

use super::plan::Plan;
use crate::cli::ContinuousUsage;
use crate::engine::Engine;
use crate::error::{Result, UserError};
use crate::outcome::ErrorKind;
use crate::prepared::RunRequests;

/// What metadata.json records about each optional field.
pub struct Outcome {
    pub continuous_usage: String,
    pub ignore_eos: String,
}

/// One probe's answer.
enum Answer {
    Accepted,
    /// HTTP 4xx: the request's fields were refused.
    Refused(ErrorKind),
    /// No answer about the fields (refused connection, TLS, 5xx).
    Inconclusive(String),
}

/// The optional fields a request carries: (continuous usage, ignore_eos).
type Fields = (bool, bool);

/// Sends probes when a field is asked for without being forced, and leaves the engine clean (no
/// pooled connection from a probe) and `requests` rendered as the run will send them. The
/// probe sends prompt 0, which no level sends (`prepared::unique`), so it warms no cache for
/// the first level.
pub fn optional_fields(
    engine: &Engine,
    plan: &mut Plan,
    requests: &mut RunRequests,
) -> Result<Outcome> {
    let asked: Fields = (plan.continuous_usage, plan.workload.ignore_eos);
    // Only what is asked for and not forced is probed (--continuous-usage on forces it).
    let probed: Fields = (
        asked.0 && plan.args.continuous_usage == ContinuousUsage::Auto,
        asked.1,
    );
    let mut outcome = Outcome {
        continuous_usage: if !asked.0 { "off" } else { "requested" }.to_string(),
        ignore_eos: if asked.1 { "requested" } else { "off" }.to_string(),
    };
    if probed == (false, false) {
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
    let code = match probe(engine, requests)? {
        Answer::Accepted => {
            describe(&mut outcome, "probe accepted");
            return Ok(outcome);
        }
        Answer::Inconclusive(why) => {
            describe(&mut outcome, &format!("probe inconclusive: {why}"));
            return Ok(outcome);
        }
        Answer::Refused(code) => code,
    };
    // Drop continuous usage first (the likelier to be refused), then ignore_eos, then both;
    // a forced field stays.
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
        if let Answer::Accepted = probe(engine, requests)? {
            report_dropped(&mut outcome, asked, fields, &code);
            return Ok(outcome);
        }
    }
    // Even the plainest request was refused: the fields are not the problem; send as asked.
    set(plan, asked);
    *requests = plan.render()?;
    describe(
        &mut outcome,
        &format!("probe inconclusive: the endpoint refused even a request without them ({code})"),
    );
    Ok(outcome)
}

fn set(plan: &mut Plan, (continuous_usage, ignore_eos): Fields) {
    plan.continuous_usage = continuous_usage;
    plan.workload.ignore_eos = ignore_eos;
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

/// Sends the probe's request and resets the engine's connections after it.
fn probe(engine: &Engine, requests: &RunRequests) -> Result<Answer> {
    let run = engine
        .run_level(
            &[(0, 0, 0)],
            0,
            (0, 0),
            None,
            Some(requests.probe()?),
            Default::default(),
        )
        .map_err(UserError::runtime)?;
    engine.reset(None).map_err(UserError::runtime)?;
    let errors = &run.merged.errors;
    if run.merged.succeeded == 1 {
        return Ok(Answer::Accepted);
    }
    if let Some(code) = errors
        .keys()
        .find(|k| matches!(k, ErrorKind::Http(400..=499)))
    {
        return Ok(Answer::Refused(code.clone()));
    }
    let why = errors
        .keys()
        .next()
        .map_or_else(|| "no answer".to_string(), |k| k.to_string());
    Ok(Answer::Inconclusive(why))
}
