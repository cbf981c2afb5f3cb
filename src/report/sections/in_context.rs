//! The in-context figures of a case (docs/outputs.md, `in_context`): the
//! error at each position against the baselines, from `summary.json`, and the
//! error at the last position against each sequence's ω0 and γ, from
//! `sequences.csv`.

use super::{Entry, drawn, skipped};
use crate::eval::in_context::InContext;
use crate::model::LossPositions;
use crate::physics::Param;
use crate::physics::baselines::MAX_FILTER;
use crate::report::data::{CaseData, Table};
use crate::report::figures::Figure;
use crate::report::plot::sci;
use crate::util::error::Result;

/// The largest k whose fixed filter the model beats at the last position
/// (0 when it beats none).
fn filters_beaten(ic: &InContext) -> usize {
    let last = ic.positions.len() - 1;
    (1..=MAX_FILTER)
        .take_while(|k| {
            ic.baselines.get(&format!("filter_{k}")).is_some_and(|c| c.median_rel_err[last] >= ic.median_rel_err_last)
        })
        .count()
}

/// Which baseline the model's predictions resemble, in words.
pub(crate) fn resemblance(ic: &InContext) -> String {
    let d = sci(ic.nearest_baseline_distance, 2);
    let name = &ic.nearest_baseline;
    if ic.resembles_nearest {
        format!("The model's predictions are nearest to {name} (median distance {d} relative to ‖s‖)")
    } else {
        format!(
            "The model's predictions resemble none of the baselines: the nearest, {name}, is at a median distance of \
             {d} relative to ‖s‖, not below half the model's own error"
        )
    }
}

/// `in_context_error`: median error against position, model and baselines.
pub(crate) fn error_vs_position(c: &CaseData, ic: &InContext) -> Result<Entry> {
    let names: Vec<&String> = ic.baselines.keys().collect();
    let mut header = vec!["position", "median_rel_err", "q05_rel_err", "q95_rel_err"];
    header.extend(names.iter().map(|n| n.as_str()));
    let mut table = Table::new(&header);
    for (i, &pos) in ic.positions.iter().enumerate() {
        let mut row = vec![pos as f64, ic.model.median_rel_err[i], ic.model.q05_rel_err[i], ic.model.q95_rel_err[i]];
        row.extend(names.iter().map(|n| ic.baselines[*n].median_rel_err[i]));
        table.push(&row);
    }
    let t = ic.positions.len();
    let beaten = match filters_beaten(ic) {
        0 => "worse than every fixed filter, even filter_1 (the best single 2×2 map for all sequences)".to_string(),
        MAX_FILTER => format!("better than every fixed filter up to filter_{MAX_FILTER}"),
        k => format!("as good as a fixed filter of {k} states: better than filter_{k}, worse than filter_{}", k + 1),
    };
    let last_only = c.config.train.loss_positions == Some(LossPositions::Last);
    let scored = match (c.config.model.causal, last_only) {
        (false, _) => {
            " Without the causal mask a position before the last sees its own target, so only the last is scored."
        }
        (true, true) => {
            " The model was trained on the last position only (train.loss_positions = \"last\"): the earlier \
             positions show what it does where it was never trained."
        }
        (true, false) => "",
    };
    let caption = format!(
        "Median relative one-step error ‖ŝ_{{t}} − s_{{t}}‖/‖s_{{t}}‖ at each position t of the context (state t \
         predicted from states 0 … t−1), over {} validation sequences with parameters from the training ranges ({}); \
         band: 5–95 % of them. At the last position (t = {t}) the model reaches {}: {beaten}. Baselines, in f64 on the \
         exact states: ls_fit fits M per sequence to the pairs before t (exact from t = 3; what is left is rounding), \
         filter_k is one fixed linear filter over the last k states fitted on the training sequences (it never knows \
         ω0), extrapolation_k the polynomial through the last k states. {}. The CSV beside the figure holds every \
         baseline.{scored}",
        c.config.data.n_valid,
        c.config.system,
        sci(ic.median_rel_err_last, 3),
        resemblance(ic),
    );
    Ok(drawn(c, "in_context_error", "error along the context", Figure::InContextError, table, caption))
}

/// `error_vs_parameters`: the error at the last position against ω0 and γ.
pub(crate) fn error_vs_parameters(c: &CaseData, ic: &InContext) -> Result<Entry> {
    let Some(seq) = &c.sequences else {
        return Ok(skipped(
            "error_vs_parameters",
            "No sequences.csv: the folder predates it (`physlens eval --run DIR` writes it).".into(),
        ));
    };
    let inside: Vec<f64> = seq.text("in_training_range")?.iter().map(|v| if v == "true" { 1.0 } else { 0.0 }).collect();
    let [omega0, gamma, err] = [seq.numbers("omega0")?, seq.numbers("gamma")?, seq.numbers("rel_err_last")?];
    let mut table = Table::new(&["omega0", "gamma", "in_training_range", "rel_err_last"]);
    for i in 0..err.len() {
        table.push(&[omega0[i], gamma[i], inside[i], err[i]]);
    }
    let range = |p: Param| match p {
        Param::Uniform(r) => Some(r),
        Param::Fixed(_) => None,
    };
    let ranges = [range(c.config.system.omega0), range(c.config.system.gamma)];
    let outside = match &ic.outside {
        Some(o) => format!(
            "; on {} sequences from the wider ranges ({}) with a parameter outside the training ranges, {}",
            o.n_sequences,
            o.system,
            sci(o.median_rel_err_last, 3)
        ),
        None => String::new(),
    };
    let caption = format!(
        "Relative error of the model's prediction at the last position of each validation sequence, against the \
         sequence's ω0 and γ (training ranges shaded; black: median in 20 bins). Median inside the training ranges \
         {}{outside}.",
        sci(ic.median_rel_err_last, 3)
    );
    let draw = move |t| Figure::ErrorVsParameters(t, Box::new(ranges));
    Ok(drawn(c, "error_vs_parameters", "error against ω0 and γ", draw, table, caption))
}
