//! The figures of the in-context interpretation (docs/in-context.md): implied ω0 and
//! γ against the truth, the effective filter's taps and the roots of its
//! characteristic polynomial, the probe and patching heat maps.

use plotters::prelude::*;

use super::{Boxed, MAX_POINTS, alpha, columns};
use crate::report::data::Table;
use crate::report::plot::{
    Area, Axis, Backend, ColorScale, Heatmap, INK, Mark, PALETTE, PlotResult, Shape, Theme, axes, chart, decade_range,
    heatmap, note, padded_range, titled, with_legend,
};

/// Least-squares line `implied = slope · true + intercept` of each panel
/// (ω0, γ); NaN slope: none drawn.
pub(crate) type Fits = [[f64; 2]; 2];

/// Implied values farther than this many spans of the truth beyond its
/// range are left off the axes (and counted in the legend).
const OFF_AXES: f64 = 1.5;

/// Implied ω0 (left) and γ (right) of each sequence against the truth, with
/// the line implied = true and the least-squares line; columns `omega0`,
/// `gamma`, `implied_omega0`, `implied_gamma`.
pub(super) fn implied<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, fits: &Fits) -> PlotResult {
    let [w, g, iw, ig] = columns(t, ["omega0", "gamma", "implied_omega0", "implied_gamma"])?;
    let stride = w.len().div_ceil(MAX_POINTS).max(1);
    let views = [view(&w, &iw), view(&g, &ig)];
    let off: usize =
        [(&iw, &views[0]), (&ig, &views[1])].iter().map(|(v, r)| v.iter().filter(|x| !r.contains(x)).count()).sum();
    let mut dots = "sequences".to_string();
    if stride > 1 {
        dots.push_str(&format!(" (1 in {stride} drawn)"));
    }
    if off > 0 {
        dots.push_str(&format!("; {off} implied values beyond the axes left off"));
    }
    let entries = [
        (Mark::Point(Shape::Dot, alpha(PALETTE[0], 0.5)), dots),
        (Mark::Line(alpha(INK, 1.0), 1.5, true), "implied = true".to_string()),
        (Mark::Line(alpha(PALETTE[1], 1.0), 2.5, false), "least-squares line".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let panels = area.split_evenly((1, 2));
    let names = [("true ω₀ of the sequence", "implied ω₀"), ("true γ of the sequence", "implied γ")];
    for (i, (panel, (x, y))) in panels.iter().zip([(&w, &iw), (&g, &ig)]).enumerate() {
        let xr = padded_range(x.iter().copied(), 0.05);
        let yr = views[i].clone();
        let mut ch = chart(panel, th, xr.clone(), yr.clone(), 72.0)?;
        axes(&mut ch, th, &Axis::linear(names[i].0), &Axis::linear(names[i].1))?;
        let diagonal = [(xr.start, xr.start), (xr.end, xr.end)];
        ch.draw_series(DashedLineSeries::new(diagonal, th.px(6.0), th.px(4.0), th.line(&INK, 1.5)))?;
        let shown = x.iter().zip(y.iter()).step_by(stride).filter(|(_, v)| yr.contains(v));
        ch.draw_series(shown.map(|(&a, &b)| Circle::new((a, b), th.px(1.8), alpha(PALETTE[0], 0.5).filled())))?;
        let [slope, intercept] = fits[i];
        if slope.is_finite() && intercept.is_finite() {
            let line = [(xr.start, slope * xr.start + intercept), (xr.end, slope * xr.end + intercept)];
            super::clipped_line(&mut ch, &line, th.line(&PALETTE[1], 2.5))?;
        }
    }
    Ok(())
}

/// The implied axis of a panel: the truth's range widened by [`OFF_AXES`]
/// of its span (at least 0.1) on each side, narrowed to the implied values
/// it holds and the truth, padded.
fn view(truth: &[f64], implied: &[f64]) -> std::ops::Range<f64> {
    let (lo, hi) = truth.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let span = (hi - lo).max(0.1);
    let (min, max) = (lo - OFF_AXES * span, hi + OFF_AXES * span);
    let kept = implied.iter().copied().filter(|v| (min..=max).contains(v));
    padded_range(truth.iter().copied().chain(kept), 0.05)
}

/// The four entries `ij` of the taps and their titles (column convention:
/// output i of the prediction `(x′, p′)`, input j of the token `k` before
/// the last).
const ENTRIES: [(&str, &str); 4] = [("00", "∂x′/∂x"), ("01", "∂x′/∂p"), ("10", "∂p′/∂x"), ("11", "∂p′/∂p")];

/// `|taps[k]_ij|` against k on a log axis, one panel per entry, the model's
/// mean taps (solid) beside the nearest candidate's (dashed); filled
/// markers positive, open negative. Columns `k`, `model_ij`, `nearest_ij`.
pub(super) fn filter_taps<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, nearest: &str) -> PlotResult {
    let [k] = columns(t, ["k"])?;
    let series = |who: &str| -> Boxed<Vec<Vec<f64>>> {
        ENTRIES.iter().map(|(e, _)| Ok(t.numbers(&format!("{who}_{e}"))?)).collect()
    };
    let (model, cand) = (series("model")?, series("nearest")?);
    let entries = [
        (Mark::Line(alpha(PALETTE[0], 1.0), 2.5, false), "model: mean taps over the sequences".to_string()),
        (Mark::Line(alpha(PALETTE[1], 1.0), 1.5, true), format!("nearest candidate: {nearest}")),
        (Mark::Point(Shape::Dot, alpha(INK, 0.8)), "filled: positive".to_string()),
        (Mark::Point(Shape::Ring, alpha(INK, 0.8)), "open: negative".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let all = model.iter().chain(&cand).flatten().map(|v| v.abs());
    let Some(y) = decade_range(all) else { return note(&area, th, "no nonzero tap to draw on a log axis") };
    let x_max = k.iter().copied().fold(1.0, f64::max);
    for (i, panel) in area.split_evenly((2, 2)).iter().enumerate() {
        let panel = titled(panel, th, &format!("{} (entry {})", ENTRIES[i].1, ENTRIES[i].0))?;
        let mut ch = chart(&panel, th, -0.5..x_max + 0.5, y.clone(), 72.0)?;
        let x_desc = if i >= 2 { "k (tokens before the last; 0 = the last)" } else { "" };
        axes(&mut ch, th, &Axis::linear(x_desc), &Axis::log("|tap|"))?;
        for (values, colour, dashed) in [(&cand[i], PALETTE[1], true), (&model[i], PALETTE[0], false)] {
            let points: Vec<(f64, f64, bool)> = k
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_finite() && **v != 0.0)
                .map(|(&x, &v)| (x, v.abs().log10(), v > 0.0))
                .collect();
            let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
            if dashed {
                ch.draw_series(DashedLineSeries::new(line, th.px(6.0), th.px(4.0), th.line(&colour, 1.5)))?;
            } else {
                ch.draw_series(LineSeries::new(line, th.line(&colour, 2.5)))?;
            }
            ch.draw_series(points.iter().map(|&(x, l, positive)| {
                let style = if positive { colour.filled() } else { th.line(&colour, 1.5) };
                Circle::new((x, l), th.px(if dashed { 3.0 } else { 4.0 }), style)
            }))?;
        }
    }
    Ok(())
}

/// The roots of the mean filter's characteristic polynomial and the true
/// `e^{(−γ ± iω)Δt}` on the complex plane, with the unit circle; columns
/// `source` (`filter`, `true`), `re`, `im`.
pub(super) fn filter_roots<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let source = t.text("source")?;
    let [re, im] = columns(t, ["re", "im"])?;
    let entries = [
        (Mark::Point(Shape::Dot, alpha(PALETTE[0], 0.85)), "roots of the model's mean filter".to_string()),
        (Mark::Point(Shape::Cross, alpha(INK, 1.0)), "true e^(−γ ± iω)Δt at the mean (ω₀, γ, Δt)".to_string()),
        (Mark::Line(alpha(PALETTE[6], 0.6), 1.0, false), "unit circle".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let reach = re.iter().chain(&im).fold(1.0f64, |m, v| if v.is_finite() { m.max(v.abs()) } else { m }) * 1.12;
    let mut ch = chart(&area, th, -reach..reach, -reach..reach, 56.0)?;
    axes(&mut ch, th, &Axis::linear("Re λ"), &Axis::linear("Im λ"))?;
    let circle = (0..=360).map(|k| {
        let a = std::f64::consts::TAU * f64::from(k) / 360.0;
        (a.cos(), a.sin())
    });
    ch.draw_series(LineSeries::new(circle, th.line(&alpha(PALETTE[6], 0.6), 1.0)))?;
    let at = |s: &str| -> Vec<(f64, f64)> {
        (0..source.len())
            .filter(|&i| source[i] == s)
            .map(|i| (re[i], im[i]))
            .filter(|z| z.0.is_finite() && z.1.is_finite())
            .collect()
    };
    ch.draw_series(at("filter").into_iter().map(|z| Circle::new(z, th.px(4.0), alpha(PALETTE[0], 0.85).filled())))?;
    ch.draw_series(at("true").into_iter().map(|z| Cross::new(z, th.px(6.0), th.line(&INK, 2.0))))?;
    Ok(())
}

/// Heat-map cells are at most this many pixels wide.
const MAX_CELL: u32 = 56;

/// The cell size and the grid `(rows, positions)` of a patching table.
pub(super) fn patch_grid(t: &Table) -> (u32, usize, usize) {
    let rows = t.text("row").map_or(0, |r| distinct(&r).len());
    let positions = t.numbers("position").map_or(0, |p| p.iter().fold(0.0, |m: f64, v| m.max(*v)) as usize + 1);
    (MAX_CELL.min(960 / positions.max(1) as u32).max(8), rows, positions)
}

/// The distinct values of `v`, in order of first appearance.
fn distinct(v: &[String]) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for x in v {
        if !out.contains(x) {
            out.push(x.clone());
        }
    }
    out
}

/// `prediction_shift` over row (layer or head) × position; columns `row`,
/// `label`, `position`, `prediction_shift`.
pub(super) fn patch_map<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, rows_title: &str) -> PlotResult {
    let shift = t.numbers("prediction_shift")?;
    let largest = shift.iter().fold(0.0, |m: f64, v| if v.is_finite() { m.max(v.abs()) } else { m });
    let scale = ColorScale::Diverging(if largest > 0.0 { largest } else { 1.0 });
    long_heatmap(area, th, t, ("prediction_shift", scale), (rows_title, "position patched (token index)"))
}

/// Held-out probe R² over site × position, on 0 (white, also for R² ≤ 0)
/// to 1; columns `row`, `label`, `position`, `r2`.
pub(super) fn probe_map<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    long_heatmap(area, th, t, ("r2", ColorScale::Sequential(1.0)), ("site", "position read (token index)"))
}

