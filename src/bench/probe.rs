//! Stage 2, the probe: one request before the first level decides whether to keep asking for
//! vLLM's `stream_options.continuous_usage_stats`. Some servers (hosted APIs) refuse unknown
//! stream options with HTTP 400, and a run of 400s would measure nothing.

use super::plan::Plan;
use crate::cli::ContinuousUsage;
use crate::engine::Engine;
use crate::error::{Result, UserError};
use crate::outcome::ErrorKind;

/// Sends the probe when `--continuous-usage auto` asks for it, and leaves the engine clean (no
/// pooled connection from the probe); returns the outcome for metadata.json. When the endpoint
/// refused the option, the plan stops asking for it and the engine gets the new request bytes.
pub fn continuous_usage(engine: &Engine, plan: &mut Plan) -> Result<String> {
    if !plan.continuous_usage {
        return Ok("off".to_string());
    }
    if plan.args.continuous_usage == ContinuousUsage::On {
        return Ok("requested".to_string());
    }
    let probe = engine
        .run_level(&[0], 0, (0, 0), plan.samples.len())
        .map_err(UserError::runtime)?;
    let errors = &probe.merged.errors;
    let refused = errors
        .keys()
        .find(|k| matches!(k, ErrorKind::Http(400..=499)));
    if probe.merged.succeeded == 1 {
        engine.reset(None).map_err(UserError::runtime)?;
        Ok("requested (probe accepted)".to_string())
    } else if let Some(code) = refused {
        eprintln!(
            "note: the endpoint refused a request with stream_options.continuous_usage_stats ({code}); sending without it, so ITL counts one token per chunk unless the server says otherwise"
        );
        plan.continuous_usage = false;
        engine
            .reset(Some(plan.render()?))
            .map_err(UserError::runtime)?;
        Ok(format!("not requested (refused by the endpoint: {code})"))
    } else {
        // Not an answer about the option (refused connection, TLS, 5xx): keep asking.
        engine.reset(None).map_err(UserError::runtime)?;
        let why = errors
            .keys()
            .next()
            .map_or_else(|| "no answer".to_string(), |k| k.to_string());
        Ok(format!("requested (probe inconclusive: {why})"))
    }
}
