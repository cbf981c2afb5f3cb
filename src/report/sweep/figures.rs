//! The default figures of `sweep.html`, each answering one standing question
//! of a sweep from the ok points of its [`SweepTable`], or saying why it is
//! left out:
//!
//! - `truncation_order`: ‖M_learned − M_exact‖_F against Δt (log–log), one
//!   series per generator, with the slope fitted through the medians per Δt;
//! - `omega0_error_vs_width`: |learned ω0 − true ω0| (log) against d_model;
//! - `in_context_error_vs_size`: the in-context error at the last position
//!   against the parameter count (log–log), one series per n_layers.
//!
//! Each figure is drawn from the table of the points it shows, columns `id`,
//! `series`, `x`, `y` (written beside it as CSV). Points a log axis cannot
//! show (not finite, or ≤ 0) are left out of that table and counted in the
//! caption.

use plotters::prelude::*;

use crate::interpret::order::{line_fit, nominal_slope};
use crate::report::data::Table;
use crate::report::plot::{
    Area, Axis, Backend, Drawable, INK, Mark, PALETTE, PlotResult, Shape, Theme, axes, chart, decade_range, marker,
    note, padded_range, sci, titled, with_legend,
};
use crate::report::sweep::table::{SweepTable, number_cell};
use crate::util::error::Result;

/// One default figure of the page: its id (file stem and HTML id), its
/// heading, and the figure or why it is left out.
pub(crate) type Slot = (&'static str, &'static str, Content);

/// A figure with its caption, or why it is left out.
pub(crate) enum Content {
    /// A figure to draw (its `data` is written beside it as CSV).
    Drawn { figure: Scatter, caption: String },
    /// Why the figure is left out.
    Skipped(String),
}

/// What joins the points of each series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Guide {
    /// Markers only.
    Points,
    /// A line through the median of each x.
    Medians,
    /// Medians, and the slope fitted through them in the legend.
    Slopes,
}

/// Points in series drawn as markers, one colour and shape per series.
#[derive(Clone, Debug)]
pub(crate) struct Scatter {
    /// Drawn at the top.
    pub title: String,
    /// The x axis (log: the chart holds `log10 x`).
    pub x: Axis,
    /// The y axis.
    pub y: Axis,
    /// Columns `id`, `series` (the legend label), `x`, `y`: every point drawn.
    pub data: Table,
    /// What joins the points.
    pub guide: Guide,
    /// How the legend names the x of a median ("Δt", "width").
    pub per: &'static str,
}

/// Why a table made by [`points`] reads back: it has columns `series`, `x`
/// and `y`, and numbers written by [`number_cell`].
const POINTS: &str = "a points table has columns series, x and y of numbers";

/// Series of a figure: the legend label and the points `(x, y)`.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Marker shapes, by series.
const SHAPES: [Shape; 5] = [Shape::Dot, Shape::Triangle, Shape::Square, Shape::Cross, Shape::Ring];

impl Drawable for Scatter {
    fn size(&self) -> (u32, u32) {
        (680, 520)
    }

    fn draw<DB: Backend>(&self, root: &Area<DB>, th: &Theme) -> PlotResult {
        let area = titled(root, th, &self.title)?;
        let series = series(&self.data)?;
        let area = with_legend(&area, th, &self.legend(&series))?;
        let all = || series.iter().flat_map(|s| s.1.iter());
        let (Some(xr), Some(yr)) = (range(&self.x, all().map(|p| p.0)), range(&self.y, all().map(|p| p.1))) else {
            return note(&area, th, "no points to draw");
        };
        let mut ch = chart(&area, th, xr, yr, 72.0)?;
        axes(&mut ch, th, &self.x, &self.y)?;
        for (i, (_, points)) in series.iter().enumerate().filter(|_| self.guide != Guide::Points) {
            let line = medians(points).into_iter().map(|p| self.at(p));
            ch.draw_series(LineSeries::new(line, th.line(&PALETTE[i % 8], 2.0)))?;
        }
        let screen = ch.plotting_area().use_screen_coord();
        for (i, (_, points)) in series.iter().enumerate() {
            for &p in points {
                let colour = PALETTE[i % 8].mix(0.8);
                marker(&screen, th, SHAPES[i % SHAPES.len()], colour, ch.backend_coord(&self.at(p)), 4.5)?;
            }
        }
        Ok(())
    }
}

