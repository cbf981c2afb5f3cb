//! The report's figures. Each [`Figure`] holds the table it is drawn from
//! (the CSV written beside it, see [`crate::report::data`]) and a few scalars;
//! [`crate::report::plot::render`] turns it into SVG and PNG.

mod in_context;
mod interpretation;

use std::ops::Range;

use plotters::prelude::*;

use crate::report::data::{Table, matrices};
use crate::report::plot::{
    Area, Axis, Backend, Chart, ColorScale, Drawable, Heatmap, INK, Mark, PALETTE, PlotResult, Shape, Theme, axes,
    axis_exponent, chart, clip_polyline, decade_range, exponent_suffix, heatmap, log10_pos, marker, note, padded_range,
    sci, titled, with_legend,
};

/// One figure of the report, with its data.
#[derive(Clone, Debug)]
pub enum Figure {
    /// Train loss and validation MSE (log) and learning rate against step; `metrics.csv` columns.
    Training(Table),
    /// x(t) and p(t), model and exact; columns of [`crate::report::data::shown_trajectories`]. ω0 gives E₀
    /// (`None`: each trajectory's own, from the table).
    Rollout(Table, Option<f64>),
    /// p against x, model and exact; same table as `Rollout`.
    Phase(Table, f64),
    /// Median, 5–95 % band and max of the relative error, and the median
    /// error relative to the initial state, against step; `rollout.csv` columns.
    RolloutError(Table),
    /// Per-component and norm-based relative error of one trajectory.
    ComponentError(Table),
    /// Energy, model and exact, and their relative difference.
    Energy(Table),
    /// Eigenvalues of the learned map and of every rule on the complex plane, with a zoom.
    Eigenvalues(Table),
    /// Distances to the rules (log bars) with the identifiability threshold.
    Distances(Table),
    /// Heat maps of 2×2 matrices (`term, row, col, value`); `true` shares one colour scale.
    Matrices(Table, bool),
    /// Attention patterns, `layer, head, query, key, weight`.
    Attention(Table),
    /// Relative one-step error against energy on the validation set; `E_train_max`.
    ErrorVsEnergy(Table, f64),
    /// In-context error against position, model and baselines.
    InContextError(Table),
    /// In-context error at the last position against ω0 and γ, with the
    /// training ranges of each.
    ErrorVsParameters(Table, Box<in_context::Ranges>),
    /// Implied ω0 and γ of each sequence against the truth, with the
    /// least-squares lines (slope, intercept) of each.
    Implied(Table, Box<interpretation::Fits>),
    /// The effective filter's mean taps against k, beside the nearest
    /// candidate's (named).
    FilterTaps(Table, String),
    /// The roots of the effective filter and the true eigenvalues.
    FilterRoots(Table),
    /// A patching heat map, `prediction_shift` over rows (named: `layer` or
    /// `head`) × position.
    PatchMap(Table, &'static str),
    /// A probe heat map, held-out `r2` over site × position.
    ProbeMap(Table),
}

/// A figure with its title.
#[derive(Clone, Debug)]
pub struct Titled {
    /// Title drawn at the top.
    pub title: String,
    /// The figure.
    pub figure: Figure,
}

type Boxed<T> = std::result::Result<T, Box<dyn std::error::Error>>;

impl Drawable for Titled {
    fn size(&self) -> (u32, u32) {
        match &self.figure {
            Figure::Training(_) | Figure::Rollout(..) | Figure::Energy(_) => (640, 600),
            Figure::Phase(..) => (560, 560),
            Figure::InContextError(_) => (680, 560),
            Figure::ErrorVsParameters(..) => (1100, 500),
            Figure::Implied(..) => (1100, 520),
            Figure::FilterTaps(..) => (1000, 760),
            Figure::FilterRoots(_) => (560, 620),
            Figure::PatchMap(t, _) | Figure::ProbeMap(t) => {
                let (cell, rows, positions) = interpretation::patch_grid(t);
                ((cell * positions as u32 + 190).max(420), cell * rows as u32 + 130)
            }
            Figure::Eigenvalues(t) => (zooms(t).map_or(1, |z| z.halves.len() as u32 + 1) * 400 + 10, 480),
            Figure::Matrices(t, _) => (matrices(t).map_or(1, |m| m.len()).max(1) as u32 * 275 + 20, 250),
            Figure::Attention(t) => {
                let (layers, heads, _) = attention_shape(t).unwrap_or((1, 1, 1));
                (heads as u32 * 370 + 20, layers as u32 * 300 + 40)
            }
            _ => (640, 460),
        }
    }

