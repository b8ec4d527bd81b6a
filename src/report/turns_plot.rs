//! The sessions picture (`turns.png`, written beside the main PNG when levels sent sessions):
//! by turn (1, 2, …, `≥8`), the TTFT p50 and p95 of each level, and the share of each turn's
//! prompt tokens that came from the server's prefix cache — turn 1 is cold, later turns re-send
//! a history the server may have cached.
//!
//! Data flow: the levels' `per_turn` (`analysis::LevelView`, from the results or the JSON
//! files) → PNG.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::analysis::{LevelView, TurnView};
use super::style::{self, err, register_font, Area, FONT, LABEL_PX, TICK_PX, TITLE_PX};

const WIDTH: u32 = 2400;
const HEIGHT: u32 = 900;
const TOP_PX: u32 = 70;
/// The picture's file name, in the run's folder.
pub const FILE: &str = "turns.png";

/// Renders `dir/turns.png` from `levels` (beside, then renamed, so an existing picture is
/// replaced whole or not at all). `Ok(None)` when no level sent sessions.
pub fn render_dir(
    dir: &Path,
    levels: &[LevelView],
    title: &str,
) -> Result<Option<PathBuf>, String> {
    if !levels
        .iter()
        .any(|l| l.per_turn.as_ref().is_some_and(|t| !t.is_empty()))
    {
        return Ok(None);
    }
    style::replace_png(dir, FILE, |tmp| render(tmp, levels, title)).map(Some)
}

/// A level's line: its color, from the palette.
fn color(i: usize) -> RGBColor {
    style::PALETTE[i % style::PALETTE.len()]
}

/// Turn `≥8` is drawn at 8.
fn x_of(t: &TurnView) -> f64 {
    t.turn.trim_start_matches('≥').parse().unwrap_or(0.0)
}

fn render(path: &Path, levels: &[LevelView], title: &str) -> Result<(), String> {
    register_font();
    let root = super::style::png_area(path, (WIDTH, HEIGHT));
    root.fill(&WHITE).map_err(err)?;
    let (head, body) = root.split_vertically(TOP_PX);
    head.titled(
        &format!("{title} — sessions by turn"),
        (FONT, TITLE_PX).into_font().style(FontStyle::Bold),
    )
    .map_err(err)?;
    let charts = body.split_evenly((1, 2));
    let ttft = |t: &TurnView, key: &str| t.ttft.get(key).copied().flatten();
    chart(
        &charts[0],
        levels,
        "TTFT by turn (p50 solid, p95 dashed)",
        "s",
        |t| (ttft(t, "p50"), ttft(t, "p95")),
    )?;
    chart(
        &charts[1],
        levels,
        "Prompt tokens from the prefix cache",
        "%",
        |t| (t.prompt_cache_hit_share.map(|s| s * 100.0), None),
    )?;
    root.present().map_err(err)
}

/// One chart: a line per level of `value(turn)`'s first figure, and its second dashed.
fn chart(
    area: &Area<'_>,
    levels: &[LevelView],
    caption: &str,
    y_desc: &str,
    value: impl Fn(&TurnView) -> (Option<f64>, Option<f64>),
) -> Result<(), String> {
    let points = |l: &LevelView, second: bool| -> Vec<(f64, f64)> {
        l.per_turn
            .iter()
            .flatten()
            .filter_map(|t| {
                let (a, b) = value(t);
                Some((x_of(t), if second { b? } else { a? }))
            })
            .collect()
    };
    let y_max = levels
        .iter()
        .flat_map(|l| points(l, false).into_iter().chain(points(l, true)))
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.15;
    let last = levels
        .iter()
        .flat_map(|l| l.per_turn.iter().flatten().map(x_of))
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(area)
        .caption(caption, (FONT, LABEL_PX))
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(0.5..last + 0.5, 0.0..y_max)
        .map_err(err)?;
    let turn_label = |x: &f64| match x.round() as u32 {
        8 => "≥8".to_string(),
        n => n.to_string(),
    };
    c.configure_mesh()
        .x_desc("turn")
        .y_desc(y_desc)
        .x_labels(last as usize)
        .x_label_formatter(&turn_label)
        .label_style((FONT, TICK_PX - 4))
        .axis_desc_style((FONT, TICK_PX - 2))
        .draw()
        .map_err(err)?;
    for (i, l) in levels.iter().enumerate() {
        let col = color(i);
        let solid = points(l, false);
        c.draw_series(LineSeries::new(solid.iter().copied(), col.stroke_width(4)))
            .map_err(err)?
            .label(format!(
                "QPS {}",
                crate::foundation::rate::text(l.qps_target)
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], col.stroke_width(4)));
        c.draw_series(solid.iter().map(|&p| Circle::new(p, 6, col.filled())))
            .map_err(err)?;
        let dashed = points(l, true);
        c.draw_series(DashedLineSeries::new(dashed, 10, 8, col.stroke_width(2)))
            .map_err(err)?;
    }
    style::legend!(c, SeriesLabelPosition::UpperRight, TICK_PX - 4)
}