impl Scatter {
    /// Where `(x, y)` goes on the chart (`log10` on a log axis).
    fn at(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let on = |axis: &Axis, v: f64| if axis.log { v.log10() } else { v };
        (on(&self.x, x), on(&self.y, y))
    }

    /// One entry per series (with its slope when [`Guide::Slopes`]), then
    /// what the lines are.
    fn legend(&self, series: &[(String, Vec<(f64, f64)>)]) -> Vec<(Mark, String)> {
        let mut entries: Vec<(Mark, String)> = series
            .iter()
            .enumerate()
            .map(|(i, (name, points))| {
                let mark = Mark::Point(SHAPES[i % SHAPES.len()], PALETTE[i % 8].mix(0.8));
                match self.guide {
                    Guide::Slopes => (mark, format!("{name}: {}", slope_text(fit_slope(&medians(points))))),
                    _ => (mark, name.clone()),
                }
            })
            .collect();
        if self.guide != Guide::Points {
            entries.push((Mark::Line(INK.mix(1.0), 2.0, false), format!("lines: median per {}", self.per)));
        }
        entries
    }
}

/// The plotted range of `values` on `axis`: whole decades on a log axis
/// (`None` without a positive value), padded by 6 % on a linear one.
fn range(axis: &Axis, values: impl Iterator<Item = f64>) -> Option<std::ops::Range<f64>> {
    let values: Vec<f64> = values.collect();
    if axis.log { decade_range(values) } else { (!values.is_empty()).then(|| padded_range(values, 0.06)) }
}

