//! Prompts that never repeat by accident: which row each prompt of a run sends, on which pass
//! over the dataset, and what it adds to the row when the row repeats (`--unique-prompts`).
//!
//! A run's prompts are numbered by their arrival's place in the whole single-process schedule
//! (every earlier level's arrivals, warm-up included, then the arrival's index in its level),
//! from 1; prompt 0 is the probe's. Prompt p sends row (p − 1) mod rows, on pass
//! (p − 1) ÷ rows + 1, so each level continues through the rows where the one before stopped
//! and no row repeats before the dataset has been sent once. A shard takes its arrivals from the
//! same schedule, so it sends the same prompts one process would.
//!
//! When a row must repeat, a marker of the pass at the start of its first user message
//! ([`marker`]: the pass's number in words of the single-token vocabulary, then a line break) or
//! vLLM's `cache_salt` body field ([`salt`]) keeps it from being answered by a prefix cache: the
//! rows of one pass still share what they share on purpose (a system prompt, the spec format's
//! cut-off histories). `random` without a pool needs neither: every prompt's text is its own
//! (`dataset::text::Text::own`).

use serde::Serialize;

use crate::workload::dataset::vocabulary::WORDS;

pub use crate::cli::UniquePrompts;

/// The first number of the probe's later prompts (the unloaded baseline's): far above any
/// level's (a run's prompts number far fewer than 2^62), so no level sends them, and each
/// is row k on pass 0, with pass 0's marker where rows repeat. Its low 30 bits are a billion:
/// drawn text starts with the prompt number's low 30 bits (`dataset::text::ID_WORDS`), so a
/// base of a power of two would give probe request k the text of level prompt k.
pub const PROBE_BASE: u64 = (1 << 62) | 1_000_000_000;

/// A pass only the probe's requests are on: pass 0, and the passes from the top that a tiny
/// dataset's baseline requests take.
fn probe_pass(pass: u64) -> bool {
    pass == 0 || pass > u64::MAX - 1024
}

/// What the rows of a run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Read from a file (the spec's format, ShareGPT, JSONL).
    Samples,
    /// Synthetic rows (a `random` pool, a Mooncake trace): their own text, if any, is each
    /// prompt's anew.
    SyntheticRows,
    /// `random` without a pool: no rows, every prompt drawn anew (one endless pass).
    Drawn,
}

/// What one prompt adds to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Addition {
    None,
    /// [`marker`] of this pass, before the first user message's text.
    Marker(u64),
    /// [`salt`] of this pass, as the body's first field.
    Salt(u64),
}

/// The run's rule.
#[derive(Debug, Clone, Copy)]
pub struct Uniqueness {
    pub mode: UniquePrompts,
    pub source: Source,
    /// Rows (none for [`Source::Drawn`]).
    pub rows: u64,
}

impl Uniqueness {
    /// Prompt `prompt`'s row and pass (the probe, prompt 0: row 0 on pass 0; the unloaded
    /// baseline's prompts [`PROBE_BASE`] + k: row k on pass 0).
    pub fn row_and_pass(&self, prompt: u64) -> (usize, u64) {
        match (prompt, self.source) {
            (0, _) => (0, 0),
            (p, Source::Drawn) if p >= PROBE_BASE => (0, 0),
            (p, _) if p >= PROBE_BASE => {
                // Row k on pass 0 while the rows last; past them (a tiny dataset), a pass of
                // the probe's own, so that no two probe requests send the same prompt.
                let (k, n) = (p - PROBE_BASE, self.rows.max(1));
                ((k % n) as usize, if k < n { 0 } else { u64::MAX - k })
            }
            (_, Source::Drawn) => (0, 1),
            (p, _) => {
                let n = self.rows.max(1);
                (((p - 1) % n) as usize, (p - 1) / n + 1)
            }
        }
    }

    /// What a prompt on `pass` adds to its row.
    pub fn addition(&self, pass: u64) -> Addition {
        match (self.mode, self.source) {
            // The probe's requests are never measured: they stay out of the cache whatever the
            // mode, so that they warm nothing for level 1.
            (UniquePrompts::Off, Source::Samples | Source::SyntheticRows) if probe_pass(pass) => {
                Addition::Marker(pass)
            }
            (UniquePrompts::Off, _) => Addition::None,
            (UniquePrompts::Prefix, _) => Addition::Marker(pass),
            (UniquePrompts::Salt, _) => Addition::Salt(pass),
            // The first pass as the rows are; the probe's pass 0 and every repeat marked.
            (UniquePrompts::Auto, Source::Samples) if pass != 1 => Addition::Marker(pass),
            // A pool or a trace repeats on purpose; only the probe is kept apart.
            (UniquePrompts::Auto, Source::SyntheticRows) if probe_pass(pass) => {
                Addition::Marker(pass)
            }
            (UniquePrompts::Auto, _) => Addition::None,
        }
    }

