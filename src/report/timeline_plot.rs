//! The timeline picture (`timeline.png`, with `--plot` and `qpsbench plot DIR`): one strip per
//! level, on a time axis shared by all strips (seconds since the level's measured window
//! started). Each strip has three charts: the achieved send rate and completion rate (per
//! second), requests in flight (and the server's running and waiting requests, when
//! `--server-metrics` scraped them), and TTFT p50/p99 of the requests completed in each second;
//! where the server reported cached prompt tokens, a fourth chart shows the share of each
//! second's prompt tokens that came from its prefix cache. The other server series are in
//! `timeline.jsonl`.
//!
//! Data flow: the rows of `timeline.jsonl` (`timeline::Row`) → PNG.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::style::{self, err, register_font, FONT, LABEL_PX, TICK_PX, TITLE_PX};
use crate::recording::timeline::Row;

const WIDTH: u32 = 2400;
const STRIP_PX: u32 = 380;
const TOP_PX: u32 = 70;
/// The series' colors (tests look for them inside each strip).
pub const SENT: RGBColor = style::BLUE;
pub const DONE: RGBColor = style::GREEN;
pub const IN_FLIGHT: RGBColor = style::PURPLE;
pub const WAITING: RGBColor = style::RED;
pub const RUNNING: RGBColor = style::ORANGE;
pub const TTFT_P50: RGBColor = style::CYAN;
pub const TTFT_P99: RGBColor = style::BROWN;
pub const CACHE_HIT: RGBColor = style::PINK;

/// The series of the running and waiting requests, by server.
use crate::servermetrics::{QUEUES as WAITING_NAMES, RUNNING as RUNNING_NAMES};

/// The picture's height for `levels` strips.
pub fn height(levels: usize) -> u32 {
    TOP_PX + STRIP_PX * levels.max(1) as u32
}

/// Where strip `i` lies, in pixel rows.
pub fn strip_rows(i: usize) -> std::ops::Range<u32> {
    let top = TOP_PX + STRIP_PX * i as u32;
    top..top + STRIP_PX
}

/// The picture's file name, beside `timeline.jsonl`.
pub const FILE: &str = "timeline.png";

/// Renders `dir/timeline.jsonl` into `dir/timeline.png` (beside, then renamed, so an existing
/// picture is replaced whole or not at all). `Ok(None)` when the folder has no timeline (runs
/// made before it existed).
pub fn render_dir(dir: &Path, title: &str) -> Result<Option<std::path::PathBuf>, String> {
    let source = dir.join("timeline.jsonl");
    let Ok(text) = std::fs::read_to_string(&source) else {
        return Ok(None);
    };
    let rows = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Row>(l)
                .map_err(|e| format!("{} line {}: {e}", source.display(), i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(None);
    }
    style::replace_png(dir, FILE, |tmp| render(tmp, &rows, title)).map(Some)
}

/// Renders `rows` (any order; levels from 1) to `path`.
pub fn render(path: &Path, rows: &[Row], title: &str) -> Result<(), String> {
    register_font();
    let mut levels: Vec<usize> = rows.iter().map(|r| r.level).collect();
    levels.sort_unstable();
    levels.dedup();
    let t_max = rows.iter().map(|r| r.t_s).max().unwrap_or(0) as f64 + 1.0;
    let cached = rows.iter().any(|r| r.counts.cached_prompt_tokens.is_some());
    let root = super::style::png_area(path, (WIDTH, height(levels.len())));
    root.fill(&WHITE).map_err(err)?;
    let (head, body) = root.split_vertically(TOP_PX);
    head.titled(title, (FONT, TITLE_PX).into_font().style(FontStyle::Bold))
        .map_err(err)?;
    for (strip, level) in body
        .split_evenly((levels.len().max(1), 1))
        .iter()
        .zip(&levels)
    {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.level == *level).collect();
        let charts = strip.split_evenly((1, if cached { 4 } else { 3 }));
        rates(&charts[0], *level, &mine, t_max)?;
        in_flight(&charts[1], *level, &mine, t_max)?;
        ttft(&charts[2], *level, &mine, t_max)?;
        if cached {
            cache_hits(&charts[3], *level, &mine, t_max)?;
        }
    }
    root.present().map_err(err)
}

use super::style::{Area, Chart};

