//! What the pictures share (`plot`, its `summary_panel`, `timeline_plot`): the compiled-in font,
//! the text sizes, the client-limited color, the drawing area's type and the error conversion.

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

/// Registers DejaVu Sans (compiled in: no system font library is needed), once.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

pub type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A drawing error as text.
pub fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}