    /// What metadata.json and the start line say about a run of `prompts` prompts (`None`:
    /// not known before the run, with `--qps auto`).
    pub fn report(&self, prompts: Option<u64>, shared: Option<&str>) -> Report {
        let rows = (self.source != Source::Drawn).then_some(self.rows);
        let passes = prompts.map(|p| match rows {
            Some(n) => p.div_ceil(n.max(1)),
            None => 1,
        });
        let applied = match (self.mode, self.source) {
            (_, Source::Drawn) if matches!(self.mode, UniquePrompts::Auto | UniquePrompts::Off) => {
                "none needed: every prompt is drawn anew with text of its own".to_string()
            }
            (UniquePrompts::Off, _) => "none: repeated rows are sent as they are".to_string(),
            (UniquePrompts::Prefix, _) => "a marker of the pass before each row's first user message, every pass".into(),
            (UniquePrompts::Salt, _) => "vLLM's cache_salt body field, one per pass".into(),
            (UniquePrompts::Auto, Source::Samples) => "a marker of the pass before each row's first user message, from the second pass on".into(),
            (UniquePrompts::Auto, _) => "none: the rows repeat on purpose (a pool or a trace); each row's own text is each prompt's anew".into(),
        };
        let probe = match self.addition(0) {
            Addition::None if self.source == Source::Drawn => "a prompt of its own",
            Addition::None => "row 0 as it is",
            Addition::Marker(_) => "row 0 with the marker of pass 0, which no level sends",
            Addition::Salt(_) => "row 0 with the cache_salt of pass 0, which no level sends",
        };
        // Every pass from the second adds the same kind of thing: pass 1 and pass 2 tell.
        let adds = |k: u64| self.addition(k) != Addition::None;
        let marked = passes.map(|p| adds(1) || (p >= 2 && adds(2)));
        Report {
            method: self.mode,
            applied,
            rows,
            prompts_planned: prompts,
            rows_sent: prompts.map(|p| rows.map_or(p, |n| p.min(n))),
            passes,
            marker_tokens: (self.mode != UniquePrompts::Salt && marked != Some(false)).then(|| {
                format!(
                    "{} per marked prompt (pass < 1024), 1 more per 1024× passes",
                    marker_tokens(1)
                )
            }),
            probe: probe.into(),
            shared_on_purpose: shared.map(str::to_string),
        }
    }
}

/// `prompt_uniqueness` in metadata.json.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `--unique-prompts`.
    pub method: UniquePrompts,
    /// What it does for this run's source, in words.
    pub applied: String,
    /// The dataset's rows (null: prompts are drawn, there are none).
    pub rows: Option<u64>,
    /// Prompts the run's levels plan, warm-up included (null with `--qps auto`).
    pub prompts_planned: Option<u64>,
    /// Distinct rows those send, and passes over the dataset.
    pub rows_sent: Option<u64>,
    pub passes: Option<u64>,
    /// Tokens a marker adds to a prompt, where markers are sent.
    pub marker_tokens: Option<String>,
    /// What the probe before the first level sends.
    pub probe: String,
    /// Why a prefix cache may answer on purpose (`--random-prefix-len`, hash ids, a pool,
    /// `--unique-prompts off`).
    pub shared_on_purpose: Option<String>,
}

impl Report {
    /// The start line's part: "6 rows, 151 prompts (26 passes): a marker of the pass …".
    pub fn line(&self) -> String {
        let mut out = String::from("prompts: ");
        match (self.rows, self.prompts_planned, self.passes) {
            (Some(r), Some(p), Some(k)) => out.push_str(&format!(
                "{p} from {r} row{} ({k} pass{})",
                if r == 1 { "" } else { "s" },
                if k == 1 { "" } else { "es" }
            )),
            (Some(r), _, _) => out.push_str(&format!("{r} row{}", if r == 1 { "" } else { "s" })),
            (None, Some(p), _) => out.push_str(&format!("{p} drawn")),
            (None, None, _) => out.push_str("drawn"),
        }
        match self.applied.strip_prefix("none needed: ") {
            Some(why) => out.push_str(&format!("; no repeats to keep apart: {why}")),
            None => out.push_str(&format!("; repeats kept apart by {}", self.applied)),
        }
        out
    }
}

