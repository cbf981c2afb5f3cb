//! Drawing primitives for the report's figures, on top of plotters: one
//! theme (fonts, strokes, colours), axes with readable ticks, legends drawn
//! outside the data, heat maps, and rendering of one figure to SVG and PNG.
//!
//! Text is laid out (and, in the PNG, rasterised) with the DejaVu Sans file
//! committed in `assets/fonts/`, so neither the build nor the figures depend
//! on the fonts installed on the machine. Log axes are drawn as linear axes
//! of `log10(value)` with ticks at whole decades, labelled `10ⁿ`.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::util::error::{Error, Result};
use crate::util::io::write_text;

/// The font family name every text in a figure uses.
pub const FONT: &str = "sans-serif";

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`).
static FONT_FILE: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// A drawing area in pixels.
pub type Area<DB> = DrawingArea<DB, Shift>;

/// A chart with two linear `f64` axes (log axes hold `log10` of the data).
pub type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What drawing returns; errors become [`Error::Io`] in [`render`].
pub type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// A plotters backend whose errors can be boxed.
pub trait Backend: DrawingBackend<ErrorType: 'static> {}

impl<T: DrawingBackend<ErrorType: 'static>> Backend for T {}

/// A figure that can be drawn on any backend.
pub trait Drawable: Sync {
    /// Size in SVG pixels (the PNG is [`PNG_SCALE`] times larger).
    fn size(&self) -> (u32, u32);
    /// Draws the figure on `root`, sized `size() × theme.k`.
    fn draw<DB: Backend>(&self, root: &Area<DB>, theme: &Theme) -> PlotResult;
}

/// The PNG's resolution relative to the SVG's pixel size.
pub const PNG_SCALE: f64 = 2.0;

/// Sizes scale with `k` so that one drawing serves the SVG (k = 1) and the
/// larger PNG.
#[derive(Clone, Copy, Debug)]
pub struct Theme {
    /// Scale factor for every length and font size.
    pub k: f64,
}

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(120, 120, 120), // grey (instead of yellow, unreadable on white)
    RGBColor(0, 0, 0),       // black
];

/// Dark grey for axes and text.
pub const INK: RGBColor = RGBColor(30, 30, 30);

impl Theme {
    /// `v` SVG pixels at this scale.
    pub fn px(&self, v: f64) -> u32 {
        (v * self.k).round() as u32
    }

    /// `v` SVG pixels at this scale, signed.
    pub fn ipx(&self, v: f64) -> i32 {
        (v * self.k).round() as i32
    }

    /// Text of `size` SVG pixels.
    pub fn text(&self, size: f64) -> TextStyle<'static> {
        (FONT, size * self.k).into_font().color(&INK)
    }

    /// Tick labels.
    pub fn tick_font(&self) -> TextStyle<'static> {
        self.text(15.0)
    }

    /// Axis titles, legend entries.
    pub fn label_font(&self) -> TextStyle<'static> {
        self.text(16.0)
    }

    /// Figure and panel titles.
    pub fn title_font(&self) -> TextStyle<'static> {
        self.text(17.0)
    }

    /// A line of `width` SVG pixels.
    pub fn line<C: Color>(&self, color: &C, width: f64) -> ShapeStyle {
        color.stroke_width(self.px(width).max(1))
    }
}

/// Registers the bundled font with plotters (once per process).
fn ensure_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if register_font(FONT, FontStyle::Normal, FONT_FILE).is_err() {
            panic!("the bundled font assets/fonts/DejaVuSans.ttf is not a valid font file");
        }
    });
}

/// Draws `fig` into `<stem>.svg` and `<stem>.png` and returns the SVG text.
pub fn render(fig: &impl Drawable, stem: &Path) -> Result<String> {
    ensure_font();
    let (w, h) = fig.size();
    let svg_path = stem.with_extension("svg");
    // A bad data file stays an input error; anything else is a failure to draw.
    let fail = |path: &Path, e: Box<dyn std::error::Error>| match e.downcast::<Error>() {
        Ok(input) => *input,
        Err(e) => Error::io(path, std::io::Error::other(e.to_string())),
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let result: PlotResult = (|| {
            root.fill(&WHITE)?;
            fig.draw(&root, &Theme { k: 1.0 })?;
            root.present()?;
            Ok(())
        })();
        result.map_err(|e| fail(&svg_path, e))?;
    }
    write_text(&svg_path, &svg)?;
    let png_path = stem.with_extension("png");
    let size = ((f64::from(w) * PNG_SCALE) as u32, (f64::from(h) * PNG_SCALE) as u32);
    // plotters writes the PNG itself: to a temporary name, renamed when complete.
    let tmp = crate::util::io::temp_path_with_extension(&png_path)?;
    let root = BitMapBackend::new(&tmp, size).into_drawing_area();
    let result: PlotResult = (|| {
        root.fill(&WHITE)?;
        fig.draw(&root, &Theme { k: PNG_SCALE })?;
        root.present()?;
        Ok(())
    })();
    drop(root);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&png_path, e));
    }
    crate::util::io::commit_temp(&tmp, &png_path)?;
    Ok(svg)
}

// ---------------------------------------------------------------- numbers and ticks

/// `n` in Unicode superscript digits, with a real minus sign.
pub fn superscript(n: i32) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let digits: String = n.unsigned_abs().to_string().chars().map(|c| DIGITS[c as usize - '0' as usize]).collect();
    if n < 0 { format!("⁻{digits}") } else { digits }
}

/// A log-axis tick: `10ⁿ` at whole decades, nothing in between.
pub fn decade_tick(v: f64) -> String {
    let n = v.round();
    if (v - n).abs() < 1e-9 { format!("10{}", superscript(n as i32)) } else { String::new() }
}

/// `v` with `sig` significant digits: plain for `1e-3 ≤ |v| < 1e5`,
/// otherwise `m×10ⁿ`; a real minus sign.
pub fn sci(v: f64, sig: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let mut e = v.abs().log10().floor() as i32;
    let fixed = |e: i32| {
        let decimals = (sig as i32 - 1 - e).max(0) as usize;
        format!("{v:.decimals$}")
    };
    // Rounding can carry into the next decade (0.00995 to 2 digits is 0.010,
    // not 0.0100): count the digits from the rounded value.
    if (-3..5).contains(&e) && fixed(e).parse::<f64>().is_ok_and(|r| r.abs() >= 10f64.powi(e + 1)) {
        e += 1;
    }
    let text = if (-3..5).contains(&e) {
        fixed(e)
    } else {
        let s = format!("{:.*e}", sig.saturating_sub(1), v);
        let (mantissa, exp) = s.split_once('e').expect("`{:e}` always has an exponent");
        format!("{mantissa}×10{}", superscript(exp.parse().expect("an integer exponent")))
    };
    text.replace('-', "−")
}

/// A linear-axis tick for an axis spanning `span`: enough decimals for the
/// ticks plotters picks, trailing zeros trimmed, a real minus sign.
pub fn linear_tick(v: f64, span: f64) -> String {
    let decimals = (6 - span.abs().max(1e-300).log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".into() } else { s.replace('-', "−") }
}

/// A linear-axis tick in `m×10ⁿ` form for an axis spanning `span`: as many
/// mantissa decimals as the tick spacing (about a tenth of the span) needs,
/// at most three; "n/a" for a value that is not finite.
pub fn sci_tick(v: f64, span: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 || v.abs() < 1e-9 * span.abs() {
        return "0".into();
    }
    let mut e = v.abs().log10().floor() as i32;
    let spacing = (span.abs() / 10.0).max(f64::MIN_POSITIVE).log10().floor() as i32;
    let decimals = (e - spacing).clamp(0, 3) as usize;
    let mut mantissa = format!("{:.decimals$}", v / 10f64.powi(e));
    if mantissa.trim_start_matches('-').starts_with("10") {
        e += 1;
        mantissa = format!("{:.decimals$}", v / 10f64.powi(e));
    }
    let mantissa =
        if mantissa.contains('.') { mantissa.trim_end_matches('0').trim_end_matches('.') } else { &mantissa };
    format!("{mantissa}×10{}", superscript(e)).replace('-', "−")
}

/// Whether the ticks of a linear axis over `range` are written as
/// [`sci_tick`]: when its largest magnitude is 10⁵ or more, or below 10⁻³.
pub fn needs_sci_ticks(range: &Range<f64>) -> bool {
    let max = range.start.abs().max(range.end.abs());
    max.is_finite() && (max >= 1e5 || (max > 0.0 && max < 1e-3))
}

/// The power of ten to factor out of a linear axis whose largest magnitude is
/// `max_abs` (0 when its ticks read well as they are).
pub fn axis_exponent(max_abs: f64) -> i32 {
    if !(max_abs.is_finite() && max_abs > 0.0) {
        return 0;
    }
    let e = max_abs.log10().floor() as i32;
    if (-4..5).contains(&e) { 0 } else { e }
}

/// `" [×10ⁿ]"` for [`axis_exponent`] `n ≠ 0`, else nothing.
pub fn exponent_suffix(e: i32) -> String {
    if e == 0 { String::new() } else { format!(" [×10{}]", superscript(e)) }
}

/// The range of `log10` of the positive finite `values`, widened to whole
/// decades; `None` when there is no positive finite value.
pub fn decade_range(values: impl IntoIterator<Item = f64>) -> Option<Range<f64>> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(f64::log10)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return None;
    }
    let (lo, mut hi) = (lo.floor(), hi.ceil());
    if hi <= lo {
        hi = lo + 1.0;
    }
    Some(lo..hi)
}

/// The range of the finite `values`, padded by `pad` of its span on each
/// side (a unit range around a constant).
pub fn padded_range(values: impl IntoIterator<Item = f64>, pad: f64) -> Range<f64> {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= 1e-12 * lo.abs().max(hi.abs()) || span == 0.0 {
        let d = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        return lo - d..hi + d;
    }
    lo - pad * span..hi + pad * span
}

/// `log10(v)` for positive finite `v`.
pub fn log10_pos(v: f64) -> Option<f64> {
    (v.is_finite() && v > 0.0).then(|| v.log10())
}

/// The part of the segment `a`–`b` inside the box `x × y` (Liang–Barsky),
/// with the parameters `t0 ≤ t1` in `[0, 1]` where it enters and leaves;
/// `None` when it misses the box or is not finite.
fn clip_segment(a: (f64, f64), b: (f64, f64), x: &Range<f64>, y: &Range<f64>) -> Option<(f64, f64)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    if !(a.0.is_finite() && a.1.is_finite() && dx.is_finite() && dy.is_finite()) {
        return None;
    }
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, a.0 - x.start), (dx, x.end - a.0), (-dy, a.1 - y.start), (dy, y.end - a.1)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else if p < 0.0 {
            t0 = t0.max(q / p);
        } else {
            t1 = t1.min(q / p);
        }
    }
    (t0 <= t1).then_some((t0, t1))
}

/// The pieces of the polyline `points` that lie inside the box `x × y`:
/// cut where the line leaves the box, and broken at points that are not
/// finite, so that nothing is drawn outside the axes and no NaN is drawn.
pub fn clip_polyline(points: &[(f64, f64)], x: &Range<f64>, y: &Range<f64>) -> Vec<Vec<(f64, f64)>> {
    let mut pieces: Vec<Vec<(f64, f64)>> = vec![];
    let mut open = false;
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let Some((t0, t1)) = clip_segment(a, b, x, y) else {
            open = false;
            continue;
        };
        let at = |t: f64| {
            if t == 0.0 {
                a
            } else if t == 1.0 {
                b
            } else {
                (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
            }
        };
        if !(open && t0 == 0.0) {
            pieces.push(vec![at(t0)]);
        }
        pieces.last_mut().expect("a piece was just started").push(at(t1));
        open = t1 == 1.0;
    }
    pieces
}

// ---------------------------------------------------------------- charts

/// How one axis is labelled.
#[derive(Clone, Debug)]
pub struct Axis {
    /// The axis title, with units.
    pub desc: String,
    /// The data are `log10` values: label ticks as `10ⁿ`.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(desc: impl Into<String>) -> Self {
        Axis { desc: desc.into(), log: false }
    }

    /// A log axis (the chart holds `log10` of the data).
    pub fn log(desc: impl Into<String>) -> Self {
        Axis { desc: desc.into(), log: true }
    }
}

/// Builds a chart on `area` with room for tick labels and axis titles.
pub fn chart<'a, DB: Backend>(
    area: &'a Area<DB>,
    theme: &Theme,
    x: Range<f64>,
    y: Range<f64>,
    y_label_width: f64,
) -> std::result::Result<Chart<'a, DB>, Box<dyn std::error::Error>> {
    Ok(ChartBuilder::on(area)
        .margin_top(theme.px(8.0))
        .margin_left(theme.px(6.0))
        .margin_right(theme.px(24.0))
        .x_label_area_size(theme.px(50.0))
        .y_label_area_size(theme.px(y_label_width))
        .build_cartesian_2d(x, y)?)
}

/// Draws the grid, ticks and axis titles of `chart`.
pub fn axes<DB: Backend>(chart: &mut Chart<'_, DB>, theme: &Theme, x: &Axis, y: &Axis) -> PlotResult {
    let xs = chart.x_range();
    let ys = chart.y_range();
    let (x_span, y_span) = (xs.end - xs.start, ys.end - ys.start);
    let (x_sci, y_sci) = (needs_sci_ticks(&xs), needs_sci_ticks(&ys));
    let tick = |v: f64, log: bool, sci: bool, span: f64| match (log, sci) {
        (true, _) => decade_tick(v),
        (false, true) => sci_tick(v, span),
        (false, false) => linear_tick(v, span),
    };
    let fx = |v: &f64| tick(*v, x.log, x_sci, x_span);
    let fy = |v: &f64| tick(*v, y.log, y_sci, y_span);
    let decades = |span: f64| (span.round() as usize + 1).min(9);
    // About one label per 90 pixels of axis, so that long tick labels never touch.
    let width = chart.plotting_area().dim_in_pixel().0;
    let x_labels = ((f64::from(width) / (90.0 * theme.k)) as usize).clamp(3, 8);
    chart
        .configure_mesh()
        .x_labels(if x.log { decades(x_span) } else { x_labels })
        .y_labels(if y.log { decades(y_span) } else { 8 })
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .x_desc(x.desc.as_str())
        .y_desc(y.desc.as_str())
        .label_style(theme.tick_font())
        .axis_desc_style(theme.label_font())
        .bold_line_style(BLACK.mix(0.09))
        .light_line_style(TRANSPARENT)
        .axis_style(theme.line(&INK, 1.0))
        .set_all_tick_mark_size(theme.px(4.0))
        .draw()?;
    Ok(())
}

/// A centred grey message where a plot has nothing to show.
pub fn note<DB: Backend>(area: &Area<DB>, theme: &Theme, text: &str) -> PlotResult {
    let (w, h) = area.dim_in_pixel();
    let style = theme.label_font().color(&PALETTE[6]).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(text, &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// Splits off a title line at the top of `area` and returns the rest.
pub fn titled<DB: Backend>(
    area: &Area<DB>,
    theme: &Theme,
    title: &str,
) -> std::result::Result<Area<DB>, Box<dyn std::error::Error>> {
    let (top, rest) = area.split_vertically(theme.px(28.0));
    let (w, _) = top.dim_in_pixel();
    let style = theme.title_font().pos(Pos::new(HPos::Center, VPos::Center));
    top.draw_text(title, &style, (w as i32 / 2, theme.ipx(15.0)))?;
    Ok(rest)
}

// ---------------------------------------------------------------- legends

/// Marker shapes for scatter points and legend entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Filled circle.
    Dot,
    /// Open circle.
    Ring,
    /// Diagonal cross.
    Cross,
    /// Filled triangle.
    Triangle,
    /// Open square.
    Square,
}

/// What a legend entry shows beside its label.
#[derive(Clone, Copy, Debug)]
pub enum Mark {
    /// A line of a colour and width (SVG pixels), solid or dashed.
    Line(RGBAColor, f64, bool),
    /// A marker.
    Point(Shape, RGBAColor),
    /// A shaded band.
    Band(RGBAColor),
}

/// Draws marker `shape` of radius `r` (pixels) at pixel `at`.
pub fn marker<DB: Backend>(
    area: &Area<DB>,
    theme: &Theme,
    shape: Shape,
    color: RGBAColor,
    at: (i32, i32),
    r: f64,
) -> PlotResult {
    let r = theme.px(r) as i32;
    let (x, y) = at;
    let stroke = theme.line(&color, 1.6);
    match shape {
        Shape::Dot => area.draw(&Circle::new(at, r, color.filled()))?,
        Shape::Ring => area.draw(&Circle::new(at, r, stroke))?,
        Shape::Cross => {
            area.draw(&PathElement::new(vec![(x - r, y - r), (x + r, y + r)], stroke))?;
            area.draw(&PathElement::new(vec![(x - r, y + r), (x + r, y - r)], stroke))?;
        }
        Shape::Triangle => {
            area.draw(&Polygon::new(vec![(x, y - r), (x - r, y + r * 3 / 4), (x + r, y + r * 3 / 4)], color.filled()))?
        }
        Shape::Square => {
            area.draw(&Rectangle::new([(x - r * 4 / 5, y - r * 4 / 5), (x + r * 4 / 5, y + r * 4 / 5)], stroke))?
        }
    }
    Ok(())
}

/// Height in pixels of a legend of `entries` laid out in rows across `width` pixels.
pub fn legend_height<DB: Backend>(area: &Area<DB>, theme: &Theme, entries: &[(Mark, String)]) -> u32 {
    legend_rows(area, theme, entries).len() as u32 * theme.px(22.0) + theme.px(10.0)
}

/// Entries per row, each with its width.
fn legend_rows<DB: Backend>(area: &Area<DB>, theme: &Theme, entries: &[(Mark, String)]) -> Vec<Vec<(usize, u32)>> {
    let (width, _) = area.dim_in_pixel();
    let usable = width.saturating_sub(theme.px(20.0));
    let mut rows: Vec<Vec<(usize, u32)>> = vec![vec![]];
    let mut used = 0;
    for (i, (_, label)) in entries.iter().enumerate() {
        let text_w = area.estimate_text_size(label, &theme.label_font()).map_or(label.len() as u32 * 8, |s| s.0);
        let w = theme.px(34.0) + text_w + theme.px(18.0);
        if used + w > usable && !rows.last().expect("rows start non-empty").is_empty() {
            rows.push(vec![]);
            used = 0;
        }
        rows.last_mut().expect("rows start non-empty").push((i, w));
        used += w;
    }
    rows
}

/// Draws a legend centred in `area` (meant to be a strip outside the plots).
pub fn legend<DB: Backend>(area: &Area<DB>, theme: &Theme, entries: &[(Mark, String)]) -> PlotResult {
    let (width, _) = area.dim_in_pixel();
    let style = theme.label_font().pos(Pos::new(HPos::Left, VPos::Center));
    for (r, row) in legend_rows(area, theme, entries).iter().enumerate() {
        let total: u32 = row.iter().map(|(_, w)| w).sum();
        let mut x = (width.saturating_sub(total) / 2) as i32;
        let y = theme.ipx(14.0 + 22.0 * r as f64);
        for &(i, w) in row {
            let (mark, label) = &entries[i];
            let (x0, x1) = (x + theme.ipx(2.0), x + theme.ipx(28.0));
            match *mark {
                Mark::Line(color, lw, dashed) => {
                    if dashed {
                        for seg in 0..3 {
                            let s = x0 + seg * theme.ipx(10.0);
                            area.draw(&PathElement::new(
                                vec![(s, y), (s + theme.ipx(6.0), y)],
                                theme.line(&color, lw),
                            ))?;
                        }
                    } else {
                        area.draw(&PathElement::new(vec![(x0, y), (x1, y)], theme.line(&color, lw)))?;
                    }
                }
                Mark::Point(shape, color) => marker(area, theme, shape, color, ((x0 + x1) / 2, y), 5.0)?,
                Mark::Band(color) => {
                    area.draw(&Rectangle::new([(x0, y - theme.ipx(6.0)), (x1, y + theme.ipx(6.0))], color.filled()))?;
                }
            }
            area.draw_text(label, &style, (x1 + theme.ipx(6.0), y))?;
            x += w as i32;
        }
    }
    Ok(())
}

/// Splits a legend strip of the right height off the bottom of `area`,
/// draws `entries` into it and returns the rest.
pub fn with_legend<DB: Backend>(
    area: &Area<DB>,
    theme: &Theme,
    entries: &[(Mark, String)],
) -> std::result::Result<Area<DB>, Box<dyn std::error::Error>> {
    let (_, h) = area.dim_in_pixel();
    let lh = legend_height(area, theme, entries);
    let (rest, strip) = area.split_vertically(h.saturating_sub(lh));
    legend(&strip, theme, entries)?;
    Ok(rest)
}

// ---------------------------------------------------------------- heat maps

/// How values map to colours in a heat map.
#[derive(Clone, Copy, Debug)]
pub enum ColorScale {
    /// Blue (negative) – white (0) – red (positive), symmetric about 0 up to the magnitude given.
    Diverging(f64),
    /// White (0) to dark blue (the value given).
    Sequential(f64),
}

impl ColorScale {
    /// The colour of `v`.
    pub fn color(&self, v: f64) -> RGBColor {
        if !v.is_finite() {
            return RGBColor(225, 225, 225);
        }
        let lerp = |a: (f64, f64, f64), b: (f64, f64, f64), t: f64| {
            let t = t.clamp(0.0, 1.0);
            let c = |x: f64, y: f64| (x + (y - x) * t).round() as u8;
            RGBColor(c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
        };
        let white = (255.0, 255.0, 255.0);
        match *self {
            ColorScale::Diverging(m) => {
                let t = if m > 0.0 { v / m } else { 0.0 };
                if t >= 0.0 { lerp(white, (178.0, 24.0, 43.0), t) } else { lerp(white, (33.0, 102.0, 172.0), -t) }
            }
            ColorScale::Sequential(m) => lerp(white, (8.0, 48.0, 107.0), if m > 0.0 { v / m } else { 0.0 }),
        }
    }

    /// Whether text on `v`'s colour should be white.
    pub fn dark(&self, v: f64) -> bool {
        let c = self.color(v);
        0.299 * f64::from(c.0) + 0.587 * f64::from(c.1) + 0.114 * f64::from(c.2) < 110.0
    }
}

/// One heat-map panel: a titled grid of `values[row][col]`, each cell
/// annotated with its value when `annotate`.
pub struct Heatmap<'a> {
    /// Panel title.
    pub title: &'a str,
    /// `[rows][cols]`.
    pub values: &'a [Vec<f64>],
    /// Row labels, top to bottom.
    pub rows: &'a [String],
    /// Column labels, left to right.
    pub cols: &'a [String],
    /// Colour mapping.
    pub scale: ColorScale,
    /// Write each value in its cell.
    pub annotate: bool,
    /// Title of the row labels (left).
    pub row_title: &'a str,
    /// Title of the column labels (top).
    pub col_title: &'a str,
}

/// The largest text style from 15 down to 9 pixels in which `text` fits in `width` pixels.
fn fitting_text<DB: Backend>(area: &Area<DB>, theme: &Theme, text: &str, width: i32) -> TextStyle<'static> {
    let mut size = 15.0;
    while size > 9.0 {
        let style = theme.text(size);
        if area.estimate_text_size(text, &style).is_ok_and(|(w, _)| w as i32 <= width) {
            return style;
        }
        size -= 1.0;
    }
    theme.text(size)
}

/// Width in SVG pixels a heat map keeps right of its cells for the colour bar and its labels.
const COLOR_BAR_ROOM: f64 = 74.0;

/// Stripes a colour bar is drawn with.
const COLOR_BAR_STRIPES: i32 = 48;

/// The values at the ends (and, for a diverging scale, the middle) of a colour bar, top first.
fn color_bar_ticks(scale: ColorScale) -> Vec<f64> {
    match scale {
        ColorScale::Diverging(m) => vec![m, 0.0, -m],
        ColorScale::Sequential(m) => vec![m, 0.0],
    }
}

/// A vertical colour bar of `height` pixels with its top-left corner at
/// `at`: [`COLOR_BAR_STRIPES`] stripes from the scale's top value down to
/// its bottom value, a frame, and the values at its ends (and middle).
fn color_bar<DB: Backend>(
    area: &Area<DB>,
    theme: &Theme,
    scale: ColorScale,
    at: (i32, i32),
    height: i32,
) -> PlotResult {
    let ticks = color_bar_ticks(scale);
    let (top, bottom) = (ticks[0], ticks[ticks.len() - 1]);
    let (x, y) = at;
    let width = theme.ipx(12.0);
    for i in 0..COLOR_BAR_STRIPES {
        let (y_a, y_b) = (y + height * i / COLOR_BAR_STRIPES, y + height * (i + 1) / COLOR_BAR_STRIPES);
        let v = top + (bottom - top) * (f64::from(i) + 0.5) / f64::from(COLOR_BAR_STRIPES);
        area.draw(&Rectangle::new([(x, y_a), (x + width, y_b)], scale.color(v).filled()))?;
    }
    area.draw(&Rectangle::new([(x, y), (x + width, y + height)], theme.line(&INK, 1.0)))?;
    let style = theme.text(12.0).pos(Pos::new(HPos::Left, VPos::Center));
    for (k, v) in ticks.iter().enumerate() {
        let ty = y + height * k as i32 / (ticks.len() as i32 - 1);
        area.draw(&PathElement::new(vec![(x + width, ty), (x + width + theme.ipx(3.0), ty)], theme.line(&INK, 1.0)))?;
        area.draw_text(&sci(*v, 2), &style, (x + width + theme.ipx(5.0), ty))?;
    }
    Ok(())
}

/// Draws a [`Heatmap`] filling `area`, with square cells and a colour bar.
pub fn heatmap<DB: Backend>(area: &Area<DB>, theme: &Theme, map: &Heatmap<'_>) -> PlotResult {
    let (w, h) = area.dim_in_pixel();
    let (n_rows, n_cols) = (map.values.len(), map.values.first().map_or(0, Vec::len));
    if n_rows == 0 || n_cols == 0 {
        return note(area, theme, "no data");
    }
    let title = theme.title_font().pos(Pos::new(HPos::Center, VPos::Top));
    area.draw_text(map.title, &title, (w as i32 / 2, theme.ipx(2.0)))?;
    let tick = theme.tick_font();
    // Room on the left for the widest row label, and the row title beside it.
    let widest = map.rows.iter().filter_map(|l| area.estimate_text_size(l, &tick).ok()).map(|(w, _)| w as i32).max();
    let title_room = if map.row_title.is_empty() { theme.ipx(4.0) } else { theme.ipx(24.0) };
    let left = (widest.unwrap_or(0) + theme.ipx(6.0) + title_room).max(theme.ipx(58.0));
    let (top, bottom) = (theme.ipx(52.0), theme.ipx(6.0));
    let right = theme.ipx(10.0) + theme.ipx(COLOR_BAR_ROOM);
    let cell = ((w as i32 - left - right) / n_cols as i32).min((h as i32 - top - bottom) / n_rows as i32).max(2);
    let x0 = left + (w as i32 - left - right - cell * n_cols as i32) / 2;
    let y0 = top;
    for (r, row) in map.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let (cx, cy) = (x0 + c as i32 * cell, y0 + r as i32 * cell);
            area.draw(&Rectangle::new([(cx, cy), (cx + cell, cy + cell)], map.scale.color(v).filled()))?;
            area.draw(&Rectangle::new([(cx, cy), (cx + cell, cy + cell)], theme.line(&WHITE, 1.0)))?;
            if map.annotate {
                let color = if map.scale.dark(v) { WHITE } else { INK };
                let text = sci(v, 3);
                let style = fitting_text(area, theme, &text, cell - theme.ipx(6.0)).color(&color);
                area.draw_text(
                    &text,
                    &style.pos(Pos::new(HPos::Center, VPos::Center)),
                    (cx + cell / 2, cy + cell / 2),
                )?;
            }
        }
    }
    let bar_x = x0 + cell * n_cols as i32 + theme.ipx(12.0);
    color_bar(area, theme, map.scale, (bar_x, y0), cell * n_rows as i32)?;
    let right = tick.pos(Pos::new(HPos::Right, VPos::Center));
    for (r, label) in map.rows.iter().enumerate() {
        area.draw_text(label, &right, (x0 - theme.ipx(6.0), y0 + r as i32 * cell + cell / 2))?;
    }
    let above = tick.pos(Pos::new(HPos::Center, VPos::Bottom));
    for (c, label) in map.cols.iter().enumerate() {
        area.draw_text(label, &above, (x0 + c as i32 * cell + cell / 2, y0 - theme.ipx(4.0)))?;
    }
    if !map.col_title.is_empty() {
        let style = theme.text(13.0).color(&PALETTE[6]).pos(Pos::new(HPos::Center, VPos::Bottom));
        area.draw_text(map.col_title, &style, (x0 + cell * n_cols as i32 / 2, y0 - theme.ipx(22.0)))?;
    }
    if !map.row_title.is_empty() {
        let style = theme
            .text(13.0)
            .color(&PALETTE[6])
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text(map.row_title, &style, (theme.ipx(2.0), y0 + cell * n_rows as i32 / 2))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_a_paper() {
        assert_eq!(superscript(-15), "⁻¹⁵");
        assert_eq!(decade_tick(-3.0), "10⁻³");
        assert_eq!(decade_tick(-2.5), "");
        assert_eq!(sci(8.372592556011523e-7, 3), "8.37×10⁻⁷");
        assert_eq!(sci(0.1, 3), "0.100");
        assert_eq!(sci(-0.39339, 3), "−0.393");
        assert_eq!(sci(783.19, 3), "783");
        // Rounding into the next decade keeps the digits asked for.
        assert_eq!(sci(0.009954902, 2), "0.010");
        assert_eq!(sci(9.996, 3), "10.0");
        assert_eq!(linear_tick(0.30000000000000004, 2.0), "0.3");
        assert_eq!(linear_tick(-0.0, 2.0), "0");
        assert_eq!(linear_tick(40000.0, 40000.0), "40000");
        assert_eq!(linear_tick(0.0002, 0.001), "0.0002");
    }

    /// Diverging rollouts put ticks like "350932992" on the axes, running over them.
    #[test]
    fn huge_and_tiny_axes_get_short_scientific_ticks() {
        assert_eq!(sci_tick(3.5e8, 4e8), "3.5×10⁸");
        assert_eq!(sci_tick(350932992.0, 1e8), "3.5×10⁸");
        assert_eq!(sci_tick(350932992.0, 1e9), "4×10⁸");
        assert_eq!(sci_tick(-2e-7, 1e-6), "−2×10⁻⁷");
        assert_eq!(sci_tick(0.0, 1e9), "0");
        assert_eq!(sci_tick(9.9999e8, 1e9), "1×10⁹");
        assert_eq!(sci_tick(f64::NAN, 1.0), "n/a");
        assert!(needs_sci_ticks(&(-3e8..2e8)) && needs_sci_ticks(&(0.0..2e-4)));
        assert!(!needs_sci_ticks(&(-3.0..2.0)) && !needs_sci_ticks(&(0.0..0.0)));
        for v in [1.2345e12, -7.5e-9, 4e300] {
            assert!(sci_tick(v, v.abs()).chars().count() <= 9, "{}", sci_tick(v, v.abs()));
        }
    }

    #[test]
    fn lines_are_cut_at_the_axes_and_broken_at_non_finite_points() {
        let (x, y) = (0.0..1.0, 0.0..1.0);
        let pts = [(0.5, 0.5), (0.5, 2.0), (0.6, 0.5), (0.7, 0.5), (f64::NAN, 0.5), (0.8, 0.5), (1e300, 0.5)];
        let pieces = clip_polyline(&pts, &x, &y);
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert_eq!(pieces[0], vec![(0.5, 0.5), (0.5, 1.0)]);
        assert_eq!(pieces[1].len(), 3);
        assert_eq!(pieces[1][1..], [(0.6, 0.5), (0.7, 0.5)]);
        assert_eq!(pieces[2][0], (0.8, 0.5));
        assert!((pieces[2][1].0 - 1.0).abs() < 1e-12, "{pieces:?}");
        for p in pieces.iter().flatten() {
            assert!((-1e-12..=1.0 + 1e-12).contains(&p.0) && (-1e-12..=1.0 + 1e-12).contains(&p.1), "{p:?}");
        }
        assert!(clip_polyline(&[(2.0, 2.0), (3.0, 3.0)], &x, &y).is_empty());
    }

    #[test]
    fn ranges_skip_what_a_log_axis_cannot_show() {
        assert_eq!(decade_range([0.0, -1.0, 3e-7, 2e-3, f64::NAN]), Some(-7.0..-2.0));
        assert_eq!(decade_range([0.0, f64::INFINITY]), None);
        assert_eq!(decade_range([1.0]), Some(0.0..1.0));
        assert_eq!(axis_exponent(3e-7), -7);
        assert_eq!(axis_exponent(0.5), 0);
        assert_eq!(axis_exponent(1e-3), 0);
    }
}
