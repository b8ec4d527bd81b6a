//! The picture (`--plot`, `qpsbench plot DIR`): the spec's 3×2 PNG, 3200×1200 px (32×12 inches at
//! 100 dpi) — (1) target vs actual and throughput QPS with the success rate, (2) TTFT, (3) E2E
//! latency and (4) tokens/sec percentiles per level, (5) the summary and recommendations as text
//! (`summary_panel`),
//! (6) errors per level by category as stacked bars. A client-limited level is shaded and
//! labelled in every chart and listed in the text.
//!
//! Data flow: the levels as saved (`analysis::LevelView`) and the `analysis::Summary` → PNG.
//! Levels sit at evenly spaced positions labelled with their target QPS, so 1, 5, 10, 20 are as
//! readable as 100, 1000. The font (DejaVu Sans) is compiled in: no system font library is needed.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use super::analysis::Criteria;
use super::analysis::LevelView;
use super::recommend::Summary;
use super::style::{
    err, legend, register_font, Area, BLUE, BROWN, CYAN, FONT, GRAY, GREEN, HEADROOM, LABEL_PX,
    LIMITED, OLIVE, ORANGE, PINK, PURPLE, RED, TEXT_PX, TICK_PX, TITLE_PX,
};

const WIDTH: u32 = 3200;
const HEIGHT: u32 = 1200;
const PCTS: [(&str, RGBColor); 4] = [("p50", BLUE), ("p90", GREEN), ("p95", ORANGE), ("p99", RED)];
const ERROR_COLORS: [RGBColor; 8] = [RED, ORANGE, PURPLE, BROWN, PINK, GRAY, OLIVE, CYAN];

/// Renders the PNG to `path`. `levels` may be in any order and any number (one or more).
pub fn render(
    path: &Path,
    levels: &[LevelView],
    summary: &Summary,
    c: &Criteria,
    title: &str,
) -> Result<(), String> {
    register_font();
    let mut levels: Vec<&LevelView> = levels.iter().collect();
    levels.sort_by(|a, b| a.qps_target.total_cmp(&b.qps_target));
    let root = super::style::png_area(path, (WIDTH, HEIGHT));
    root.fill(&WHITE).map_err(err)?;
    let root = root
        .margin(12, 0, 0, 0)
        .titled(title, (FONT, TITLE_PX).into_font().style(FontStyle::Bold))
        .map_err(err)?;
    let panels = root.split_evenly((2, 3));
    qps_panel(&panels[0], &levels)?;
    let embeddings = levels.iter().any(|l| l.embeddings.is_some());
    if embeddings {
        // Not streamed: no first token, no output tokens; inputs per second instead.
        let why = "not streamed: an embedding has no first token";
        message_panel(&panels[1], "TTFT (s)", why, &BLACK)?;
        inputs_panel(&panels[3], &levels)?;
    } else {
        let slo = c.slo_ttft_s.map(|s| (s, c.slo_percentile));
        percentile_panel(&panels[1], &levels, "TTFT (s)", slo, |l, k| {
            l.ttft.get(k).copied().flatten()
        })?;
        percentile_panel(
            &panels[3],
            &levels,
            "Tokens/sec per request",
            None,
            |l, k| l.tokens_per_sec.get(k).copied().flatten(),
        )?;
    }
    let slo = c.slo_e2e_s.map(|s| (s, c.slo_percentile));
    percentile_panel(&panels[2], &levels, "E2E latency (s)", slo, |l, k| {
        l.e2e_latency.get(k).copied().flatten()
    })?;
    super::summary_panel::draw(&panels[4], summary)?;
    errors_panel(&panels[5], &levels)?;
    root.present().map_err(err)
}

/// X axis: level i at position i, labelled with its target QPS.
fn x_range(n: usize) -> std::ops::Range<f64> {
    -0.5..(n as f64 - 0.5)
}