/// One chart of a strip: caption, axes from 0 to `t_max` s and 0 to `y_max`.
fn chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: String,
    t_max: f64,
    y_max: f64,
    y_desc: &str,
) -> Result<Chart<'a, 'b>, String> {
    let mut c = ChartBuilder::on(area)
        .caption(caption, (FONT, LABEL_PX))
        .margin(14)
        .x_label_area_size(56)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(err)?;
    c.configure_mesh()
        .y_label_formatter(&super::style::axis_format(y_max))
        .x_desc("s since the level's window started")
        .y_desc(y_desc)
        .label_style((FONT, TICK_PX - 6))
        .axis_desc_style((FONT, TICK_PX - 4))
        .draw()
        .map_err(err)?;
    Ok(c)
}

/// A line of (second, value) points, each plotted mid-second.
fn line(rows: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Vec<(f64, f64)> {
    rows.iter()
        .filter_map(|r| f(r).map(|v| (r.t_s as f64 + 0.5, v)))
        .collect()
}

fn top(series: &[&[(f64, f64)]]) -> f64 {
    let m = series
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if m > 0.0 {
        // A strip's charts are short, and their legends take a larger share of them.
        m * super::style::HEADROOM * 1.2
    } else {
        1.0
    }
}

fn legend<'a, 'b: 'a>(c: &mut Chart<'a, 'b>, at: SeriesLabelPosition) -> Result<(), String> {
    style::legend!(c, at, TICK_PX - 6)
}

/// Draws `series` (label, color, points) on chart `c`, with the legend at `at`. A series with
/// no point (a server series that was not collected) is left out, legend entry and all.
macro_rules! draw_lines {
    ($c:expr, $at:expr, $($label:expr, $color:expr, $points:expr);+ $(;)?) => {{
        $(
            let color = $color;
            if !$points.is_empty() {
                $c.draw_series(LineSeries::new($points.iter().copied(), color.stroke_width(3)))
                    .map_err(err)?
                    .label($label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
            }
        )+
        legend(&mut $c, $at)?;
    }};
}

fn rates(area: &Area<'_>, level: usize, rows: &[&Row], t_max: f64) -> Result<(), String> {
    let sent = line(rows, |r| Some(r.counts.sent as f64));
    let done = line(rows, |r| {
        Some((r.counts.ok + r.counts.failed.values().sum::<u64>()) as f64)
    });
    let y = top(&[&sent, &done]);
    let mut c = chart(
        area,
        format!("Level {level}: requests per second"),
        t_max,
        y,
        "req/s",
    )?;
    draw_lines!(c, SeriesLabelPosition::UpperRight, "sent", SENT, sent; "completed (ok + failed)", DONE, done);
    Ok(())
}

fn in_flight(area: &Area<'_>, level: usize, rows: &[&Row], t_max: f64) -> Result<(), String> {
    let server = |names: &'static [&'static str]| {
        move |r: &Row| names.iter().find_map(|n| r.server.get(*n).copied())
    };
    let flight = line(rows, |r| Some(r.in_flight as f64));
    let running = line(rows, server(RUNNING_NAMES));
    let waiting = line(rows, server(WAITING_NAMES));
    let y = top(&[&flight, &running, &waiting]);
    let mut c = chart(
        area,
        format!("Level {level}: in flight"),
        t_max,
        y,
        "requests",
    )?;
    draw_lines!(c, SeriesLabelPosition::UpperRight,
        "in flight (client)", IN_FLIGHT, flight;
        "running (server)", RUNNING, running;
        "waiting (server)", WAITING, waiting);
    Ok(())
}

fn ttft(area: &Area<'_>, level: usize, rows: &[&Row], t_max: f64) -> Result<(), String> {
    let p50 = line(rows, |r| r.ttft_p50);
    let p99 = line(rows, |r| r.ttft_p99);
    let y = top(&[&p50, &p99]);
    let mut c = chart(
        area,
        format!("Level {level}: TTFT of completions"),
        t_max,
        y,
        "s",
    )?;
    draw_lines!(c, SeriesLabelPosition::UpperLeft, "TTFT p50", TTFT_P50, p50; "TTFT p99", TTFT_P99, p99);
    Ok(())
}

/// The share of each second's prompt tokens the server took from its prefix cache, %.
fn cache_hits(area: &Area<'_>, level: usize, rows: &[&Row], t_max: f64) -> Result<(), String> {
    let share = line(rows, |r| {
        let cached = r.counts.cached_prompt_tokens?;
        (r.counts.prompt_tokens > 0).then(|| cached as f64 * 100.0 / r.counts.prompt_tokens as f64)
    });
    let mut c = chart(
        area,
        format!("Level {level}: prefix-cache hits"),
        t_max,
        105.0,
        "% of prompt tokens",
    )?;
    draw_lines!(
        c,
        SeriesLabelPosition::UpperLeft,
        "cached prompt tokens",
        CACHE_HIT,
        share
    );
    Ok(())
}