    fn draw<DB: Backend>(&self, root: &Area<DB>, th: &Theme) -> PlotResult {
        let area = titled(root, th, &self.title)?;
        match &self.figure {
            Figure::Training(t) => training(&area, th, t),
            Figure::Rollout(t, omega0) => rollout(&area, th, t, *omega0),
            Figure::Phase(t, omega0) => phase(&area, th, t, *omega0),
            Figure::RolloutError(t) => rollout_error(&area, th, t),
            Figure::ComponentError(t) => component_error(&area, th, t),
            Figure::Energy(t) => energy(&area, th, t),
            Figure::Eigenvalues(t) => eigenvalue_plane(&area, th, t),
            Figure::Distances(t) => distances(&area, th, t),
            Figure::Matrices(t, shared) => matrix_panels(&area, th, t, *shared),
            Figure::Attention(t) => attention(&area, th, t),
            Figure::ErrorVsEnergy(t, e_max) => error_vs_energy(&area, th, t, *e_max),
            Figure::InContextError(t) => in_context::error_vs_position(&area, th, t),
            Figure::ErrorVsParameters(t, ranges) => in_context::error_vs_parameters(&area, th, t, ranges),
            Figure::Implied(t, fits) => interpretation::implied(&area, th, t, fits),
            Figure::FilterTaps(t, nearest) => interpretation::filter_taps(&area, th, t, nearest),
            Figure::FilterRoots(t) => interpretation::filter_roots(&area, th, t),
            Figure::PatchMap(t, rows) => interpretation::patch_map(&area, th, t, rows),
            Figure::ProbeMap(t) => interpretation::probe_map(&area, th, t),
        }
    }
}

// ---------------------------------------------------------------- helpers

/// The rollout, phase-portrait and energy figures show the model's values up
/// to this many times the largest magnitude of the exact ones: a diverging
/// rollout leaves the plotted area instead of squashing the exact orbit.
pub const CLIP: f64 = 3.0;

/// The plotted range of a quantity whose exact values are `exact` and the
/// model's `model`: all exact values and the model's within [`CLIP`] times
/// the exact largest magnitude, padded by 6 %.
fn view(model: &[f64], exact: &[f64]) -> Range<f64> {
    let extent = exact.iter().fold(0.0, |m: f64, v| if v.is_finite() { m.max(v.abs()) } else { m });
    let limit = if extent > 0.0 { CLIP * extent } else { f64::INFINITY };
    padded_range(exact.iter().copied().chain(model.iter().copied().filter(|v| v.abs() <= limit)), 0.06)
}

/// For each model value, whether it lies outside the range [`view`] plots
/// (or is not finite): where the model's line leaves the figure.
pub fn outside_view(model: &[f64], exact: &[f64]) -> Vec<bool> {
    let range = view(model, exact);
    model.iter().map(|v| !range.contains(v)).collect()
}

/// Draws the line through `points`, cut at the chart's axes and broken at
/// points that are not finite.
fn clipped_line<DB: Backend>(ch: &mut Chart<'_, DB>, points: &[(f64, f64)], style: ShapeStyle) -> PlotResult {
    let (x, y) = (ch.x_range(), ch.y_range());
    for piece in clip_polyline(points, &x, &y) {
        ch.draw_series(LineSeries::new(piece, style))?;
    }
    Ok(())
}

/// Columns `names` of `t` as numbers.
fn columns<const N: usize>(t: &Table, names: [&str; N]) -> Boxed<[Vec<f64>; N]> {
    let cols: Vec<Vec<f64>> = names.iter().map(|n| t.numbers(n)).collect::<crate::util::error::Result<_>>()?;
    Ok(cols.try_into().expect("one column per name"))
}

/// `(x, log10 y)` for the points with positive finite `y`.
fn log_points(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().zip(y).filter_map(|(&x, &y)| log10_pos(y).map(|ly| (x, ly))).collect()
}

/// The band between `lo` and `hi` against `x` on a log axis (points with a
/// positive finite value only), filled with `fill`.
fn log_band<DB: Backend>(ch: &mut Chart<'_, DB>, x: &[f64], lo: &[f64], hi: &[f64], fill: RGBAColor) -> PlotResult {
    let (lo, hi) = (log_points(x, lo), log_points(x, hi));
    let band: Vec<(f64, f64)> = lo.into_iter().chain(hi.into_iter().rev()).collect();
    if !band.is_empty() {
        ch.draw_series(std::iter::once(Polygon::new(band, fill.filled())))?;
    }
    Ok(())
}

/// The median `y` of `points` in each of `bins` equal bins of `x` over
/// `range`, at the bin's centre; empty bins are left out.
fn binned_medians(points: impl Iterator<Item = (f64, f64)>, range: Range<f64>, bins: usize) -> Vec<(f64, f64)> {
    let width = (range.end - range.start) / bins as f64;
    let mut binned: Vec<Vec<f64>> = vec![vec![]; bins];
    for (x, y) in points {
        binned[(((x - range.start) / width) as usize).min(bins - 1)].push(y);
    }
    binned
        .iter_mut()
        .enumerate()
        .filter(|(_, b)| !b.is_empty())
        .map(|(i, b)| {
            b.sort_by(f64::total_cmp);
            (range.start + (i as f64 + 0.5) * width, b[b.len() / 2])
        })
        .collect()
}

/// Splits a long table into runs of equal `id`.
fn runs(id: &[f64]) -> Vec<std::ops::Range<usize>> {
    let mut out = vec![];
    let mut start = 0;
    for i in 1..=id.len() {
        if i == id.len() || id[i] != id[start] {
            if i > start {
                out.push(start..i);
            }
            start = i;
        }
    }
    out
}

fn alpha(c: RGBColor, a: f64) -> RGBAColor {
    c.mix(a)
}

/// Legend entries for model-against-exact line pairs.
fn pair_legend(labels: &[String]) -> Vec<(Mark, String)> {
    let mut entries: Vec<(Mark, String)> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (Mark::Line(alpha(PALETTE[i % 8], 1.0), 2.5, false), l.clone()))
        .collect();
    entries.push((Mark::Line(alpha(PALETTE[6], 0.35), 7.0, false), "exact (wide, pale)".into()));
    entries.push((Mark::Line(alpha(INK, 1.0), 1.5, false), "model (thin)".into()));
    entries
}