/// The marker of pass `k`: its number in vocabulary words, least significant first (a word
/// per 1024×), each with its leading space, then a line break. With the vocabulary's
/// single-token words it adds [`marker_tokens`] tokens.
pub fn marker(k: u64) -> String {
    let mut out = String::new();
    let mut n = k;
    loop {
        out.push(' ');
        out.push_str(WORDS[(n % 1024) as usize]);
        n /= 1024;
        if n == 0 {
            break;
        }
    }
    out.push('\n');
    out
}

/// Tokens the marker of pass `k` adds: one per word, one for the line break.
pub fn marker_tokens(k: u64) -> u32 {
    let mut words = 1;
    let mut n = k / 1024;
    while n > 0 {
        words += 1;
        n /= 1024;
    }
    words + 1
}

/// The body field that salts pass `k` (with the comma that follows it, as the body's first).
pub fn salt(k: u64) -> String {
    format!("\"cache_salt\":\"qpsbench-pass-{k}\",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: UniquePrompts, source: Source) -> Uniqueness {
        Uniqueness {
            mode,
            source,
            rows: 6,
        }
    }

    #[test]
    fn prompts_walk_the_rows_pass_after_pass() {
        let u = rule(UniquePrompts::Auto, Source::Samples);
        assert_eq!(u.row_and_pass(0), (0, 0));
        assert_eq!(u.row_and_pass(1), (0, 1));
        assert_eq!(u.row_and_pass(6), (5, 1));
        assert_eq!(u.row_and_pass(7), (0, 2));
        assert_eq!(u.row_and_pass(151), (0, 26));
        assert_eq!(
            rule(UniquePrompts::Auto, Source::Drawn).row_and_pass(99),
            (0, 1)
        );
    }

    #[test]
    fn each_mode_adds_what_it_says() {
        let auto = rule(UniquePrompts::Auto, Source::Samples);
        assert_eq!(auto.addition(1), Addition::None);
        assert_eq!(auto.addition(2), Addition::Marker(2));
        assert_eq!(auto.addition(0), Addition::Marker(0));
        let pool = rule(UniquePrompts::Auto, Source::SyntheticRows);
        assert_eq!(pool.addition(3), Addition::None);
        assert_eq!(pool.addition(0), Addition::Marker(0));
        assert_eq!(
            rule(UniquePrompts::Prefix, Source::Samples).addition(1),
            Addition::Marker(1)
        );
        assert_eq!(
            rule(UniquePrompts::Salt, Source::Samples).addition(4),
            Addition::Salt(4)
        );
        assert_eq!(
            rule(UniquePrompts::Off, Source::Samples).addition(1),
            Addition::None
        );
        // The probe's passes are marked whatever the mode.
        assert_eq!(
            rule(UniquePrompts::Off, Source::Samples).addition(0),
            Addition::Marker(0)
        );
        assert_eq!(
            rule(UniquePrompts::Auto, Source::Drawn).addition(0),
            Addition::None
        );
    }

    #[test]
    fn markers_differ_by_pass_and_count_their_tokens() {
        assert_eq!(marker(0), format!(" {}\n", WORDS[0]));
        assert_eq!(marker(1025), format!(" {} {}\n", WORDS[1], WORDS[1]));
        assert_ne!(marker(2), marker(3));
        assert_eq!((marker_tokens(5), marker_tokens(1024)), (2, 3));
        assert_eq!(salt(3), "\"cache_salt\":\"qpsbench-pass-3\",");
        let r = rule(UniquePrompts::Auto, Source::Samples).report(Some(151), None);
        assert_eq!(
            (r.rows, r.passes, r.rows_sent),
            (Some(6), Some(26), Some(6))
        );
        assert!(
            r.line().starts_with("prompts: 151 from 6 rows (26 passes)"),
            "{}",
            r.line()
        );
        let once = rule(UniquePrompts::Auto, Source::Samples).report(Some(4), None);
        assert_eq!((once.passes, once.marker_tokens), (Some(1), None));
        let drawn = rule(UniquePrompts::Auto, Source::Drawn).report(None, None);
        assert_eq!(drawn.rows, None);
        assert!(drawn.applied.starts_with("none needed"));
    }
}
