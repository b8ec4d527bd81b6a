//! What the pictures share (`plot`, its `summary_panel`, `timeline_plot`, `turns_plot`): the
//! compiled-in font, the text sizes, the palette, the backend, drawing area and chart types, the
//! legend's style, axis formats, the write-beside-then-rename of a PNG and the error conversion.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

pub const FONT: &str = "sans-serif";
pub const TITLE_PX: u32 = 40;
pub const LABEL_PX: u32 = 30;
pub const TICK_PX: u32 = 26;
pub const TEXT_PX: u32 = 27;
/// Client-limited levels, and warnings.
pub const LIMITED: RGBColor = RGBColor(200, 0, 0);

/// The palette every picture draws its series from (matplotlib's "tab10", the spec's colors).
pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN: RGBColor = RGBColor(44, 160, 44);
pub const RED: RGBColor = RGBColor(214, 39, 40);
pub const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub const BROWN: RGBColor = RGBColor(140, 86, 75);
pub const PINK: RGBColor = RGBColor(227, 119, 194);
pub const GRAY: RGBColor = RGBColor(127, 127, 127);
pub const OLIVE: RGBColor = RGBColor(188, 189, 34);
pub const CYAN: RGBColor = RGBColor(23, 190, 207);
/// The palette in its order, for series told apart by color alone.
pub const PALETTE: [RGBColor; 10] = [
    BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GRAY, OLIVE, CYAN,
];

/// Draws a chart's legend at `$at` with labels of `$px` pixels, in the one legend style (a single
/// or a dual axis chart: their builder types differ, so this is a macro).
macro_rules! legend {
    ($chart:expr, $at:expr, $px:expr) => {
        $chart
            .configure_series_labels()
            .position($at)
            .label_font(($crate::report::style::FONT, $px))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err($crate::report::style::err)
    };
}
pub(crate) use legend;

/// Registers DejaVu Sans (compiled in: no system font library is needed), once.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// A picture's backend: the bitmap, with text drawn by [`super::glyphs`].
pub type Backend<'a> = super::glyphs::Glyphs<BitMapBackend<'a>>;

pub type Area<'a> = DrawingArea<Backend<'a>, plotters::coord::Shift>;

/// A chart with plain numbers on both axes.
pub type Chart<'a, 'b> = plotters::chart::ChartContext<
    'a,
    Backend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A PNG of `size` pixels at `path`, ready to draw on.
pub fn png_area(path: &std::path::Path, size: (u32, u32)) -> Area<'_> {
    register_font();
    super::glyphs::Glyphs::new(BitMapBackend::new(path, size)).into_drawing_area()
}

/// Writes the picture `dir/file` with `render` (drawn beside it, then renamed, so an existing
/// picture is replaced whole or not at all); returns its path.
pub fn replace_png(
    dir: &std::path::Path,
    file: &str,
    render: impl FnOnce(&std::path::Path) -> Result<(), String>,
) -> Result<std::path::PathBuf, String> {
    let tmp = dir.join(format!(".{file}.tmp.png"));
    render(&tmp)?;
    let png = dir.join(file);
    std::fs::rename(&tmp, &png).map_err(|e| format!("cannot write {}: {e}", png.display()))?;
    Ok(png)
}

/// The room above a chart's highest value, as a multiple of it: the top three eighths stay free for
/// the legend, so that no legend covers a point.
pub const HEADROOM: f64 = 1.6;

/// The decimals of an axis from 0 to `max` (about ten ticks): one count for every tick, so an
/// axis never mixes "0.800" and "1.4".
pub fn decimals(max: f64) -> usize {
    let step = max / 10.0;
    if !(step.is_finite() && step > 0.0) {
        return 0;
    }
    // The tick step a chart picks: the step rounded up to 1, 2 or 5 × a power of ten.
    let e = 10f64.powf(step.log10().floor());
    let nice = match step / e {
        m if m <= 1.0 => e,
        m if m <= 2.0 => 2.0 * e,
        m if m <= 5.0 => 5.0 * e,
        _ => 10.0 * e,
    };
    (-nice.log10().floor()).clamp(0.0, 4.0) as usize
}

/// Tick labels for an axis from 0 to `max`, all with the same decimals.
pub fn axis_format(max: f64) -> impl Fn(&f64) -> String {
    let d = decimals(max);
    move |v: &f64| format!("{v:.d$}")
}

/// A count axis from 0 to `max`: its top (a whole number), how many labels it takes so that
/// each falls on a whole number, and their labels (whole numbers only, never a repeat).
pub fn count_axis(max: f64) -> (f64, usize) {
    let top = max.ceil().max(1.0);
    (top, (top as usize + 1).min(11))
}

/// A count's tick label: a whole number, or nothing between them.
pub fn count_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        String::new()
    }
}

/// The pictures' title, from a saved run's `metadata.json`.
pub fn title_of_run(meta: &serde_json::Value) -> String {
    let s = |k: &str| {
        meta.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
    };
    plot_title(s("model"), s("endpoint"), s("timestamp"))
}

/// The pictures' title: model, endpoint and the run's start (to the second).
pub fn plot_title(model: &str, endpoint: &str, timestamp: &str) -> String {
    let ts = timestamp
        .split('.')
        .next()
        .unwrap_or(timestamp)
        .replace('T', " ");
    format!("qpsbench: {model} at {endpoint}, {ts}")
}

/// A drawing error as text.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_name_model_endpoint_and_time() {
        let t = plot_title("m", "http://h/v1", "2026-01-02T03:04:05.678");
        assert_eq!(t, "qpsbench: m at http://h/v1, 2026-01-02 03:04:05");
    }

    #[test]
    fn one_format_per_axis() {
        let f = axis_format(1.5);
        assert_eq!(
            (f(&0.8), f(&1.4), f(&0.0)),
            ("0.8".into(), "1.4".into(), "0.0".into())
        );
        let f = axis_format(0.09);
        assert_eq!((f(&0.09), f(&0.0)), ("0.09".into(), "0.00".into()));
        assert_eq!(decimals(90.0), 0);
        assert_eq!(count_axis(5.0), (5.0, 6));
        assert_eq!(count_label(&2.5), "");
        assert_eq!(count_label(&3.0), "3");
    }
}