/// Draws model (thin) over exact (wide, pale) for each run of trajectories,
/// cut at the axes.
fn pair_lines<DB: Backend>(
    ch: &mut Chart<'_, DB>,
    th: &Theme,
    groups: &[std::ops::Range<usize>],
    exact: &dyn Fn(usize) -> (f64, f64),
    model: &dyn Fn(usize) -> (f64, f64),
) -> PlotResult {
    for (g, range) in groups.iter().enumerate() {
        let color = PALETTE[g % 8];
        let points: Vec<(f64, f64)> = range.clone().map(exact).collect();
        clipped_line(ch, &points, th.line(&alpha(color, 0.3), 7.0))?;
    }
    for (g, range) in groups.iter().enumerate() {
        let points: Vec<(f64, f64)> = range.clone().map(model).collect();
        clipped_line(ch, &points, th.line(&PALETTE[g % 8], 1.5))?;
    }
    Ok(())
}

/// The legend label of each trajectory: its starting energy, with its ω0
/// and γ when they are drawn per sequence (`omega0` is `None`; read from
/// the table's `omega0` and `gamma` columns).
fn energy_labels(t: &Table, groups: &[std::ops::Range<usize>], omega0: Option<f64>) -> Boxed<Vec<String>> {
    let [x, p] = columns(t, ["x_exact", "p_exact"])?;
    let systems = match omega0 {
        Some(w) => vec![(w, None); x.len()],
        None => {
            let [w, g] = columns(t, ["omega0", "gamma"])?;
            w.into_iter().zip(g.into_iter().map(Some)).collect()
        }
    };
    Ok(groups
        .iter()
        .map(|r| {
            let (w, g) = systems[r.start];
            let e0 = sci(0.5 * (p[r.start].powi(2) + (w * x[r.start]).powi(2)), 3);
            match g {
                Some(g) => format!("E₀ = {e0}, ω₀ = {}, γ = {}", sci(w, 3), sci(g, 2)),
                None => format!("E₀ = {e0}"),
            }
        })
        .collect())
}

// ---------------------------------------------------------------- figures

fn training<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let [step, loss, valid, lr] = columns(t, ["step", "train_loss", "valid_mse", "lr"])?;
    let entries = [
        (Mark::Line(alpha(PALETTE[0], 1.0), 2.0, false), "train loss (mean over each logging interval)".to_string()),
        (Mark::Line(alpha(PALETTE[1], 1.0), 2.0, false), "validation MSE".to_string()),
        (Mark::Line(alpha(PALETTE[2], 1.0), 2.0, false), "learning rate".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically(h * 64 / 100);
    let x_max = step.iter().copied().fold(1.0, f64::max);
    let Some(y) = decade_range(loss.iter().chain(&valid).copied()) else {
        return note(&area, th, "no positive loss values to draw");
    };
    let mut ch = chart(&top, th, 0.0..x_max, y, 72.0)?;
    axes(&mut ch, th, &Axis::linear(""), &Axis::log("mean squared error"))?;
    ch.draw_series(LineSeries::new(log_points(&step, &loss), th.line(&PALETTE[0], 2.0)))?;
    ch.draw_series(LineSeries::new(log_points(&step, &valid), th.line(&PALETTE[1], 2.0)))?;
    let e = axis_exponent(lr.iter().fold(0.0, |m: f64, v| m.max(v.abs())));
    let scale = 10f64.powi(-e);
    let y = padded_range(lr.iter().map(|v| v * scale).chain([0.0]), 0.08);
    let mut ch = chart(&bottom, th, 0.0..x_max, y, 72.0)?;
    axes(&mut ch, th, &Axis::linear("training step"), &Axis::linear(format!("learning rate{}", exponent_suffix(e))))?;
    ch.draw_series(LineSeries::new(step.iter().zip(&lr).map(|(s, l)| (*s, l * scale)), th.line(&PALETTE[2], 2.0)))?;
    Ok(())
}

fn rollout<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, omega0: Option<f64>) -> PlotResult {
    let [id, time, x, p, xe, pe] = columns(t, ["trajectory", "t", "x", "p", "x_exact", "p_exact"])?;
    let groups = runs(&id);
    let area = with_legend(area, th, &pair_legend(&energy_labels(t, &groups, omega0)?))?;
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically(h / 2);
    let t_max = time.iter().copied().fold(0.0, f64::max);
    for (panel, model, exact, desc, last) in
        [(&top, &x, &xe, "position x", false), (&bottom, &p, &pe, "momentum p", true)]
    {
        let mut ch = chart(panel, th, 0.0..t_max, view(model, exact), 72.0)?;
        axes(&mut ch, th, &Axis::linear(if last { "time t" } else { "" }), &Axis::linear(desc))?;
        pair_lines(&mut ch, th, &groups, &|i| (time[i], exact[i]), &|i| (time[i], model[i]))?;
    }
    Ok(())
}

