//! Reporting: the console table (`table`), the results folder with its JSON files (`results`),
//! the saturation analysis (`analysis`, `summary.json`), the PNG (`plot`), and the live progress
//! line during a level (`progress`). Data flow: `bench` hands each finished level's `LevelStats`
//! here.

pub mod analysis;
pub mod plot;
pub mod progress;
pub mod results;
pub mod table;
pub mod timeline_plot;