/// A heat map of the column `value` of a long table (`row`, `label`,
/// `position`, `value`), one row per distinct `row` (named by its `label`)
/// and one column per position; a missing or empty cell is grey.
fn long_heatmap<DB: Backend>(
    area: &Area<DB>,
    th: &Theme,
    t: &Table,
    (value, scale): (&str, ColorScale),
    (row_title, col_title): (&str, &str),
) -> PlotResult {
    let (row, label) = (t.text("row")?, t.text("label")?);
    let [pos, v] = columns(t, ["position", value])?;
    let names = distinct(&row);
    let (_, _, n_pos) = patch_grid(t);
    let mut grid = vec![vec![f64::NAN; n_pos]; names.len()];
    let mut labels = vec![String::new(); names.len()];
    for i in 0..row.len() {
        let r = names.iter().position(|n| *n == row[i]).expect("a row of the table");
        grid[r][pos[i] as usize] = v[i];
        labels[r] = label[i].clone();
    }
    let cols: Vec<String> = (0..n_pos).map(|p| p.to_string()).collect();
    heatmap(
        area,
        th,
        &Heatmap {
            title: "",
            values: &grid,
            rows: &labels,
            cols: &cols,
            scale,
            annotate: n_pos <= 8,
            row_title,
            col_title,
        },
    )
}
