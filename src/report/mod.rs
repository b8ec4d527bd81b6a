//! Reporting: the console table (`table`), the results folder with its JSON files (`results`)
//! and the saturation analysis (`analysis`, `summary.json`). Data flow: `bench` hands each
//! finished level's `LevelStats` here.

pub mod analysis;
pub mod plot;
pub mod results;
pub mod table;