/// The points of a figure's table by series, in order of first appearance.
fn series(data: &Table) -> Result<Series> {
    let (names, x, y) = (data.text("series")?, data.numbers("x")?, data.numbers("y")?);
    let mut out: Series = vec![];
    for (name, point) in names.into_iter().zip(x.into_iter().zip(y)) {
        match out.iter_mut().find(|s| s.0 == name) {
            Some(s) => s.1.push(point),
            None => out.push((name, vec![point])),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- medians and slopes

/// The median y at each distinct x of `points`, by increasing x (the mean of
/// the middle two for an even count).
pub(crate) fn medians(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    sorted.chunk_by(|a, b| a.0 == b.0).map(|g| (g[0].0, (g[(g.len() - 1) / 2].1 + g[g.len() / 2].1) / 2.0)).collect()
}

/// Least squares of `log10 y` on `log10 x` over the `points` (one per
/// distinct x, see [`medians`]) whose x and y are finite and positive: the
/// slope (NaN with fewer than two such points) and how many entered.
pub(crate) fn fit_slope(points: &[(f64, f64)]) -> (f64, usize) {
    let usable = |v: f64| v.is_finite() && v > 0.0;
    let logs: Vec<(f64, f64)> =
        points.iter().filter(|p| usable(p.0) && usable(p.1)).map(|p| (p.0.log10(), p.1.log10())).collect();
    let n = logs.len();
    if n < 2 {
        return (f64::NAN, n);
    }
    let (xs, ys): (Vec<f64>, Vec<f64>) = logs.into_iter().unzip();
    (line_fit(&xs, &ys).0, n)
}

/// A fitted slope in words: `slope 4.97 (3 Δt)`; with two Δt a line always
/// fits, `slope 4.00 (2 Δt: not checked)`; with fewer, `no slope (1 Δt)`.
pub(crate) fn slope_text((slope, n): (f64, usize)) -> String {
    let value = format!("{slope:.2}").replace('-', "−");
    match n {
        0 | 1 => format!("no slope ({n} Δt)"),
        2 => format!("slope {value} (2 Δt: not checked)"),
        _ => format!("slope {value} ({n} Δt)"),
    }
}

// ---------------------------------------------------------------- points

/// The ok rows of `t`.
fn ok_rows(t: &SweepTable) -> impl Iterator<Item = &Vec<String>> {
    t.rows.iter().filter(|r| t.text(r, "status") == "ok")
}

/// The legend label of `row` in series by the swept key `by`: its value,
/// as `n_layers = 2` when it is a number; "all points" without a key or
/// when `by` is not swept.
fn series_label(t: &SweepTable, row: &[String], by: Option<&str>) -> String {
    let Some(by) = by.filter(|by| t.keys.iter().any(|k| k == by)) else {
        return "all points".into();
    };
    let value = t.text(row, by);
    match value.parse::<f64>() {
        Ok(_) => format!("{} = {value}", by.rsplit('.').next().unwrap_or(by)),
        Err(_) => value.to_string(),
    }
}

/// The points of the ok rows of `t` (columns `id`, `series`, `x`, `y`): x
/// from column `x` (a log axis when `log_x`), y = `y_of` the column `y`
/// (always a log axis), in series by the swept key `by` (see
/// [`series_label`]); with the number of ok rows left out because an axis
/// cannot show them.
fn points(
    t: &SweepTable,
    (x, log_x): (&str, bool),
    (y, y_of): (&str, fn(f64) -> f64),
    by: Option<&str>,
) -> (Table, usize) {
    let mut data = Table::new(&["id", "series", "x", "y"]);
    let mut left_out = 0;
    for row in ok_rows(t) {
        let (xv, yv) = (t.number(row, x), y_of(t.number(row, y)));
        if xv.is_finite() && (!log_x || xv > 0.0) && yv.is_finite() && yv > 0.0 {
            let cells = [t.text(row, "id").to_string(), series_label(t, row, by), number_cell(xv), number_cell(yv)];
            data.rows.push(cells.to_vec());
        } else {
            left_out += 1;
        }
    }
    (data, left_out)
}

/// What a caption says of the points: how many are drawn, and how many ok
/// points were left out because `what` is not finite and positive.
fn drawn_words(data: &Table, left_out: usize, what: &str) -> String {
    let drawn = format!("{} ok point(s) drawn (failed and missing points have no value).", data.rows.len());
    match left_out {
        0 => drawn,
        n => format!(
            "{drawn} {n} ok point(s) left out: {what} not finite or not positive, which a log axis cannot show."
        ),
    }
}

// ---------------------------------------------------------------- the figures

/// The default figures of `t`, in page order.
pub(crate) fn default_figures(t: &SweepTable) -> Vec<Slot> {
    vec![truncation_order(t), omega0_error_vs_width(t), in_context_error_vs_size(t)]
}

/// Why a figure of column `column` against the swept key `key` (if any) is
/// left out: `key` is not swept, or no ok point has a finite `column`
/// (`has`: which points have one); `None` when it can be drawn.
fn why_not_drawn(t: &SweepTable, key: Option<&str>, column: &str, has: &str) -> Option<Content> {
    match key {
        Some(key) if !t.keys.iter().any(|k| k == key) => Some(format!("Not drawn: {key} is not a swept key.")),
        _ if !ok_rows(t).any(|r| t.number(r, column).is_finite()) => {
            Some(format!("Not drawn: no ok point has a finite {column} ({has})."))
        }
        _ => None,
    }
    .map(Content::Skipped)
}

/// `truncation_order`: ‖M_learned − M_exact‖_F against Δt, per generator,
/// with the slope through the medians per Δt.
fn truncation_order(t: &SweepTable) -> Slot {
    let has = "a model with one affine map has one, an in-context model none";
    let content = why_not_drawn(t, Some("system.dt"), "error_vs_exact", has).unwrap_or_else(|| {
        let (data, left_out) = points(t, ("system.dt", true), ("error_vs_exact", |v| v), Some("system.generator"));
        let figure = Scatter {
            title: "‖M_learned − M_exact‖_F against Δt".into(),
            x: Axis::log("time step Δt"),
            y: Axis::log("‖M_learned − M_exact‖_F"),
            data,
            guide: Guide::Slopes,
            per: "Δt",
        };
        let caption = truncation_caption(&figure, left_out);
        Content::Drawn { figure, caption }
    });
    ("truncation_order", "Truncation order: distance to the exact map against Δt", content)
}

/// The caption of the truncation-order figure, with every fitted slope.
fn truncation_caption(figure: &Scatter, left_out: usize) -> String {
    let slopes: Vec<String> = series(&figure.data)
        .expect(POINTS)
        .iter()
        .map(|(name, points)| {
            let nominal = nominal_slope(name).map_or(String::new(), |p| format!(", nominal {p}"));
            format!("{name}: {}{nominal}", slope_text(fit_slope(&medians(points))))
        })
        .collect();
    format!(
        "‖M_{{learned}} − M_{{exact}}‖_{{F}} of each ok point against its Δt, both axes logarithmic; each line joins \
         the medians per Δt of one series. A model that runs a rule with local error O(Δt^{{p+1}}) lies at a distance \
         of order Δt^{{p+1}} from the exact map, so its line has slope p + 1: 2 for euler, 3 for leapfrog (undamped), \
         5 for rk4. Points at the training floor (an error set by training, not by the rule, as with generator exact) \
         flatten the line. Fitted slopes (least squares of log10 of the medians on log10 Δt; two Δt always fit a \
         line; nominal: p + 1 of the generator's rule): {}. {}",
        slopes.join("; "),
        drawn_words(&figure.data, left_out, "error_vs_exact or Δt")
    )
}

/// `omega0_error_vs_width`: |learned ω0 − true ω0| against d_model, with the
/// median per width.
fn omega0_error_vs_width(t: &SweepTable) -> Slot {
    let has = "a model with one affine map has one";
    let content = why_not_drawn(t, Some("model.d_model"), "omega0_error", has).unwrap_or_else(|| {
        let (data, left_out) = points(t, ("model.d_model", false), ("omega0_error", f64::abs), None);
        let figure = Scatter {
            title: "|learned ω₀ − true ω₀| against d_model".into(),
            x: Axis::linear("d_model"),
            y: Axis::log("|learned ω₀ − true ω₀|"),
            data,
            guide: Guide::Medians,
            per: "width",
        };
        let all: Vec<(f64, f64)> = series(&figure.data).expect(POINTS).into_iter().flat_map(|s| s.1).collect();
        let per_width: Vec<String> =
            medians(&all).iter().map(|(w, e)| format!("d_model {w}: {}", sci(*e, 3))).collect();
        let caption = format!(
            "|learned ω_{{0}} − true ω_{{0}}| of each ok point (log scale) against its width d_model; the line joins \
             the medians per width ({}). {}",
            per_width.join(", "),
            drawn_words(&figure.data, left_out, "omega0_error")
        );
        Content::Drawn { figure, caption }
    });
    ("omega0_error_vs_width", "Learned ω0 against width", content)
}

/// `in_context_error_vs_size`: the in-context error at the last position
/// against the parameter count, per n_layers.
fn in_context_error_vs_size(t: &SweepTable) -> Slot {
    let has = "only in-context models, context > 1, have one";
    let content = why_not_drawn(t, None, "median_rel_err_last", has).unwrap_or_else(|| {
        let (data, left_out) = points(t, ("n_params", true), ("median_rel_err_last", |v| v), Some("model.n_layers"));
        let figure = Scatter {
            title: "In-context error at the last position against parameters".into(),
            x: Axis::log("parameters"),
            y: Axis::log("median relative error at the last position"),
            data,
            guide: Guide::Points,
            per: "",
        };
        let caption = format!(
            "Median relative one-step error at the last context position of each ok in-context point against its \
             number of parameters, both axes logarithmic; one series per model.n_layers when it is swept. {}",
            drawn_words(&figure.data, left_out, "median_rel_err_last or n_params")
        );
        Content::Drawn { figure, caption }
    });
    ("in_context_error_vs_size", "In-context error against model size", content)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table over `keys` with one ok row `p<i>` per list of `(column, value)` cells.
    fn table(keys: &[&str], rows: &[Vec<(&str, String)>]) -> SweepTable {
        let mut t = SweepTable::new(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        for (i, cells) in rows.iter().enumerate() {
            let mut row = vec![String::new(); t.header.len()];
            (row[0], row[1]) = (format!("p{i}"), "ok".into());
            for (name, v) in cells {
                row[t.column(name).unwrap()] = v.clone();
            }
            t.rows.push(row);
        }
        t
    }

    /// The figure and caption of a drawn slot.
    fn drawn((id, _, content): Slot) -> (Scatter, String) {
        match content {
            Content::Drawn { figure, caption } => (figure, caption),
            Content::Skipped(why) => panic!("{id} left out: {why}"),
        }
    }

    #[test]
    fn slopes_of_power_laws_come_back_from_the_medians_per_dt() {
        let mut rows = vec![];
        for (rule, p) in [("euler", 2), ("leapfrog", 3), ("rk4", 5)] {
            for dt in [0.05f64, 0.1, 0.2] {
                for (seed, scatter) in [3.0, 1.0, 0.5].into_iter().enumerate() {
                    let error = number_cell(0.7 * dt.powi(p) * scatter);
                    let (dt, rule, seed) = (dt.to_string(), rule.to_string(), seed.to_string());
                    rows.push(vec![
                        ("system.dt", dt),
                        ("system.generator", rule),
                        ("train.seed", seed),
                        ("error_vs_exact", error),
                    ]);
                }
            }
        }
        let t = table(&["system.dt", "system.generator", "train.seed"], &rows);
        let (figure, caption) = drawn(truncation_order(&t));
        let series = series(&figure.data).unwrap();
        assert_eq!(series.len(), 3);
        for ((name, points), p) in series.iter().zip([2.0, 3.0, 5.0]) {
            let (slope, n) = fit_slope(&medians(points));
            assert!((slope - p).abs() < 1e-9 && n == 3, "{name}: slope {slope} over {n} Δt");
        }
        assert!(
            caption.contains("euler: slope 2.00 (3 Δt), nominal 2; leapfrog: slope 3.00 (3 Δt), nominal 3"),
            "{caption}"
        );
        assert!(caption.contains("rk4: slope 5.00 (3 Δt), nominal 5"), "{caption}");
    }

    #[test]
    fn two_dt_are_not_checked_and_one_dt_has_no_slope() {
        let two = [(0.1, 1e-4), (0.2, 8e-4), (0.1, 1e-4)];
        assert_eq!(slope_text(fit_slope(&medians(&two))), "slope 3.00 (2 Δt: not checked)");
        assert_eq!(slope_text(fit_slope(&medians(&two[..1]))), "no slope (1 Δt)");
        let row = |seed: &str, e: &str| {
            vec![("system.dt", "0.1".into()), ("train.seed", seed.into()), ("error_vs_exact", e.into())]
        };
        let t = table(&["system.dt", "train.seed"], &[row("1", "1e-4"), row("2", "3e-4")]);
        assert!(drawn(truncation_order(&t)).1.contains("all points: no slope (1 Δt)"));
    }

    #[test]
    fn values_a_log_axis_cannot_show_are_left_out_and_counted() {
        let row = |dt: &str, e: &str, w: &str| {
            let cells = [("system.dt", dt), ("model.d_model", "16"), ("error_vs_exact", e), ("omega0_error", w)];
            cells.map(|(k, v)| (k, v.to_string())).to_vec()
        };
        let rows = [row("0.1", "1e-3", "-3e-4"), row("0.1", "0", "0"), row("0.2", "-2e-3", ""), row("0.2", "", "1e-4")];
        let mut t = table(&["system.dt", "model.d_model"], &[&rows[..], &[row("0.4", "inf", "inf")]].concat());
        t.rows.push(t.rows[0].clone());
        t.rows[5][1] = "failed".into(); // not an ok point: neither drawn nor counted
        let (figure, caption) = drawn(truncation_order(&t));
        assert_eq!(figure.data.rows.len(), 1);
        assert!(caption.contains("1 ok point(s) drawn") && caption.contains(" 4 ok point(s) left out: error_vs_exact"));
        let (figure, caption) = drawn(omega0_error_vs_width(&t));
        assert_eq!(figure.data.numbers("y").unwrap(), [3e-4, 1e-4]);
        assert!(caption.contains(" 3 ok point(s) left out: omega0_error"), "{caption}");
        let dir = tempfile::tempdir().unwrap();
        crate::report::plot::render(&figure, &dir.path().join("omega0_error_vs_width")).unwrap();
        assert!(matches!(in_context_error_vs_size(&t).2, Content::Skipped(_)));
    }
}
