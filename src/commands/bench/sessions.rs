//! `--session-turns` and its flags, checked into the engine's `SessionPlan`: which runs may send
//! sessions (the chat API; synthetic prompts, or a dataset's conversations replayed; no trace)
//! and the bounds of every session flag. Called by the plan, after the numeric flags; for a
//! dataset it cuts the rows to their first turns.

use std::sync::Arc;

use crate::cli::{Api, BenchArgs, DatasetName, ThinkTimeDist};
use crate::engine::session_plan::{SessionPlan, MAX_TURNS};
use crate::foundation::error::{Result, UserError};
use crate::foundation::flag_ranges::{check, count, Low};
use crate::workload::dataset::text::MAX_SPAN_WORDS;
use crate::workload::dataset::{conversations, Dataset, Rows};

/// The run's sessions, or None for single requests (no `--session-turns`, or 1). A session flag
/// without `--session-turns`, a bound out of range, or a run that cannot carry a history is an
/// error naming the flag.
pub fn plan(a: &BenchArgs, api: Api, dataset: &mut Dataset) -> Result<Option<SessionPlan>> {
    let w = &a.workload;
    let Some(turns) = w.session_turns else {
        let stray = [
            ("--session-turns-stddev", w.session_turns_stddev != 0.0),
            ("--turn-input-len", w.turn_input_len.is_some()),
            ("--think-time-ms", w.think_time_ms != 0.0),
            (
                "--think-time-dist",
                w.think_time_dist != ThinkTimeDist::Constant,
            ),
        ];
        if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
            return Err(UserError::input(format!(
                "{flag}: applies to sessions only; add --session-turns N"
            )));
        }
        return Ok(None);
    };
    let max = f64::from(MAX_TURNS);
    check("--session-turns", turns, Low::From(1.0), max, "turns")?;
    let stddev = w.session_turns_stddev;
    check(
        "--session-turns-stddev",
        stddev,
        Low::From(0.0),
        max,
        "turns",
    )?;
    check(
        "--think-time-ms",
        w.think_time_ms,
        Low::From(0.0),
        3.6e6,
        "milliseconds",
    )?;
    let turn_input_len = w.turn_input_len.unwrap_or(w.random_input_len);
    let span = u64::from(MAX_SPAN_WORDS);
    count("--turn-input-len", turn_input_len.into(), 1, span, "tokens")?;
    if turns == 1.0 && stddev == 0.0 {
        return Ok(None);
    }
    let Some(history_key) = api.history_key() else {
        return Err(UserError::input(format!(
            "--session-turns {turns}: sessions need a history of messages (--api chat, responses or messages); this endpoint speaks the {api} API"
        )));
    };
    if dataset.name == DatasetName::Mooncake || a.workload.replay {
        return Err(UserError::input(format!(
            "--session-turns {turns}: a trace's rows are single requests; use --dataset-name random, or a ShareGPT, JSONL or `seed`-format file of conversations"
        )));
    }
    let mut plan = SessionPlan {
        turns,
        turns_stddev: stddev,
        turn_input_len,
        think_ms: w.think_time_ms,
        think_dist: w.think_time_dist,
        seed: a.seed,
        scripts: None,
        history_key,
    };
    if let Rows::Samples(samples) = dataset.rows.as_ref() {
        for (flag, given) in [
            ("--session-turns-stddev", stddev != 0.0),
            ("--turn-input-len", w.turn_input_len.is_some()),
        ] {
            if given {
                return Err(UserError::input(format!(
                    "{flag}: applies to synthetic sessions (--dataset-name random); a dataset's conversations set their own turns"
                )));
            }
        }
        // At most `turns` of each conversation's user turns; the rate follows their mean.
        let (first, scripts) = conversations::split(samples, turns.round() as u32);
        plan.turns = conversations::mean_turns(&scripts);
        plan.scripts = Some(Arc::new(scripts));
        dataset.rows = Arc::new(Rows::Samples(first));
    }
    Ok(Some(plan))
}
