//! A dataset's conversations as multi-turn sessions (`--session-turns` with a ShareGPT, JSONL or
//! spec-format file): turn 1 is a sample's messages up to and including its first user message;
//! each later user message, in order, is a later turn. The dataset's own answers between them
//! are left out, since a session carries the server's own answers instead.
//!
//! Data flow: the loaded samples → [`split`] (in `bench`'s plan) → the first turns become the
//! rows every level renders, and the later user messages (the scripts) go to the engine's
//! `session::SessionPlan`.

use super::Sample;

/// The samples cut to their first turns, and each one's later user messages (at most
/// `max_turns` − 1 of them), in the same order.
pub fn split(samples: &[Sample], max_turns: u32) -> (Vec<Sample>, Vec<Vec<String>>) {
    let later_max = max_turns.saturating_sub(1) as usize;
    samples
        .iter()
        .map(|s| {
            let first_user = s.messages.iter().position(|m| m.role == "user");
            let Some(cut) = first_user else {
                return (s.clone(), Vec::new());
            };
            let later = s.messages[cut + 1..]
                .iter()
                .filter(|m| m.role == "user")
                .take(later_max)
                .map(|m| m.content.clone())
                .collect();
            let first = Sample {
                messages: s.messages[..=cut].to_vec(),
                ..s.clone()
            };
            (first, later)
        })
        .unzip()
}

/// The mean turns of the sessions `scripts` make (each its first turn and its later ones).
pub fn mean_turns(scripts: &[Vec<String>]) -> f64 {
    if scripts.is_empty() {
        return 1.0;
    }
    1.0 + scripts.iter().map(Vec::len).sum::<usize>() as f64 / scripts.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::dataset::Message;

    fn m(role: &'static str, content: &str) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }

    #[test]
    fn the_first_user_turn_opens_and_the_later_ones_follow_without_the_datasets_answers() {
        let s = Sample {
            messages: vec![
                m("system", "S"),
                m("user", "q1"),
                m("assistant", "a1"),
                m("user", "q2"),
                m("assistant", "a2"),
                m("user", "q3"),
            ],
            prompt: None,
            max_tokens: Some(7),
        };
        let one = Sample {
            messages: vec![m("user", "only")],
            prompt: None,
            max_tokens: None,
        };
        let (first, scripts) = split(&[s.clone(), one], 8);
        let roles: Vec<_> = first[0].messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, ["system", "user"]);
        assert_eq!(first[0].max_tokens, Some(7));
        assert_eq!(scripts, [vec!["q2".to_string(), "q3".into()], vec![]]);
        assert_eq!(mean_turns(&scripts), 2.0);
        // --session-turns 2: one later turn at most.
        let (_, capped) = split(&[s], 2);
        assert_eq!(capped, [vec!["q2".to_string()]]);
    }
}