fn qps_label(levels: &[&LevelView], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() > 1e-6 || i < 0.0 {
        return String::new();
    }
    levels
        .get(i as usize)
        .map(|l| crate::foundation::rate::text(l.qps_target))
        .unwrap_or_default()
}

/// Shades client-limited levels and labels them.
fn mark_limited<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    levels: &[&LevelView],
    y_top: f64,
) -> Result<(), String> {
    for (i, l) in levels.iter().enumerate().filter(|(_, l)| l.client_limited) {
        let x = i as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - 0.45, 0.0), (x + 0.45, y_top)],
                LIMITED.mix(0.12).filled(),
            )))
            .map_err(err)?;
        // Two short lines centred on the level, so the label fits its band even at the edge.
        let style = (FONT, 22)
            .into_font()
            .color(&LIMITED)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (line, at) in [("client-", 0.98), ("limited", 0.91)] {
            chart
                .draw_series(std::iter::once(Text::new(
                    line,
                    (x, y_top * at),
                    style.clone(),
                )))
                .map_err(err)?;
        }
        let _ = l;
    }
    Ok(())
}

type LevelChart<'a, 'b> = super::style::Chart<'a, 'b>;

/// A single-axis chart over the levels: caption, mesh (x labelled with each level's QPS; y from
/// 0 to `y_max`, described and formatted as given, in a label area `y_px` wide) and the
/// client-limited shading.
fn level_chart<'a, 'b>(
    area: &'a Area<'b>,
    caption: &str,
    levels: &[&LevelView],
    (y_max, y_desc, y_px): (f64, &str, u32),
    (y_fmt, y_labels): (&dyn Fn(&f64) -> String, usize),
) -> Result<LevelChart<'a, 'b>, String> {
    let n = levels.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, TITLE_PX))
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(y_px)
        .build_cartesian_2d(x_range(n), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(n.min(24))
        .x_label_formatter(&|x| qps_label(levels, *x))
        .y_label_formatter(y_fmt)
        .y_labels(y_labels)
        .x_desc("target QPS")
        .y_desc(y_desc)
        .label_style((FONT, TICK_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .draw()
        .map_err(err)?;
    mark_limited(&mut chart, levels, y_max)?;
    Ok(chart)
}

fn no_data(area: &Area<'_>, what: &str) -> Result<(), String> {
    message_panel(area, what, "no successful request at any level", &LIMITED)
}

/// A panel that only says `message` under its caption `what`.
fn message_panel(
    area: &Area<'_>,
    what: &str,
    message: &str,
    color: &RGBColor,
) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    area.draw(&Text::new(
        what.to_string(),
        (w as i32 / 2, 30),
        (FONT, TITLE_PX)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(err)?;
    area.draw(&Text::new(
        message.to_string(),
        (w as i32 / 2, h as i32 / 2),
        (FONT, TEXT_PX + 4)
            .into_font()
            .color(color)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(err)
}

fn qps_panel(area: &Area<'_>, levels: &[&LevelView]) -> Result<(), String> {
    let n = levels.len();
    let y_max = levels
        .iter()
        .flat_map(|l| [l.qps_target, l.actual_qps, l.throughput_qps])
        .fold(0.0f64, f64::max)
        .max(1.0)
        * HEADROOM;
    let fmt = super::style::axis_format(y_max);
    let mut chart = ChartBuilder::on(area)
        .caption("Target vs actual QPS, success rate", (FONT, TITLE_PX))
        .margin(20)
        .x_label_area_size(70)
        .y_label_area_size(110)
        .right_y_label_area_size(110)
        .build_cartesian_2d(x_range(n), 0.0..y_max)
        .map_err(err)?
        .set_secondary_coord(x_range(n), 0.0..100.0 * HEADROOM);
    chart
        .configure_mesh()
        .x_labels(n.min(24))
        .x_label_formatter(&|x| qps_label(levels, *x))
        .y_label_formatter(&fmt)
        .x_desc("target QPS")
        .y_desc("QPS")
        .label_style((FONT, TICK_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_label_formatter(&|v| {
            if *v <= 100.0 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_desc("success %")
        .label_style((FONT, TICK_PX))
        .axis_desc_style((FONT, LABEL_PX))
        .draw()
        .map_err(err)?;
    mark_limited(&mut chart, levels, y_max)?;
    type Series = (&'static str, RGBColor, Box<dyn Fn(&LevelView) -> f64>);
    let series: [Series; 3] = [
        ("target QPS", GRAY, Box::new(|l| l.qps_target)),
        ("actual QPS (sent)", BLUE, Box::new(|l| l.actual_qps)),
        (
            "throughput QPS (completed)",
            GREEN,
            Box::new(|l| l.throughput_qps),
        ),
    ];
    for (name, color, f) in series {
        let pts: Vec<(f64, f64)> = levels
            .iter()
            .enumerate()
            .map(|(i, l)| (i as f64, f(l)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(4)))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 40, y)], color.stroke_width(4))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 8, color.filled())))
            .map_err(err)?;
    }
    let red = RED;
    let pts: Vec<(f64, f64)> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.success_rate))
        .collect();
    chart
        .draw_secondary_series(LineSeries::new(pts.clone(), red.stroke_width(4)))
        .map_err(err)?
        .label("success % (right axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 40, y)], red.stroke_width(4)));
    chart
        .draw_secondary_series(
            pts.into_iter()
                .map(|p| TriangleMarker::new(p, 10, red.filled())),
        )
        .map_err(err)?;
    legend!(chart, SeriesLabelPosition::UpperLeft, TICK_PX - 2)
}

/// The P50/P90/P95/P99 lines of one figure over the levels, with the SLO (value, percentile)
/// drawn as a labelled dashed line where one applies.
fn percentile_panel(
    area: &Area<'_>,
    levels: &[&LevelView],
    what: &str,
    slo: Option<(f64, f64)>,
    get: impl Fn(&LevelView, &str) -> Option<f64>,
) -> Result<(), String> {
    let values: Vec<f64> = levels
        .iter()
        .flat_map(|l| PCTS.iter().filter_map(|(k, _)| get(l, k)))
        .filter(|v| v.is_finite())
        .collect();
    if values.is_empty() {
        return no_data(area, what);
    }
    let top = values.iter().copied().fold(0.0f64, f64::max);
    // An SLO adds a legend line: a little more room above, so that the legend stays clear of it.
    let room = if slo.is_some() {
        HEADROOM * 1.2
    } else {
        HEADROOM
    };
    let y_max = top.max(slo.map_or(0.0, |s| s.0)).max(1e-3) * room;
    let mut chart = level_chart(
        area,
        &format!("{what}: P50 / P90 / P95 / P99"),
        levels,
        (y_max, what, 130),
        (&super::style::axis_format(y_max), 10),
    )?;
    if let Some((value, p)) = slo {
        let n = levels.len() as f64;
        let black = RGBColor(0, 0, 0);
        let dashes: Vec<PathElement<(f64, f64)>> = (0..((n + 1.0) * 8.0) as usize)
            .map(|k| {
                let x = -0.5 + k as f64 / 8.0;
                PathElement::new(
                    vec![(x, value), (x + 1.0 / 16.0, value)],
                    black.stroke_width(3),
                )
            })
            .collect();
        chart
            .draw_series(dashes)
            .map_err(err)?
            .label(format!(
                "SLO: {} ≤ {value} s",
                crate::stats::pct_key(p).to_uppercase()
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], black.stroke_width(3))
            });
    }
    for (key, color) in PCTS {
        // A level without the value (no successful request) breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, l) in levels.iter().enumerate() {
            match get(l, key).filter(|v| v.is_finite()) {
                Some(v) => runs.last_mut().expect("one run").push((i as f64, v)),
                None => runs.push(Vec::new()),
            }
        }
        let mut labelled = false;
        for run in runs.into_iter().filter(|r| !r.is_empty()) {
            let s = chart
                .draw_series(LineSeries::new(run.clone(), color.stroke_width(4)))
                .map_err(err)?;
            if !labelled {
                s.label(key.to_uppercase()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 40, y)], color.stroke_width(4))
                });
                labelled = true;
            }
            chart
                .draw_series(run.into_iter().map(|p| Circle::new(p, 7, color.filled())))
                .map_err(err)?;
        }
    }
    legend!(chart, SeriesLabelPosition::UpperLeft, TICK_PX - 2)
}

