//! Reporting: the console table (`table`) and the results folder with its JSON files
//! (`results`). Data flow: `bench` hands each finished level's `LevelStats` here.

pub mod results;
pub mod table;