fn phase<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, omega0: f64) -> PlotResult {
    let [id, x, p, xe, pe] = columns(t, ["trajectory", "x", "p", "x_exact", "p_exact"])?;
    let groups = runs(&id);
    let area = with_legend(area, th, &pair_legend(&energy_labels(t, &groups, Some(omega0))?))?;
    let mut ch = chart(&area, th, view(&x, &xe), view(&p, &pe), 72.0)?;
    axes(&mut ch, th, &Axis::linear("position x"), &Axis::linear("momentum p"))?;
    pair_lines(&mut ch, th, &groups, &|i| (xe[i], pe[i]), &|i| (x[i], p[i]))?;
    for (g, r) in groups.iter().enumerate() {
        ch.plotting_area().draw(&Circle::new((xe[r.start], pe[r.start]), th.px(4.0), PALETTE[g % 8].filled()))?;
    }
    Ok(())
}

fn rollout_error<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let [step, med, q05, q95, max, vs_initial] =
        columns(t, ["step", "median_rel_err", "q05_rel_err", "q95_rel_err", "max_rel_err", "median_err_vs_initial"])?;
    let entries = [
        (Mark::Band(alpha(PALETTE[0], 0.25)), "5–95 % of trajectories".to_string()),
        (Mark::Line(alpha(PALETTE[0], 1.0), 2.5, false), "median ‖ŝₙ − sₙ‖ / ‖sₙ‖".to_string()),
        (Mark::Line(alpha(PALETTE[1], 1.0), 1.5, true), "maximum ‖ŝₙ − sₙ‖ / ‖sₙ‖".to_string()),
        (Mark::Line(alpha(PALETTE[2], 1.0), 2.5, false), "median ‖ŝₙ − sₙ‖ / ‖s₀‖".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let Some(y) = decade_range(q05.iter().chain(&max).chain(&med).chain(&vs_initial).copied()) else {
        return note(&area, th, "no positive errors to draw on a log axis");
    };
    let x_max = step.iter().copied().fold(1.0, f64::max);
    let mut ch = chart(&area, th, 0.0..x_max, y, 72.0)?;
    axes(&mut ch, th, &Axis::linear("rollout step n"), &Axis::log("error of the rolled-out state"))?;
    log_band(&mut ch, &step, &q05, &q95, alpha(PALETTE[0], 0.25))?;
    ch.draw_series(LineSeries::new(log_points(&step, &med), th.line(&PALETTE[0], 2.5)))?;
    ch.draw_series(DashedLineSeries::new(log_points(&step, &max), th.px(6.0), th.px(4.0), th.line(&PALETTE[1], 1.5)))?;
    ch.draw_series(LineSeries::new(log_points(&step, &vs_initial), th.line(&PALETTE[2], 2.5)))?;
    Ok(())
}

fn component_error<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let [step, xe, ex, ep, en] = columns(t, ["step", "x_exact", "rel_err_x", "rel_err_p", "rel_err_norm"])?;
    let entries = [
        (Mark::Line(alpha(PALETTE[1], 1.0), 1.5, false), "|Δx| / |x|".to_string()),
        (Mark::Line(alpha(PALETTE[0], 1.0), 1.5, false), "|Δp| / |p|".to_string()),
        (Mark::Line(alpha(INK, 1.0), 2.5, false), "‖Δs‖ / ‖s‖".to_string()),
        (Mark::Line(alpha(PALETTE[6], 0.5), 1.0, true), "zero crossing of x".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let Some(y) = decade_range(ex.iter().chain(&ep).chain(&en).copied()) else {
        return note(&area, th, "no positive errors to draw on a log axis");
    };
    let x_max = step.iter().copied().fold(1.0, f64::max);
    let mut ch = chart(&area, th, 0.0..x_max, y.clone(), 72.0)?;
    axes(&mut ch, th, &Axis::linear("rollout step n (trajectory 1)"), &Axis::log("relative error, Δ = model − exact"))?;
    for i in 1..xe.len() {
        if xe[i - 1].signum() != xe[i].signum() {
            let s = step[i - 1] + (step[i] - step[i - 1]) * xe[i - 1] / (xe[i - 1] - xe[i]);
            ch.draw_series(DashedLineSeries::new(
                [(s, y.start), (s, y.end)],
                th.px(4.0),
                th.px(4.0),
                th.line(&alpha(PALETTE[6], 0.5), 1.0),
            ))?;
        }
    }
    ch.draw_series(LineSeries::new(log_points(&step, &ex), th.line(&PALETTE[1], 1.5)))?;
    ch.draw_series(LineSeries::new(log_points(&step, &ep), th.line(&PALETTE[0], 1.5)))?;
    ch.draw_series(LineSeries::new(log_points(&step, &en), th.line(&INK, 2.5)))?;
    Ok(())
}

fn energy<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let [id, time, e, ee, diff] = columns(t, ["trajectory", "t", "energy", "energy_exact", "rel_diff"])?;
    let groups = runs(&id);
    let labels: Vec<String> = groups.iter().map(|r| format!("E₀ = {}", sci(ee[r.start], 3))).collect();
    let area = with_legend(area, th, &pair_legend(&labels))?;
    let (_, h) = area.dim_in_pixel();
    let (top, bottom) = area.split_vertically(h * 55 / 100);
    let t_max = time.iter().copied().fold(0.0, f64::max);
    let exact_and_zero: Vec<f64> = ee.iter().copied().chain([0.0]).collect();
    let mut ch = chart(&top, th, 0.0..t_max, view(&e, &exact_and_zero), 72.0)?;
    axes(&mut ch, th, &Axis::linear(""), &Axis::linear("energy E"))?;
    pair_lines(&mut ch, th, &groups, &|i| (time[i], ee[i]), &|i| (time[i], e[i]))?;
    // The difference panel stops where the energy panel does: |ΔE/E₀| ≤ CLIP.
    let shown: Vec<f64> = diff.iter().filter(|v| v.is_finite()).map(|v| v.clamp(-CLIP, CLIP)).collect();
    let ex = axis_exponent(shown.iter().fold(0.0, |m: f64, v| m.max(v.abs())));
    let scale = 10f64.powi(-ex);
    let y = padded_range(shown.iter().map(|v| v * scale).chain([0.0]), 0.08);
    let mut ch = chart(&bottom, th, 0.0..t_max, y, 72.0)?;
    axes(&mut ch, th, &Axis::linear("time t"), &Axis::linear(format!("ΔE / E₀{}", exponent_suffix(ex))))?;
    for (g, r) in groups.iter().enumerate() {
        let points: Vec<(f64, f64)> = r.clone().map(|i| (time[i], diff[i] * scale)).collect();
        clipped_line(&mut ch, &points, th.line(&PALETTE[g % 8], 1.5))?;
    }
    Ok(())
}

/// Marker and colour of each eigenvalue source.
fn eigen_style(source: &str) -> (Shape, RGBAColor, f64) {
    match source {
        "learned" => (Shape::Dot, alpha(PALETTE[1], 1.0), 4.0),
        "exact" => (Shape::Ring, alpha(INK, 1.0), 9.0),
        "euler" => (Shape::Triangle, alpha(PALETTE[0], 1.0), 6.0),
        "implicit_euler" => (Shape::Triangle, alpha(PALETTE[2], 1.0), 6.0),
        "crank_nicolson" => (Shape::Square, alpha(PALETTE[3], 1.0), 6.0),
        "rk2" => (Shape::Cross, alpha(PALETTE[0], 1.0), 6.0),
        "rk3" => (Shape::Cross, alpha(PALETTE[2], 1.0), 6.0),
        "rk4" => (Shape::Cross, alpha(PALETTE[4], 1.0), 6.0),
        "symplectic_euler" => (Shape::Square, alpha(PALETTE[5], 1.0), 6.0),
        "leapfrog" => (Shape::Square, alpha(PALETTE[4], 1.0), 6.0),
        _ => (Shape::Ring, alpha(PALETTE[6], 1.0), 5.0),
    }
}

/// The eigenvalue table's sources in drawing order (rules, exact, learned on top)
/// and the zoom windows: the centre (the exact eigenvalue with the largest
/// imaginary part) and one or two half-widths, the second only when it shows
/// a cluster the first cannot separate.
struct Zooms {
    source: Vec<String>,
    re: Vec<f64>,
    im: Vec<f64>,
    names: Vec<String>,
    center: (f64, f64),
    halves: Vec<f64>,
}

fn zooms(t: &Table) -> Boxed<Zooms> {
    let source = t.text("source")?;
    let [re, im] = columns(t, ["re", "im"])?;
    let mut names: Vec<String> = vec![];
    for s in &source {
        if !names.contains(s) {
            names.push(s.clone());
        }
    }
    names.sort_by_key(|n| match n.as_str() {
        "learned" => 0,
        "exact" => 1,
        _ => 2,
    });
    let center = (0..source.len())
        .filter(|&i| source[i] == "exact")
        .max_by(|&a, &b| im[a].total_cmp(&im[b]))
        .map_or((1.0, 0.0), |i| (re[i], im[i]));
    let nearest = |name: &str| {
        (0..source.len())
            .filter(|&i| source[i] == name)
            .map(|i| (re[i] - center.0).hypot(im[i] - center.1))
            .fold(f64::INFINITY, f64::min)
    };
    let mut rules: Vec<f64> = names
        .iter()
        .filter(|n| *n != "exact" && *n != "learned")
        .map(|n| nearest(n))
        .filter(|d| d.is_finite())
        .collect();
    rules.sort_by(f64::total_cmp);
    let learned = Some(nearest("learned")).filter(|d| d.is_finite()).unwrap_or(0.0);
    let first = (1.3 * rules.last().copied().unwrap_or(0.0).max(learned)).max(1e-12);
    let mut halves = vec![first];
    if let Some(&median) = rules.get(rules.len() / 2) {
        let second = 1.3 * median;
        if second > 1e-12 && second < first / 5.0 {
            halves.push(second);
        }
    }
    Ok(Zooms { source, re, im, names, center, halves })
}

fn eigenvalue_plane<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let z = zooms(t)?;
    let entries: Vec<(Mark, String)> = z
        .names
        .iter()
        .map(|n| {
            let (shape, color, _) = eigen_style(n);
            (Mark::Point(shape, color), if n == "exact" { "exact exp((−γ ± iω)Δt)".to_string() } else { n.clone() })
        })
        .collect();
    let area = with_legend(area, th, &entries)?;
    let (w, h) = area.dim_in_pixel();
    let side = (h + th.px(12.0)).min(w / (z.halves.len() as u32 + 1));
    let order: Vec<usize> = z
        .names
        .iter()
        .rev()
        .flat_map(|n| (0..z.source.len()).filter(|&i| z.source[i] == *n).collect::<Vec<_>>())
        .collect();
    let (left, mut rest) = area.split_horizontally(side);

    // The whole plane, with the unit circle and the first zoom's box.
    let left = titled(&left, th, "complex plane")?;
    let reach = z.re.iter().chain(&z.im).fold(1.0f64, |m, v| if v.is_finite() { m.max(v.abs()) } else { m }) * 1.12;
    let mut ch = chart(&left, th, -reach..reach, -reach..reach, 56.0)?;
    axes(&mut ch, th, &Axis::linear("Re λ"), &Axis::linear("Im λ"))?;
    let circle = (0..=360).map(|k| {
        let a = std::f64::consts::TAU * f64::from(k) / 360.0;
        (a.cos(), a.sin())
    });
    ch.draw_series(LineSeries::new(circle, th.line(&alpha(PALETTE[6], 0.6), 1.0)))?;
    let (c, h1) = (z.center, z.halves[0]);
    let screen = ch.plotting_area().use_screen_coord();
    for &i in &order {
        if z.re[i].is_finite() && z.im[i].is_finite() {
            let (shape, color, r) = eigen_style(&z.source[i]);
            marker(&screen, th, shape, color, ch.backend_coord(&(z.re[i], z.im[i])), r)?;
        }
    }
    // Each zoom box (in backend pixels), drawn last with leader lines to the panel it zooms into.
    let mut boxes = vec![(ch.backend_coord(&(c.0 - h1, c.1 + h1)), ch.backend_coord(&(c.0 + h1, c.1 - h1)))];
    let mut insets = vec![];

    // Each zoom, in offsets from the exact eigenvalue, with the next zoom's box.
    for (level, &half) in z.halves.iter().enumerate() {
        let (panel, next) = rest.split_horizontally(side);
        rest = next;
        let title = if level == 0 { "zoom into the box: λ − λ_exact" } else { "zoom further" };
        let panel = titled(&panel, th, title)?;
        let e = axis_exponent(half);
        let s = 10f64.powi(-e);
        let mut zc = chart(&panel, th, -half * s..half * s, -half * s..half * s, 72.0)?;
        let suffix = exponent_suffix(e);
        axes(
            &mut zc,
            th,
            &Axis::linear(format!("Re(λ − λ_exact){suffix}")),
            &Axis::linear(format!("Im(λ − λ_exact){suffix}")),
        )?;
        let radius = c.0.hypot(c.1).max(1e-300);
        let phi = c.1.atan2(c.0);
        let inside = |x: f64, y: f64| x.abs() <= half * s && y.abs() <= half * s;
        let arc: Vec<(f64, f64)> = (0..=400)
            .map(|k| phi + (f64::from(k) / 200.0 - 1.0) * 2.0 * half / radius)
            .map(|a| ((a.cos() - c.0) * s, (a.sin() - c.1) * s))
            .filter(|&(x, y)| inside(x, y))
            .collect();
        zc.draw_series(LineSeries::new(arc, th.line(&alpha(PALETTE[6], 0.6), 1.0)))?;
        let screen = zc.plotting_area().use_screen_coord();
        for &i in &order {
            let (dx, dy) = ((z.re[i] - c.0) * s, (z.im[i] - c.1) * s);
            if inside(dx, dy) {
                let (shape, color, r) = eigen_style(&z.source[i]);
                marker(&screen, th, shape, color, zc.backend_coord(&(dx, dy)), r)?;
            }
        }
        let (xs, ys) = zc.plotting_area().get_pixel_range();
        insets.push(((xs.start, ys.start), (xs.start, ys.end)));
        if let Some(&h2) = z.halves.get(level + 1) {
            let b = h2 * s;
            boxes.push((zc.backend_coord(&(-b, b)), zc.backend_coord(&(b, -b))));
        }
    }
    zoom_boxes(&area, th, &boxes, &insets)
}

