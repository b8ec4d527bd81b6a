//! Text drawn with each glyph where its font puts it. plotters 0.3.7 draws ab_glyph text
//! (`style/font/ab_glyph.rs`, `draw`) with each glyph's bitmap at the pen position, applying
//! the glyph's vertical bearing but not its horizontal one, so narrow letters sit too far left:
//! "wi thout", "TTF T". [`Glyphs`] wraps a backend and draws text itself, the same way but with
//! the left bearing applied (and sub-pixel pen positions); everything else goes to the wrapped
//! backend untouched. Text is measured with the font it is drawn in, bold included.
//!
//! Used by every picture (`style::Area`). Found on the pictures' own text, compared with the
//! same strings drawn by this wrapper (docs/output.md, "The pictures").

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::*;
use plotters_backend::{
    text_anchor::{HPos, VPos},
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontStyle,
};

/// A backend whose text is drawn with each glyph's horizontal bearing applied.
pub struct Glyphs<B> {
    inner: B,
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

impl<B: DrawingBackend> Glyphs<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            // The `dejavu` crate's bytes are valid TrueType fonts (the same that
            // `style::register_font` gives plotters for its layout).
            regular: FontRef::try_from_slice(dejavu::sans::regular()).expect("DejaVu Sans parses"),
            bold: FontRef::try_from_slice(dejavu::sans::bold()).expect("DejaVu Sans Bold parses"),
        }
    }
}

/// The width and height of `text` as [`draw_glyphs`] draws it: advances and kerning, and
/// plotters' line height (`size ÷ 1.24`).
fn measure(font: &FontRef<'_>, size: f64, text: &str) -> (i32, i32) {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let mut width = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    (width as i32, (size / 1.24) as i32)
}

impl<B> Glyphs<B> {
    /// The font of a text style: bold, or regular for any other.
    fn font(&self, style: FontStyle) -> &FontRef<'static> {
        match style {
            FontStyle::Bold => &self.bold,
            _ => &self.regular,
        }
    }
}

/// Draws `text` at size `size` px with its top-left corner at (0, 0): `put(x, y, coverage)`
/// for every covered pixel. The vertical placement is plotters' (the glyph's top at
/// `size ÷ 2 + its bounds' top`), so text sits where plotters lays it out.
fn draw_glyphs(font: &FontRef<'_>, size: f64, text: &str, mut put: impl FnMut(i32, i32, f32)) {
    let scaled = font.as_scaled(PxScale::from(size as f32));
    let mut pen = 0f32;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        prev = Some(id);
        let glyph = id.with_scale_and_position(scaled.scale(), point(pen, 0.0));
        if let Some(outline) = scaled.outline_glyph(glyph) {
            let rect = outline.px_bounds();
            let (left, top) = (rect.min.x as i32, (size as f32 / 2.0 + rect.min.y) as i32);
            outline.draw(|x, y, coverage| put(left + x as i32, top + y as i32, coverage));
        }
        pen += scaled.h_advance(id);
    }
}

impl<B: DrawingBackend> DrawingBackend for Glyphs<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    /// Measured with the font the text is drawn in (plotters' own layout measures every style
    /// with the regular font, so bold text would overrun its box).
    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        let (w, h) = measure(self.font(style.style()), style.size(), text);
        Ok((w.max(0) as u32, h.max(0) as u32))
    }

    /// plotters' own `draw_text` (anchor, rotation, clipping), with [`draw_glyphs`] in place of
    /// the font's drawing.
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // A cheap copy (a reference to the static bytes and their tables), so that drawing can
        // borrow the backend.
        let font = self.font(style.style()).clone();
        let (width, height) = measure(&font, style.size(), text);
        let (min_x, min_y) = (0, 0);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        draw_glyphs(&font, style.size(), text, |x, y, coverage| {
            if result.is_err() {
                return;
            }
            let (x, y) = trans.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                let c = BackendColor {
                    alpha: color.alpha * f64::from(coverage),
                    rgb: color.rgb,
                };
                result = self.inner.draw_pixel((x, y), c);
            }
        });
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The leftmost covered column of each glyph of `text`, drawn alone at its pen position.
    fn ink_starts(text: &str) -> Vec<i32> {
        let font = FontRef::try_from_slice(dejavu::sans::regular()).unwrap();
        let mut starts = Vec::new();
        for (i, _) in text.char_indices() {
            let mut left = i32::MAX;
            let prefix = &text[..i];
            let mut this = String::from(prefix);
            this.push(text[i..].chars().next().unwrap());
            let mut before = std::collections::HashSet::new();
            draw_glyphs(&font, 30.0, prefix, |x, y, c| {
                if c > 0.0 {
                    before.insert((x, y));
                }
            });
            draw_glyphs(&font, 30.0, &this, |x, y, c| {
                if c > 0.0 && !before.contains(&(x, y)) {
                    left = left.min(x);
                }
            });
            starts.push(left);
        }
        starts
    }

    #[test]
    fn narrow_letters_keep_their_bearing() {
        // In "wit" the "i" starts a bearing's width after the "w" ends, not on it: its ink
        // begins at least 1 px right of the pen position where plotters would put it.
        let font = FontRef::try_from_slice(dejavu::sans::regular()).unwrap();
        let scaled = font.as_scaled(PxScale::from(30.0));
        let pen_i = scaled.h_advance(scaled.glyph_id('w'));
        let starts = ink_starts("wi");
        assert!(
            starts[1] as f32 >= pen_i + 1.0,
            "{starts:?}, pen at {pen_i}"
        );
    }
}
