//! The in-context figures: the one-step error at each position of the
//! context against the baselines, and the error at the last position
//! against each sequence's ω0 and γ with the training ranges marked.

use plotters::prelude::*;

use super::{Boxed, MAX_POINTS, alpha, binned_medians, columns, log_band, log_points};
use crate::report::data::Table;
use crate::report::plot::{
    Area, Axis, Backend, INK, Mark, PALETTE, PlotResult, Shape, Theme, axes, chart, decade_range, note, padded_range,
    with_legend,
};

/// The baselines drawn in the error-against-position figure (the CSV beside
/// it holds every one), with their colour and whether dashed.
const SHOWN_BASELINES: [(&str, usize, bool); 8] = [
    ("ls_fit", 7, true),
    ("filter_1", 1, false),
    ("filter_2", 2, false),
    ("filter_3", 3, false),
    ("filter_4", 4, false),
    ("filter_8", 5, false),
    ("extrapolation_2", 6, true),
    ("extrapolation_4", 6, false),
];

/// Median relative error against position: the model (with its 5–95 %
/// band) and the [`SHOWN_BASELINES`]; columns `position`, `median_rel_err`,
/// `q05_rel_err`, `q95_rel_err` and one `<baseline>` median column each.
pub(super) fn error_vs_position<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table) -> PlotResult {
    let [pos, med, q05, q95] = columns(t, ["position", "median_rel_err", "q05_rel_err", "q95_rel_err"])?;
    let baselines: Vec<(&str, RGBColor, bool, Vec<f64>)> = SHOWN_BASELINES
        .iter()
        .filter_map(|&(name, colour, dashed)| t.numbers(name).ok().map(|v| (name, PALETTE[colour], dashed, v)))
        .collect();
    let mut entries = vec![
        (Mark::Band(alpha(PALETTE[0], 0.25)), "model: 5–95 % of sequences".to_string()),
        (Mark::Line(alpha(PALETTE[0], 1.0), 3.0, false), "model: median".to_string()),
    ];
    entries.extend(
        baselines.iter().map(|(name, c, dashed, _)| (Mark::Line(alpha(*c, 1.0), 1.5, *dashed), name.to_string())),
    );
    let area = with_legend(area, th, &entries)?;
    let all = med.iter().chain(&q05).chain(&q95).chain(baselines.iter().flat_map(|b| b.3.iter()));
    let Some(y) = decade_range(all.copied()) else {
        return note(&area, th, "no positive errors to draw on a log axis");
    };
    let x_max = pos.iter().copied().fold(1.0, f64::max);
    let mut ch = chart(&area, th, 0.5..x_max + 0.5, y, 72.0)?;
    axes(
        &mut ch,
        th,
        &Axis::linear("position t (predicting state t from states 0 … t−1)"),
        &Axis::log("relative one-step error ‖ŝ − s‖ / ‖s‖"),
    )?;
    log_band(&mut ch, &pos, &q05, &q95, alpha(PALETTE[0], 0.25))?;
    for (_, c, dashed, v) in &baselines {
        let points = log_points(&pos, v);
        if *dashed {
            ch.draw_series(DashedLineSeries::new(points, th.px(6.0), th.px(4.0), th.line(c, 1.5)))?;
        } else {
            ch.draw_series(LineSeries::new(points, th.line(c, 1.5)))?;
        }
    }
    let model = log_points(&pos, &med);
    if model.len() == 1 {
        ch.draw_series(model.iter().map(|&p| Circle::new(p, th.px(4.0), PALETTE[0].filled())))?;
    }
    ch.draw_series(LineSeries::new(model, th.line(&PALETTE[0], 3.0)))?;
    Ok(())
}

/// The training range `[lo, hi]` of the parameter on each panel's axis
/// (`None`: fixed, nothing to mark).
pub(super) type Ranges = [Option<[f64; 2]>; 2];

/// The model's relative error at the last position against ω0 (left) and γ
/// (right), for sequences from the training ranges and from wider ones,
/// with binned medians and the training ranges shaded; columns `omega0`,
/// `gamma`, `in_training_range` (1 or 0) and `rel_err_last`.
pub(super) fn error_vs_parameters<DB: Backend>(area: &Area<DB>, th: &Theme, t: &Table, ranges: &Ranges) -> PlotResult {
    let [omega0, gamma, inside, err] = columns(t, ["omega0", "gamma", "in_training_range", "rel_err_last"])?;
    let stride = err.len().div_ceil(MAX_POINTS).max(1);
    let drawn = if stride > 1 { format!(" (1 in {stride} drawn)") } else { String::new() };
    let entries = [
        (Mark::Point(Shape::Dot, alpha(PALETTE[0], 0.5)), format!("sequences inside the training ranges{drawn}")),
        (Mark::Point(Shape::Dot, alpha(PALETTE[1], 0.5)), "sequences outside them".to_string()),
        (Mark::Line(alpha(INK, 1.0), 2.5, false), "median in 20 bins".to_string()),
        (Mark::Band(alpha(PALETTE[2], 0.15)), "training range".to_string()),
    ];
    let area = with_legend(area, th, &entries)?;
    let Some(y) = decade_range(err.iter().copied()) else {
        return note(&area, th, "no positive errors to draw on a log axis");
    };
    let scatter = Scatter { err: &err, inside: &inside, y, stride };
    let panels = area.split_evenly((1, 2));
    let names = ["ω₀ of the sequence", "γ of the sequence"];
    for (i, (panel, x)) in panels.iter().zip([&omega0, &gamma]).enumerate() {
        panel_of(panel, th, &scatter, (x, names[i], ranges[i]))?;
    }
    Ok(())
}

/// The errors both panels show: one per sequence, whether it is inside the
/// training ranges, the log axis and the thinning stride.
struct Scatter<'a> {
    err: &'a [f64],
    inside: &'a [f64],
    y: std::ops::Range<f64>,
    stride: usize,
}

/// One panel: the errors of `s` against the parameter `x`, named `name`,
/// with its training `range` shaded.
fn panel_of<DB: Backend>(
    area: &Area<DB>,
    th: &Theme,
    s: &Scatter<'_>,
    (x, name, range): (&[f64], &str, Option<[f64; 2]>),
) -> Boxed<()> {
    let (err, inside, y, stride) = (s.err, s.inside, s.y.clone(), s.stride);
    let xr = padded_range(x.iter().copied().chain(range.into_iter().flatten()), 0.03);
    let mut ch = chart(area, th, xr.clone(), y.clone(), 72.0)?;
    axes(&mut ch, th, &Axis::linear(name), &Axis::log("relative error at the last position"))?;
    if let Some([lo, hi]) = range {
        ch.draw_series(std::iter::once(Rectangle::new(
            [(lo, y.start), (hi, y.end)],
            alpha(PALETTE[2], 0.15).filled(),
        )))?;
    }
    let points: Vec<(f64, f64, bool)> = x
        .iter()
        .zip(err)
        .zip(inside)
        .filter_map(|((&x, &e), &i)| crate::report::plot::log10_pos(e).map(|l| (x, l, i > 0.5)))
        .collect();
    for (colour, keep) in [(PALETTE[0], true), (PALETTE[1], false)] {
        let shown = points.iter().filter(|p| p.2 == keep).step_by(stride);
        ch.draw_series(shown.map(|&(x, l, _)| Circle::new((x, l), th.px(1.6), alpha(colour, 0.5).filled())))?;
    }
    let medians = binned_medians(points.iter().map(|&(x, l, _)| (x, l)), xr, 20);
    ch.draw_series(LineSeries::new(medians, th.line(&INK, 2.5)))?;
    Ok(())
}