/// Two corners of a rectangle or an edge, in backend pixels.
type Corners = ((i32, i32), (i32, i32));

/// Draws each zoom box (corners in backend pixels, at least 10 pixels wide so
/// that a tiny window stays visible) on top of the markers, with leader lines
/// from its right corners to the left corners of the panel it zooms into.
fn zoom_boxes<DB: Backend>(area: &Area<DB>, th: &Theme, boxes: &[Corners], insets: &[Corners]) -> PlotResult {
    let base = area.get_base_pixel();
    let local = |p: (i32, i32)| (p.0 - base.0, p.1 - base.1);
    let min_half = th.ipx(5.0);
    for (&(top_left, bottom_right), &(inset_top, inset_bottom)) in boxes.iter().zip(insets) {
        let (cx, cy) = ((top_left.0 + bottom_right.0) / 2, (top_left.1 + bottom_right.1) / 2);
        let half_w = ((bottom_right.0 - top_left.0) / 2).max(min_half);
        let half_h = ((bottom_right.1 - top_left.1) / 2).max(min_half);
        let (a, b) = (local((cx - half_w, cy - half_h)), local((cx + half_w, cy + half_h)));
        let leader = th.line(&alpha(INK, 0.55), 1.0);
        area.draw(&PathElement::new(vec![(b.0, a.1), local(inset_top)], leader))?;
        area.draw(&PathElement::new(vec![(b.0, b.1), local(inset_bottom)], leader))?;
        area.draw(&Rectangle::new([a, b], th.line(&INK, 1.5)))?;
    }
    Ok(())
}

