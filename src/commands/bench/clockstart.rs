//! Part of stages 1 and 4, the common clock (`--start-at`, `--start-in`, `--cooldown`): the
//! first level starts at a wall-clock instant, and level i at start + i × (warm-up + duration +
//! cooldown), so shards on several boxes line up on the server without talking to each other.
//! A level that cannot start on time (the previous one still draining) starts late and records
//! `start_lag_s`; a process that starts after the run began joins the level under way, leaving
//! out the arrivals already due (`missed_requests`), and skips the levels already over.

use crate::cli::BenchArgs;
use crate::foundation::clock::{now_ns, unix_now_s, unix_to_mono_ns};
use crate::foundation::error::{Result, UserError};
use crate::foundation::flag_ranges::{check, Low, MAX_SECONDS};

/// The run's planned timetable.
#[derive(Debug, Clone, Copy)]
pub struct Timetable {
    /// The first level's start: Unix seconds, and the same instant on the monotonic clock.
    pub start_unix_s: f64,
    pub start_ns: u64,
    /// From one level's start to the next's, seconds.
    pub period_s: f64,
}

/// Where a level stands against its planned start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Start at this monotonic instant (now or later).
    At(u64),
    /// Already under way (a late joiner): start at the planned instant, leaving out what is due.
    Join(u64),
    /// Planned for this instant but the previous level ran over: start now, this late.
    Late { planned_ns: u64 },
}

impl Slot {
    /// The level's planned start (monotonic ns), whether or not it started then: shards count
    /// their per-request times from it, so their records line up.
    pub fn planned_ns(self) -> u64 {
        match self {
            Slot::At(t) | Slot::Join(t) => t,
            Slot::Late { planned_ns } => planned_ns,
        }
    }
}

/// `--start-at` / `--start-in` and `--cooldown`, checked: `None` without a start time.
pub fn plan(args: &BenchArgs, level_s: f64) -> Result<Option<Timetable>> {
    let cooldown = check(
        "--cooldown",
        args.boxes.cooldown,
        Low::From(0.0),
        MAX_SECONDS,
        "a number of seconds",
    )?;
    let now = unix_now_s();
    let start_unix_s = match (args.boxes.start_at, args.boxes.start_in) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(UserError::input(
                "--start-at and --start-in both given: give one start time",
            ))
        }
        (Some(at), None) => check("--start-at", at, Low::Above(0.0), 4.0e9, "Unix seconds")?,
        (None, Some(delay)) => {
            now + check(
                "--start-in",
                delay,
                Low::From(0.0),
                MAX_SECONDS,
                "a number of seconds",
            )?
        }
    };
    let period_s = level_s + cooldown;
    // The levels' count (their rates are checked elsewhere): none known for `--qps auto`.
    let auto = args.qps.len() == 1 && args.qps[0].trim().eq_ignore_ascii_case("auto");
    let levels = match (args.workload.replay, auto) {
        (true, _) => Some(1),
        (false, false) => Some(args.qps.len()),
        (false, true) => None,
    };
    check_window(start_unix_s, now, levels, (level_s, period_s))?;
    Ok(Some(Timetable {
        start_unix_s,
        start_ns: unix_to_mono_ns(start_unix_s),
        period_s,
    }))
}

/// The start must leave something to run, and not be a typo far ahead: a timetable already
/// over (every level's window past), or a start more than a day ahead, is refused.
fn check_window(
    start: f64,
    now: f64,
    levels: Option<usize>,
    (level_s, period_s): (f64, f64),
) -> Result<()> {
    const DAY_S: f64 = 86_400.0;
    if start - now > DAY_S {
        return Err(UserError::input(format!(
            "--start-at {start}: that is {:.1} h from now, more than a day ahead; expected an instant within the next day (e.g. $(date -d '+2 min' +%s))",
            (start - now) / 3600.0
        )));
    }
    if let Some(n) = levels {
        let end = start + (n.saturating_sub(1)) as f64 * period_s + level_s;
        if end <= now {
            return Err(UserError::input(format!(
                "--start-at {start}: the whole timetable ({n} level(s), {period_s} s apart) was over {:.0} s ago, so nothing would run; expected a start in the future (e.g. $(date -d '+2 min' +%s)), or one whose levels are still under way",
                now - end
            )));
        }
    }
    Ok(())
}

impl Timetable {
    /// Level `i`'s planned start (monotonic ns).
    pub fn planned_ns(&self, i: usize) -> u64 {
        self.start_ns + (i as f64 * self.period_s * 1e9) as u64
    }

    /// Levels already over when this process starts (`level_s` each): a late joiner skips them.
    pub fn levels_over(&self, level_s: f64) -> usize {
        let now = now_ns();
        let mut i = 0;
        while self.planned_ns(i) + (level_s * 1e9) as u64 <= now && i < 1_000_000 {
            i += 1;
        }
        i
    }

    /// How level `i` starts, given that `first` says whether it is this process's first level.
    pub fn slot(&self, i: usize, first: bool, lead_ns: u64) -> Slot {
        let planned_ns = self.planned_ns(i);
        let earliest = now_ns() + lead_ns;
        if planned_ns >= earliest {
            Slot::At(planned_ns)
        } else if first {
            Slot::Join(planned_ns)
        } else {
            Slot::Late { planned_ns }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timetable_over_or_a_day_ahead_is_refused() {
        let now = 1_000_000.0;
        let e = check_window(1000.0, now, Some(2), (10.0, 20.0)).unwrap_err();
        assert!(e.message.contains("was over 998970 s ago"), "{}", e.message);
        assert!(
            check_window(now - 25.0, now, Some(2), (10.0, 20.0)).is_ok(),
            "level 2 runs on"
        );
        let e = check_window(now + 90_000.0, now, Some(1), (10.0, 20.0)).unwrap_err();
        assert!(e.message.contains("25.0 h from now"), "{}", e.message);
        assert!(check_window(now + 60.0, now, None, (10.0, 20.0)).is_ok());
    }

    #[test]
    fn levels_are_planned_a_period_apart_and_late_ones_say_so() {
        let t = Timetable {
            start_unix_s: 0.0,
            start_ns: now_ns() + 5_000_000_000,
            period_s: 12.0,
        };
        assert_eq!(t.planned_ns(2) - t.planned_ns(0), 24_000_000_000);
        assert!(matches!(t.slot(0, true, 1_000), Slot::At(_)));
        assert_eq!(t.levels_over(10.0), 0);
        let past = Timetable {
            start_ns: now_ns().saturating_sub(30_000_000_000),
            ..t
        };
        // Started 30 s ago, 12 s per level of 10 s: levels 0 and 1 are over, level 2 is under way.
        assert_eq!(past.levels_over(10.0), 2);
        assert!(matches!(past.slot(2, true, 1_000), Slot::Join(_)));
        assert!(matches!(past.slot(2, false, 1_000), Slot::Late { .. }));
    }
}
