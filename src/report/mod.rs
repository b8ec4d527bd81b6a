//! Layer 11 of 12 (`docs/architecture.md`, "Code map"): uses only the layers before it, from
//! `foundation` to `stats`; `commands` and the layers after it use it.
//!
//! Reporting: the console table (`table`), the results folder with its JSON files (`results`),
//! the saturation analysis (`analysis`: the rules) and the verdict built on it (`recommend`,
//! `summary.json`), the PNG (`plot`, with its
//! `summary_panel`), the timeline's picture (`timeline_plot`), the sessions' picture (`turns_plot`), what the pictures share
//! (`style`), and the live progress line during a level (`progress`). Data flow: `bench` hands each finished level's `LevelStats`
//! here.

pub mod analysis;
pub mod glyphs;
pub mod plot;
pub mod progress;
pub mod recommend;
pub mod results;
pub mod style;
mod summary_panel;
pub mod table;
pub mod timeline_plot;
pub mod turns_plot;