/// Embeddings: the inputs embedded per second at each level (each request's batch).
fn inputs_panel(area: &Area<'_>, levels: &[&LevelView]) -> Result<(), String> {
    let what = "Inputs/sec";
    let points: Vec<(f64, f64)> = levels
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i as f64, l.embeddings.as_ref()?.inputs_per_sec)))
        .collect();
    if points.iter().all(|p| p.1 <= 0.0) {
        return no_data(area, what);
    }
    let y_max = points.iter().map(|p| p.1).fold(0.0f64, f64::max) * HEADROOM;
    let mut chart = level_chart(
        area,
        "Inputs embedded per second",
        levels,
        (y_max, what, 130),
        (&super::style::axis_format(y_max), 10),
    )?;
    let color = PCTS[0].1;
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(4)))
        .map_err(err)?;
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 7, color.filled())),
        )
        .map_err(err)?;
    Ok(())
}

fn errors_panel(area: &Area<'_>, levels: &[&LevelView]) -> Result<(), String> {
    let n = levels.len();
    // Categories by total count, largest first; beyond eight, the rest are "other".
    let mut totals: std::collections::BTreeMap<&str, u64> = Default::default();
    for l in levels {
        for (k, v) in &l.errors {
            *totals.entry(k.as_str()).or_default() += v;
        }
    }
    let mut cats: Vec<(&str, u64)> = totals.into_iter().collect();
    cats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = cats
        .iter()
        .take(ERROR_COLORS.len() - 1)
        .map(|c| c.0)
        .collect();
    let has_other = cats.len() > shown.len();
    let most = levels
        .iter()
        .map(|l| l.errors.values().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(4) as f64;
    let (y_max, labels) = super::style::count_axis(most * HEADROOM);
    let mut chart = level_chart(
        area,
        "Errors per level by category",
        levels,
        (y_max, "failed requests", 110),
        (&super::style::count_label, labels),
    )?;
    if cats.is_empty() {
        chart
            .draw_series(std::iter::once(Text::new(
                "no errors at any level",
                (-0.3, y_max * 0.5),
                (FONT, TEXT_PX).into_font(),
            )))
            .map_err(err)?;
        return Ok(());
    }
    let mut names: Vec<String> = shown.iter().map(|s| s.to_string()).collect();
    if has_other {
        names.push("other".into());
    }
    let mut base = vec![0.0f64; n];
    for (ci, name) in names.iter().enumerate() {
        let color = ERROR_COLORS[ci % ERROR_COLORS.len()];
        let mut rects = Vec::new();
        for (i, l) in levels.iter().enumerate() {
            let count = if name == "other" {
                l.errors
                    .iter()
                    .filter(|(k, _)| !shown.contains(&k.as_str()))
                    .map(|(_, v)| *v)
                    .sum::<u64>()
            } else {
                l.errors.get(name).copied().unwrap_or(0)
            } as f64;
            if count > 0.0 {
                let x = i as f64;
                rects.push(Rectangle::new(
                    [(x - 0.3, base[i]), (x + 0.3, base[i] + count)],
                    color.filled(),
                ));
                base[i] += count;
            }
        }
        let label: String = name.chars().take(40).collect();
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 10), (x + 30, y + 10)], color.filled()));
    }
    legend!(chart, SeriesLabelPosition::UpperLeft, TICK_PX - 2)
}