fn distances<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let rule = t.text("rule")?;
    let [d] = columns(t, ["distance"])?;
    let n = rule.len();
    let positive: Vec<f64> = d.iter().copied().filter(|v| v.is_finite() && *v > 0.0).collect();
    let d1 = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let d2 = positive.iter().copied().filter(|&v| v > d1).fold(f64::INFINITY, f64::min);
    let margin = if d2.is_finite() { sci(d2 / d1, 3) } else { "n/a".into() };
    let entries = [
        (Mark::Band(alpha(PALETTE[1], 0.85)), "nearest rule (d₁)".to_string()),
        (Mark::Band(alpha(PALETTE[0], 0.6)), "other rules".to_string()),
        (
            Mark::Line(alpha(INK, 1.0), 1.5, true),
            format!("10 × d₁: the runner-up d₂ must lie beyond (d₂/d₁ = {margin})"),
        ),
    ];
    let area = with_legend(area, th, &entries)?;
    let Some(x) = decade_range(positive.iter().copied().chain([10.0 * d1])) else {
        return note(&area, th, "no positive distance to draw on a log axis");
    };
    let x = x.start..x.end + 1.0;
    let label = |v: &f64| {
        let i = n as f64 - 1.0 - v;
        if (i - i.round()).abs() < 1e-6 && i >= -0.5 && i < n as f64 - 0.5 {
            rule[i.round() as usize].clone()
        } else {
            String::new()
        }
    };
    let mut ch = ChartBuilder::on(&area)
        .margin_top(th.px(8.0))
        .margin_right(th.px(14.0))
        .x_label_area_size(th.px(50.0))
        .y_label_area_size(th.px(140.0))
        .build_cartesian_2d(x.clone(), -0.6..n as f64 - 0.4)?;
    ch.configure_mesh()
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&label)
        .x_labels((x.end - x.start) as usize + 1)
        .x_label_formatter(&|v| crate::report::plot::decade_tick(*v))
        .x_desc("Frobenius distance ‖M − M_rule‖")
        .label_style(th.tick_font())
        .axis_desc_style(th.label_font())
        .bold_line_style(BLACK.mix(0.09))
        .light_line_style(TRANSPARENT)
        .axis_style(th.line(&INK, 1.0))
        .draw()?;
    let value = th.text(14.0).pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Left,
        plotters::style::text_anchor::VPos::Center,
    ));
    let threshold = (10.0 * d1).log10();
    ch.draw_series(DashedLineSeries::new(
        [(threshold, -0.6), (threshold, n as f64 - 0.4)],
        th.px(6.0),
        th.px(4.0),
        th.line(&INK, 1.5),
    ))?;
    let text_area = ch.plotting_area().strip_coord_spec();
    let base = ch.plotting_area().get_base_pixel();
    for (i, &di) in d.iter().enumerate() {
        let y = n as f64 - 1.0 - i as f64;
        let Some(lx) = log10_pos(di) else { continue };
        let color = if di == d1 { alpha(PALETTE[1], 0.85) } else { alpha(PALETTE[0], 0.6) };
        ch.draw_series(std::iter::once(Rectangle::new([(x.start, y - 0.32), (lx, y + 0.32)], color.filled())))?;
        let at = ch.backend_coord(&(lx, y));
        let (x0, y0) = (at.0 - base.0 + th.ipx(4.0), at.1 - base.1);
        let label = sci(di, 2);
        let (tw, tl) = text_area.estimate_text_size(&label, &value)?;
        let pad = th.ipx(2.0);
        text_area.draw(&Rectangle::new(
            [(x0, y0 - tl as i32 / 2 - pad), (x0 + tw as i32 + 2 * pad, y0 + tl as i32 / 2 + pad)],
            WHITE.filled(),
        ))?;
        text_area.draw_text(&label, &value, (x0 + pad, y0))?;
    }
    Ok(())
}

