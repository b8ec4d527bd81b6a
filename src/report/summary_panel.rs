//! The PNG's summary panel (panel 5 of `plot`): the four verdicts, each with its reason whole —
//! wrapped, in smaller text where it must be, and only if even that does not fit cut with a
//! pointer to `summary.json` — then the warnings (client-limited levels, the prefix cache).

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::recommend::Summary;
use super::style::{err, Area, FONT, LIMITED, TEXT_PX, TITLE_PX};

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// One line of the summary panel.
#[derive(Debug, Clone, PartialEq)]
enum Line {
    /// A verdict: its label and value.
    Head(String),
    /// A line of a reason, wrapped.
    Body(String),
    /// A line of a warning (client-limited levels, the prefix cache), in red.
    Warn(String),
}

/// The panel's lines with reasons wrapped at `width` characters. Every reason is whole unless
/// `max_lines` (at most that many lines in all) forces a cut: then the longest reasons lose
/// their last lines first, and a cut one ends in "… (whole text in summary.json)".
fn summary_lines(s: &Summary, width: usize, max_lines: usize) -> Vec<Line> {
    // The console's lines, in the console's order (`recommend::lines`): the verdicts and the
    // next steps with their reasons, then the warnings in red.
    let mut blocks: Vec<(Line, Vec<String>)> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    for (label, value, why) in super::recommend::lines(s) {
        match label.as_str() {
            "Failed whole" | "Left out (client-limited)" | "Few requests" | "Prompt cache" => {
                warnings.extend(wrap(&format!("{label}: {why}"), width));
            }
            _ if value.is_empty() => {
                blocks.push((Line::Head(format!("{label}:")), wrap(&why, width)));
            }
            _ => blocks.push((Line::Head(format!("{label}: {value}")), wrap(&why, width))),
        }
    }
    // Cut the longest reason by a line until everything fits (a reason keeps at least one).
    let total = |b: &[(Line, Vec<String>)]| {
        b.iter().map(|(_, r)| 1 + r.len()).sum::<usize>() + warnings.len()
    };
    let mut cut = vec![false; blocks.len()];
    while total(&blocks) > max_lines {
        let Some(i) = (0..blocks.len())
            .filter(|&i| blocks[i].1.len() > 1)
            .max_by_key(|&i| blocks[i].1.len())
        else {
            break;
        };
        blocks[i].1.pop();
        cut[i] = true;
    }
    let mut out = Vec::new();
    for ((head, mut reason), cut) in blocks.into_iter().zip(cut) {
        if let (true, Some(last)) = (cut, reason.last_mut()) {
            let keep: String = last.chars().take(width.saturating_sub(32)).collect();
            *last = format!("{keep}… (whole text in summary.json)");
        }
        out.push(head);
        out.extend(reason.into_iter().map(Line::Body));
    }
    out.extend(warnings.into_iter().map(Line::Warn));
    out
}

/// Draws the panel into `area`.
pub(super) fn draw(area: &Area<'_>, s: &Summary) -> Result<(), String> {
    let area = area.margin(20, 20, 30, 20);
    area.fill(&RGBColor(247, 247, 247)).map_err(err)?;
    let bold = (FONT, TITLE_PX).into_font().style(FontStyle::Bold);
    area.draw(&Text::new("Summary and Recommendations", (20, 10), bold))
        .map_err(err)?;
    let room = area.dim_in_pixel().1 as i32 - 70;
    // The largest text that shows every reason whole; at the smallest, reasons are cut to fit.
    let sizes = [(TEXT_PX, 78usize), (TEXT_PX - 4, 92), (TEXT_PX - 8, 110)];
    let lines = |&(px, width): &(u32, usize)| {
        let body_h = px as i32 + 2;
        let all = summary_lines(s, width, usize::MAX);
        let h: i32 = all
            .iter()
            .map(|l| match l {
                Line::Head(_) => px as i32 + 18,
                _ => body_h,
            })
            .sum();
        (h <= room).then_some(all)
    };
    let (px, width) = sizes
        .iter()
        .find(|size| lines(size).is_some())
        .copied()
        .unwrap_or(sizes[2]);
    // What fits at that size: every verdict's line, and body lines in the rest of the room.
    let heads = summary_lines(s, width, 0)
        .iter()
        .filter(|l| matches!(l, Line::Head(_)))
        .count() as i32;
    let max_lines = (heads + (room - heads * (px as i32 + 18)).max(0) / (px as i32 + 2)) as usize;
    let head = (FONT, px + 3)
        .into_font()
        .style(FontStyle::Bold)
        .color(&BLACK);
    let body = (FONT, px - 3).into_font().color(&BLACK);
    let warn = (FONT, px - 3).into_font().color(&LIMITED);
    let mut y = 70;
    for line in summary_lines(s, width, max_lines) {
        let (text, x, style, step) = match line {
            Line::Head(t) => {
                // A verdict starts a block: a gap above it, but for the first.
                y += if y > 70 { 8 } else { 0 };
                (t, 20, &head, px as i32 + 10)
            }
            Line::Body(t) => (t, 40, &body, px as i32 + 2),
            Line::Warn(t) => (t, 20, &warn, px as i32 + 2),
        };
        area.draw(&Text::new(text, (x, y), style.clone()))
            .map_err(err)?;
        y += step;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces() {
        assert_eq!(wrap("a bb ccc dddd", 6), vec!["a bb", "ccc", "dddd"]);
    }

    #[test]
    fn the_summary_shows_every_reason_whole_or_says_where_the_rest_is() {
        let long = "QPS 4: success 80.0% is below 95%; throughput 2.10 QPS is below 90% of the offered 3.52 QPS (80 requests ÷ (20 s + the lowest level's E2E p50 2.714 s)); TTFT p95 8.012 s is over 3× the lowest level's 0.925 s; waiting requests (llamacpp:requests_deferred) grew from 0 to 23 during QPS 4";
        let mut s = crate::report::recommend::analyze(&[], &Default::default());
        s.reasons.insert("saturation_qps", long.to_string());
        s.prompt_cache_warnings =
            vec!["QPS 1: 9 of 20 requests came from the server's prefix cache".into()];
        let text = |lines: &[Line]| {
            lines
                .iter()
                .filter_map(|l| match l {
                    Line::Body(t) => Some(t.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let whole = summary_lines(&s, 78, usize::MAX);
        assert!(text(&whole).contains(long), "{whole:?}");
        assert!(whole.contains(&Line::Warn(
            "Prompt cache: QPS 1: 9 of 20 requests came from the server's prefix cache".into()
        )));
        // Too little room: cut, and said so.
        let cut = summary_lines(&s, 78, 10);
        assert!(cut.len() <= 10, "{cut:?}");
        assert!(
            text(&cut).contains("(whole text in summary.json)"),
            "{cut:?}"
        );
    }
}