fn matrix_panels<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, shared: bool) -> PlotResult {
    let mats = matrices(t)?;
    if mats.is_empty() {
        return note(area, th, "no matrix to draw");
    }
    let max_abs =
        |m: &[Vec<f64>]| m.iter().flatten().fold(0.0, |a: f64, v| if v.is_finite() { a.max(v.abs()) } else { a });
    let all = mats.iter().map(|(_, m)| max_abs(m)).fold(0.0, f64::max);
    // Without a shared scale, the learned and exact maps still share one; a difference gets its own.
    let first_two = mats.iter().take(2).map(|(_, m)| max_abs(m)).fold(0.0, f64::max);
    let panels = area.margin(th.px(4.0), 0, th.px(10.0), th.px(10.0)).split_evenly((1, mats.len()));
    let labels_out = ["x′".to_string(), "p′".to_string()];
    let labels_in = ["x".to_string(), "p".to_string()];
    for (i, ((name, m), panel)) in mats.iter().zip(&panels).enumerate() {
        let scale = if shared {
            all
        } else if i < 2 {
            first_two
        } else {
            max_abs(m)
        };
        heatmap(
            panel,
            th,
            &Heatmap {
                title: &panel_title(name),
                values: m,
                rows: &labels_out,
                cols: &labels_in,
                scale: ColorScale::Diverging(scale),
                annotate: true,
                row_title: "output",
                col_title: "input",
            },
        )?;
    }
    Ok(())
}

/// The panel title of a matrix `term` of [`crate::report::data::map_table`] or [`crate::report::data::path_table`].
fn panel_title(term: &str) -> String {
    match term {
        "learned" => "learned M".into(),
        "exact" => "exact exp(AΔt)".into(),
        "learned - exact" => "learned − exact".into(),
        "direct" => "direct path".into(),
        "total" => "total = M".into(),
        t if t.starts_with('L') && t.contains('H') => format!("head {t} (OV path)"),
        t => t.into(),
    }
}

/// `(layers, heads, context)` of an attention table.
fn attention_shape(t: &Table) -> crate::util::error::Result<(usize, usize, usize)> {
    let max = |c: &str| t.numbers(c).map(|v| v.iter().fold(0.0, |m: f64, x| m.max(*x)) as usize + 1);
    Ok((max("layer")?, max("head")?, max("query")?.max(max("key")?)))
}

fn attention<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let (layers, heads, n) = attention_shape(t)?;
    let [layer, head, query, key, weight] = columns(t, ["layer", "head", "query", "key", "weight"])?;
    let mut grids = vec![vec![vec![f64::NAN; n]; n]; layers * heads];
    for i in 0..layer.len() {
        grids[layer[i] as usize * heads + head[i] as usize][query[i] as usize][key[i] as usize] = weight[i];
    }
    let labels: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let panels = area.margin(th.px(4.0), 0, th.px(10.0), th.px(10.0)).split_evenly((layers, heads));
    for (i, panel) in panels.iter().enumerate() {
        heatmap(
            panel,
            th,
            &Heatmap {
                title: &format!("layer {}, head {}", i / heads, i % heads),
                values: &grids[i],
                rows: &labels,
                cols: &labels,
                scale: ColorScale::Sequential(1.0),
                annotate: n <= 6,
                row_title: "query position",
                col_title: "key position",
            },
        )?;
    }
    Ok(())
}

/// Samples drawn as points at most (the rest are in the median line and the CSV).
const MAX_POINTS: usize = 1500;

fn error_vs_energy<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, e_train_max: f64) -> PlotResult {
    let [energy, rel] = columns(t, ["energy", "rel_err"])?;
    let stride = energy.len().div_ceil(MAX_POINTS).max(1);
    let shown =
        if stride > 1 { format!("validation samples (1 in {stride} drawn)") } else { "validation samples".into() };
    let entries = [
        (Mark::Point(Shape::Dot, alpha(PALETTE[0], 0.5)), shown),
        (Mark::Line(alpha(INK, 1.0), 2.5, false), "median in 20 energy bins".to_string()),
        (Mark::Band(alpha(PALETTE[2], 0.15)), format!("training energies E ≤ {e_train_max}")),
    ];
    let area = with_legend(area, th, &entries)?;
    let Some(y) = decade_range(rel.iter().copied()) else {
        return note(&area, th, "no positive errors to draw on a log axis");
    };
    let e_max = energy.iter().copied().fold(e_train_max, f64::max);
    let mut ch = chart(&area, th, 0.0..e_max * 1.02, y.clone(), 72.0)?;
    axes(
        &mut ch,
        th,
        &Axis::linear("energy E = ½(p² + ω₀² x²) of the input state"),
        &Axis::log("relative one-step error"),
    )?;
    ch.draw_series(std::iter::once(Rectangle::new(
        [(0.0, y.start), (e_train_max, y.end)],
        alpha(PALETTE[2], 0.15).filled(),
    )))?;
    ch.draw_series(DashedLineSeries::new(
        [(e_train_max, y.start), (e_train_max, y.end)],
        th.px(6.0),
        th.px(4.0),
        th.line(&PALETTE[2], 1.5),
    ))?;
    let points = log_points(&energy, &rel);
    ch.draw_series(
        points.iter().step_by(stride).map(|&p| Circle::new(p, th.px(1.6), alpha(PALETTE[0], 0.5).filled())),
    )?;
    let medians = binned_medians(points.into_iter(), 0.0..e_max, 20);
    ch.draw_series(LineSeries::new(medians, th.line(&INK, 2.5)))?;
    Ok(())
}
