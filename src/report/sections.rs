//! What each figure of a case shows: one function per figure or section of the
//! report, each turning the case's files into its entry, the figure id (file
//! stem) and its [`Content`] (the figure, the table written beside it as CSV
//! and the caption, or why the figure is left out). The order of the page and
//! the page itself are in [`crate::report::build`].

pub(crate) mod in_context;
pub(crate) mod interpretation;

use crate::interpret::map::MapReport;
use crate::physics::readout::RuleVerdict;
use crate::physics::{Regime, System};
use crate::report::data::{
    CaseData, SHOWN_TRAJECTORIES, Table, component_errors, distance_table, eigenvalue_table, energies, map_table,
    path_table, select, shown_trajectories,
};
use crate::report::figures::{CLIP, Figure, Titled, outside_view};
use crate::report::plot::sci;
use crate::util::error::Result;
use crate::util::real::max_abs;

/// One figure of one case, or why it is left out.
pub(crate) enum Content {
    /// A figure to draw, the table written beside it as CSV, and its caption.
    Figure { figure: Titled, data: Table, caption: String },
    /// Why the figure is left out.
    Skipped(String),
    /// A paragraph of findings in words (no figure).
    Text(String),
}

/// One slot of a case: figure id (file stem) and what goes there.
pub(crate) type Entry = (&'static str, Content);

// ---------------------------------------------------------------- shared shapes

/// `figure` titled `<case> — what`.
fn titled(case: &CaseData, what: &str, figure: Figure) -> Titled {
    Titled { title: format!("{} — {what}", case.numbers.name), figure }
}

/// The figure `id`, titled `<case> — what`, drawn by `draw` from `data`,
/// which is also the CSV written beside it.
fn drawn(
    c: &CaseData,
    id: &'static str,
    what: &str,
    draw: impl FnOnce(Table) -> Figure,
    data: Table,
    caption: String,
) -> Entry {
    let figure = titled(c, what, draw(data.clone()));
    (id, Content::Figure { figure, data, caption })
}

/// The figure `id` left out, and why.
fn skipped(id: &'static str, why: String) -> Entry {
    (id, Content::Skipped(why))
}

/// The figure `id` of one system's trajectories, left out of a case whose
/// parameters are drawn per sequence.
fn per_sequence(id: &'static str) -> Entry {
    skipped(
        id,
        "Not drawn: the parameters are drawn per sequence, so each rollout has its own ω0 and γ (and energy \
         scale); the rollout error below and the in-context figures cover every trajectory, and trajectories.csv \
         holds the rollouts."
            .into(),
    )
}

/// A value for a caption, NaN where the column is empty.
fn or_nan(v: Option<&f64>) -> f64 {
    v.copied().unwrap_or(f64::NAN)
}

/// What the captions of the rollout and phase figures add for a rollout
/// that diverged or leaves the plotted area: the step at which the model's
/// states stop being finite (`diverged_at` of the rollout summary) and the
/// first step of the shown trajectories at which x or p leaves the clipped
/// axes (see [`outside_view`]).
fn divergence_note(c: &CaseData, shown: &Table) -> Result<String> {
    let [step, x, p, xe, pe] = ["step", "x", "p", "x_exact", "p_exact"].map(|n| shown.numbers(n));
    let (step, x, p, xe, pe) = (step?, x?, p?, xe?, pe?);
    let (out_x, out_p) = (outside_view(&x, &xe), outside_view(&p, &pe));
    let leaves = (0..step.len()).filter(|&i| out_x[i] || out_p[i]).map(|i| step[i]).fold(f64::INFINITY, f64::min);
    let mut note = String::new();
    if let Some(n) = c.numbers.rollout.diverged_at {
        note.push_str(&format!(" The rollout diverged: model states are no longer finite from step {n} on."));
    }
    if leaves.is_finite() {
        note.push_str(&format!(
            " The axes stop at about {CLIP}× the largest exact value so that the exact orbits stay readable; the \
             model's rollout leaves the plotted area from step {leaves} on."
        ));
    }
    Ok(note)
}

/// What the "exact" lines of the rollout figures follow: a rule's data, or
/// the exact flow in one of its regimes.
enum Reference {
    /// `[system] generator`, a numerical rule.
    Rule(&'static str),
    /// The exact flow at γ = 0.
    Conserving,
    /// The exact flow, 0 < γ < ω0.
    Underdamped,
    /// The exact flow, γ ≥ ω0 (critically or overdamped).
    NotOscillating(Regime),
}

/// The reference of the rollout figures of `system`.
fn reference(system: &System) -> Reference {
    if !system.generator.is_exact() {
        return Reference::Rule(system.generator.name());
    }
    match system.oscillator().regime() {
        _ if system.gamma == 0.0 => Reference::Conserving,
        Regime::Underdamped => Reference::Underdamped,
        regime => Reference::NotOscillating(regime),
    }
}

// ---------------------------------------------------------------- the figures

/// `training`: train loss and validation MSE (log) and the learning rate
/// against step, from `metrics.csv`.
pub(crate) fn training(c: &CaseData) -> Result<Entry> {
    let cfg = &c.config;
    let training = select(&c.metrics, &["step", "train_loss", "valid_mse", "lr"])?;
    let last_valid = or_nan(training.numbers("valid_mse")?.last());
    let caption = format!(
        "Train loss and validation MSE against step (log scale); validation energies reach {}, beyond the training range \
         E ≤ {}, and its MSE ends at {}. Below: the learning rate.",
        cfg.data.e_valid_max,
        cfg.data.e_train_max,
        sci(last_valid, 3)
    );
    let steps = training.numbers("step")?;
    let valid = training.numbers("valid_mse")?;
    let caption = match jump(&steps, &valid) {
        Some(j) => format!("{caption} {}", jump_words(&j, c.numbers.floor_mse)),
        None => caption,
    };
    let caption = match c.numbers.stopped_at_floor_step {
        Some(step) => format!(
            "{caption} Training stopped at the floating-point floor at step {step} of {} (train.stop_at_floor): the \
             validation MSE had stayed at or below ε²·mean‖s‖² for {} steps.",
            cfg.train.steps, cfg.train.floor_patience
        ),
        None => caption,
    };
    Ok(drawn(c, "training", "training", Figure::Training, training, caption))
}

/// A jump of the validation MSE: from its lowest value so far to more than
/// [`JUMP`] times that, and where it came back within [`BACK`] times.
struct Jump {
    /// Step and value of the lowest MSE before the jump.
    low: (f64, f64),
    /// First step above `JUMP × low`.
    at: f64,
    /// Highest MSE after the jump.
    peak: f64,
    /// First step from which the MSE stays within `BACK × low` to the end, if any.
    back: Option<f64>,
}

/// A rise by more than this factor over the lowest MSE so far is a jump.
const JUMP: f64 = 100.0;

/// The MSE is back once it stays within this factor of its lowest value before the jump.
const BACK: f64 = 10.0;

/// The first jump of `valid` (the validation MSE at `steps`), if there is one.
fn jump(steps: &[f64], valid: &[f64]) -> Option<Jump> {
    let mut low = (f64::NAN, f64::INFINITY);
    for (i, (&step, &v)) in steps.iter().zip(valid).enumerate().filter(|(_, (_, v))| v.is_finite()) {
        if v > JUMP * low.1 {
            let after = || steps[i..].iter().zip(&valid[i..]).filter(|(_, v)| v.is_finite());
            let peak = after().map(|(_, v)| *v).fold(v, f64::max);
            let last_above = after().filter(|(_, v)| **v > BACK * low.1).map(|(s, _)| *s).next_back();
            let back = after().map(|(s, _)| *s).find(|s| Some(*s) > last_above);
            return Some(Jump { low, at: step, peak, back });
        }
        if v < low.1 {
            low = (step, v);
        }
    }
    None
}

/// The caption's account of a jump; the mechanism is named only when the MSE
/// had reached the rounding floor `floor` (NaN where unknown) before it.
fn jump_words(j: &Jump, floor: f64) -> String {
    let back = match j.back {
        Some(step) => format!("it stays within {BACK}× of that low only from step {step} on"),
        None => format!("it does not settle back within {BACK}× of that low before the end"),
    };
    let mut words = format!(
        "The validation MSE jumps: it had fallen to {} by step {}, rises above {JUMP}× that at step {} (peak {}), and \
         {back}.",
        sci(j.low.1, 2),
        j.low.0,
        j.at,
        sci(j.peak, 2)
    );
    if j.low.1 <= BACK * floor {
        words.push_str(&format!(
            " The low was at the floating-point floor (ε²·mean‖s‖² = {}): there the gradients are rounding noise, \
             Adam's second-moment estimate decays to their size and its steps grow back to about the learning rate, \
             until the falling cosine rate brings the loss down again. train.stop_at_floor stops before the jump, \
             at some cost in accuracy (docs/config.md).",
            sci(floor, 2)
        ));
    }
    words
}

/// `rollouts`: x(t) and p(t) of the first [`SHOWN_TRAJECTORIES`] rollouts,
/// model against exact, from `trajectories.csv`.
pub(crate) fn rollouts(c: &CaseData) -> Result<Entry> {
    let omega0 = c.config.system.fixed().map(|s| s.omega0);
    if omega0.is_none() && !c.trajectories.header.iter().any(|h| h == "omega0") {
        return Ok(per_sequence("rollouts"));
    }
    let (cfg, steps) = (&c.config, c.numbers.rollout.steps);
    let shown = shown_trajectories(&c.trajectories)?;
    let caption = format!(
        "{SHOWN_TRAJECTORIES} of the {} rollouts over {steps} steps, the model fed its own predictions: wherever a thin \
         model line leaves its wide exact line the model has drifted (median error after {steps} steps: {}).{}",
        cfg.eval.n_rollouts,
        sci(c.numbers.rollout.median_rel_err_final, 3),
        divergence_note(c, &shown)?
    );
    let each =
        if omega0.is_none() { " Each trajectory has its own ω0 and γ, drawn from the training ranges." } else { "" };
    let caption = format!("{caption}{each}");
    Ok(drawn(c, "rollouts", "rollouts", |t| Figure::Rollout(t, omega0), shown, caption))
}

/// `phase`: the phase portrait, p against x of the same rollouts as
/// [`rollouts`], from `trajectories.csv`.
pub(crate) fn phase(c: &CaseData) -> Result<Entry> {
    let Some(system) = c.config.system.fixed() else { return Ok(per_sequence("phase")) };
    let orbit = match reference(&system) {
        Reference::Rule(rule) => {
            format!("the reference orbits are those of the {rule} rule the data were made with, not of the exact flow")
        }
        Reference::Conserving => "the exact orbits are closed ellipses (γ = 0 conserves energy)".to_string(),
        Reference::Underdamped => format!("the exact orbits spiral inwards (γ = {} dissipates energy)", system.gamma),
        Reference::NotOscillating(regime) => format!(
            "the exact orbits fall into the origin without circling it (γ = {} ≥ ω0 = {}: {})",
            system.gamma,
            system.omega0,
            regime.name()
        ),
    };
    let shown = shown_trajectories(&c.trajectories)?;
    let caption = format!(
        "Phase portrait p against x of the same rollouts (dots: starting states): {orbit}; a model that adds or \
         removes energy would spiral off them.{}",
        divergence_note(c, &shown)?
    );
    let omega0 = system.omega0;
    Ok(drawn(c, "phase", "phase portrait", |t| Figure::Phase(t, omega0), shown, caption))
}

/// `rollout_error`: median, 5–95 % band and maximum of the norm-based
/// relative error, and the median error relative to the initial state,
/// against step, from `rollout.csv`.
pub(crate) fn rollout_error(c: &CaseData) -> Result<Entry> {
    let columns = [
        "step",
        "median_rel_err",
        "q05_rel_err",
        "q95_rel_err",
        "max_rel_err",
        "median_err_vs_initial",
        "zero_start_norm",
    ];
    let errors = select(&c.rollout, &columns)?;
    let (median, vs_initial) = (errors.numbers("median_rel_err")?, errors.numbers("median_err_vs_initial")?);
    let r = &c.numbers.rollout;
    let mut caption = format!(
        "Error of the rolled-out state over {} rollouts: relative to the current exact state, ‖ŝₙ − sₙ‖/‖sₙ‖ (median, \
         5–95 % band, maximum), and relative to the initial state, ‖ŝₙ − sₙ‖/‖s₀‖ (median). The median relative error \
         goes from {} at step 0 to {} at step {}; the median error relative to the initial state ends at {}.",
        c.config.eval.n_rollouts,
        sci(or_nan(median.first()), 3),
        sci(or_nan(median.last()), 3),
        r.steps,
        sci(or_nan(vs_initial.last()), 3),
    );
    if let Some(n) = r.fixed_point_dominated_from {
        let pull = errors.numbers("zero_start_norm")?;
        caption.push_str(&format!(
            " From step {n} on, the exact state has decayed so far that the relative error is dominated by the model's \
             own fixed point (its rollout from the zero state reaches ‖ŝ‖ = {} by step {}, where the exact one stays at \
             0): there it measures that offset, not the dynamics, and the error relative to the initial state is the \
             one to read.",
            sci(or_nan(pull.last()), 3),
            r.steps
        ));
    }
    if let Some(n) = r.diverged_at {
        caption.push_str(&format!(
            " The rollout diverged: model states are no longer finite from step {n}, and the curves stop there."
        ));
    }
    Ok(drawn(c, "rollout_error", "rollout error", Figure::RolloutError, errors, caption))
}

/// `component_error`: the seed's per-component relative errors of one
/// trajectory beside the norm-based one, from `trajectories.csv`.
pub(crate) fn component_error(c: &CaseData) -> Result<Entry> {
    let caption = "The seed's per-component error |Δx|/|x| (and |Δp|/|p|, Δ = model − exact) of one trajectory spikes wherever \
         x (or p) crosses zero (dashed lines for x) because its denominator vanishes there, not because the model \
         errs; the norm-based ‖Δs‖/‖s‖ (black) has no spikes, which is why it is the headline.";
    let components = component_errors(&c.trajectories)?;
    Ok(drawn(c, "component_error", "per-component error", Figure::ComponentError, components, caption.into()))
}

/// `energy`: energy of the shown rollouts, model against exact, and their
/// relative difference, from `trajectories.csv`.
pub(crate) fn energy(c: &CaseData) -> Result<Entry> {
    let Some(system) = c.config.system.fixed() else { return Ok(per_sequence("energy")) };
    let energy = energies(&c.trajectories, system.omega0)?;
    let (model, exact) = (energy.numbers("energy")?, energy.numbers("energy_exact")?);
    let exact_and_zero: Vec<f64> = exact.iter().copied().chain([0.0]).collect();
    let rel_diff = energy.numbers("rel_diff")?;
    let drift = max_abs(&rel_diff);
    let trend = match reference(&system) {
        Reference::Rule(rule) => {
            format!("the reference follows the {rule} rule the data were made with, not the exact flow")
        }
        Reference::Conserving => "exactly conserved".into(),
        Reference::Underdamped => "decaying on average as e^{−2γt}".into(),
        Reference::NotOscillating(regime) => format!("decaying without oscillation ({})", regime.name()),
    };
    let mut caption = format!(
        "Energy E = ½(p² + ω_{{0}}² x²) along the rollouts, model against exact ({trend}), and below their difference \
         relative to the starting energy, ΔE/E₀ with ΔE = E_{{model}} − E_{{exact}}: at most {} here.",
        sci(drift, 3)
    );
    if let Some(n) = c.numbers.rollout.diverged_at {
        caption.push_str(&format!(
            " The rollout diverged: model states are no longer finite from step {n} on, so the largest difference is \
             n/a and the lines stop there."
        ));
    }
    if outside_view(&model, &exact_and_zero).into_iter().any(|out| out) {
        caption.push_str(&format!(
            " The energy axis stops at about {CLIP}× the largest exact energy; the model's energy leaves the plotted \
             area."
        ));
    }
    if rel_diff.iter().any(|v| v.abs() > CLIP) {
        caption.push_str(&format!(" The ΔE/E₀ axis stops at ±{CLIP}; larger differences leave it."));
    }
    Ok(drawn(c, "energy", "energy", Figure::Energy, energy, caption))
}

/// The three figures of the learned map from `interpret.json`
/// ([`eigenvalues`], [`rule_distances`], [`learned_map`]), or for each of
/// them why there is none.
pub(crate) fn map_figures(c: &CaseData) -> Result<Vec<Entry>> {
    match &c.map {
        Some(map) => Ok(vec![eigenvalues(c, map), rule_distances(c, map), learned_map(c, map)?]),
        None => {
            let why = match c.config.system.fixed() {
                None => format!(
                    "Not drawn: the parameters are drawn per sequence ({}), so there is no one system to read a map \
                     against (interpret.json holds only in_context); the in-context figures show what the model does instead.",
                    c.config.system
                ),
                Some(_) => format!(
                    "No interpret.json in {}: this model (context {}) is not one affine map, so there is no map to \
                     read eigenvalues and rule distances from.",
                    c.dir.display(),
                    c.config.data.context
                ),
            };
            Ok(["eigenvalues", "rule_distances", "map"].into_iter().map(|id| skipped(id, why.clone())).collect())
        }
    }
}

/// Largest distance between learned and exact eigenvalues at which the
/// caption says the learned ones sit on the exact rings (a fraction of a
/// ring's radius, at the scale of the figure and of its zoom).
const ON_RINGS: f64 = 1e-3;

/// `eigenvalues`: eigenvalues of the learned map, of the exact propagator and
/// of every candidate rule on the complex plane, from `interpret.json`.
pub(crate) fn eigenvalues(c: &CaseData, map: &MapReport) -> Entry {
    let kind = if map.map_kind.is_empty() { "effective map".to_string() } else { map.map_kind.clone() };
    let gap = eigenvalue_gap(map);
    let placement = if gap <= ON_RINGS {
        format!("sit on the exact e^{{(−γ ± iω)Δt}} (black rings), at most {} apart", sci(gap, 2))
    } else {
        format!(
            "lie off the exact e^{{(−γ ± iω)Δt}} (black rings): up to {} away, more than the {} at which they would \
             look on them",
            sci(gap, 2),
            sci(ON_RINGS, 1)
        )
    };
    let caption = format!(
        "Eigenvalues of the learned map ({kind}; filled orange dots) {placement}, and those of every candidate rule: \
         in the zoom, rules outside the unit circle add energy (Euler), rules inside remove it (implicit Euler)."
    );
    drawn(c, "eigenvalues", "eigenvalues", Figure::Eigenvalues, eigenvalue_table(map), caption)
}

/// The largest distance from a learned eigenvalue to the nearest exact one.
fn eigenvalue_gap(map: &MapReport) -> f64 {
    map.eigenvalues
        .iter()
        .map(|z| map.exact_eigenvalues.iter().map(|e| (e.re - z.re).hypot(e.im - z.im)).fold(f64::INFINITY, f64::min))
        .fold(0.0, f64::max)
}

/// `rule_distances`: Frobenius distance from the learned map to each
/// candidate update rule, and what they allow one to say (the record's
/// `rule_verdict`), from `interpret.json`.
pub(crate) fn rule_distances(c: &CaseData, map: &MapReport) -> Entry {
    let (s, dt) = (sci(map.rule_separation, 3), map.truth.system.dt);
    let verdict = match (map.methods.as_slice(), map.rule_verdict) {
        ([first, second, ..], RuleVerdict::Runs) => format!(
            "the nearest is {} at {}, and the runner-up {} is {}× farther, beyond the factor 10 (dashed line) \
             needed to name it",
            first.name,
            sci(first.distance, 3),
            second.name,
            sci(map.margin, 3)
        ),
        ([first, second, ..], RuleVerdict::CannotTellApart) => format!(
            "{a} and {b} lie only {s} apart at Δt = {dt}, and the model is {} from {a} and {} from {b} (a factor {} \
             < 10): it cannot be said to run one rather than the other",
            sci(first.distance, 3),
            sci(second.distance, 3),
            sci(map.margin, 3),
            a = first.name,
            b = second.name,
        ),
        ([first, second, ..], RuleVerdict::NoneOfThem) => format!(
            "the model runs none of them: the nearest, {a}, is {} away, farther than the {s} between {a} and the \
             runner-up {b} at Δt = {dt}, so its own error is too large to tell the rules apart",
            sci(first.distance, 3),
            a = first.name,
            b = second.name,
        ),
        _ => "there are fewer than two rules to compare".into(),
    };
    let caption =
        format!("Frobenius distance ‖M − M_{{rule}}‖ from the learned map to each candidate update rule: {verdict}.");
    drawn(c, "rule_distances", "distance to each rule", Figure::Distances, distance_table(map), caption)
}

/// `map`: entries of the learned map beside the exact propagator and their
/// difference, from `interpret.json`.
pub(crate) fn learned_map(c: &CaseData, map: &MapReport) -> Result<Entry> {
    let entries = map_table(map);
    let diff = max_abs(&entries.filter("term", "learned - exact")?.numbers("value")?);
    let caption = format!(
        "Entries of the learned map M (column convention s′ = M s + c; rows: output, columns: input) beside \
         the exact propagator e^{{AΔt}}, each with its colour bar; the difference has its own colour scale (largest \
         entry {}).",
        sci(diff, 2)
    );
    Ok(drawn(c, "map", "learned map", |t| Figure::Matrices(t, false), entries, caption))
}

/// `paths`: the map split into the direct and the OV paths of each head,
/// from `model.safetensors`; left out without the file, or when the model
/// (context above 1) has no fixed map.
pub(crate) fn paths(c: &CaseData) -> Result<Entry> {
    Ok(match (&c.model, c.model.as_ref().and_then(path_table)) {
        (_, Some(paths)) => {
            let heads = paths.text("term")?.iter().filter(|t| t.starts_with('L')).count() / 4;
            let heads = if heads == 1 { "the head".to_string() } else { format!("each of the {heads} heads") };
            let caption = format!(
                "The map split into the direct path (W_{{E}} W_{{U}})ᵀ and the OV path (W_{{E}} W_{{V}} W_{{O}} \
                 W_{{U}})ᵀ of {heads}, on one colour scale (colour bars); they add up to M (last panel). Only the sum is fixed by the \
                 task: how it is shared between the paths is the model's choice."
            );
            drawn(c, "paths", "path decomposition", |t| Figure::Matrices(t, true), paths, caption)
        }
        (None, _) => skipped("paths", format!("No model.safetensors in {}.", c.dir.display())),
        (Some(model), None) => skipped(
            "paths",
            model.paths_left_out().map(|why| format!("{why}.")).unwrap_or_else(|| {
                format!(
                    "Context {}: the map depends on the input through the attention pattern, so it has no fixed path decomposition.",
                    c.config.data.context
                )
            }),
        ),
    })
}

/// `attention`: attention weights of each layer and head, from
/// `attention.csv`; left out at context 1 or without the file.
pub(crate) fn attention(c: &CaseData) -> Result<Entry> {
    let context = c.config.data.context;
    Ok(match &c.attention {
        Some(t) => {
            let mask = if c.config.model.causal {
                "the causal mask leaves the upper triangle without weights (no key after the query)"
            } else {
                "without the causal mask every query attends to every key"
            };
            let caption = format!(
                "Attention weights of each layer and head (rows: query position, columns: key position; colour \
                 bar: 0 to 1), from attention.csv; {mask}."
            );
            let data = select(t, &["layer", "head", "query", "key", "weight"])?;
            drawn(c, "attention", "attention patterns", Figure::Attention, data, caption)
        }
        None if context == 1 => skipped(
            "attention",
            "Context 1: a single token can only attend to itself (weight 1), so there is no pattern to show.".into(),
        ),
        None => skipped(
            "attention",
            format!(
                "No attention.csv in {}: the attention patterns of this context-{context} model were not saved.",
                c.dir.display()
            ),
        ),
    })
}

/// `error_vs_energy`: relative one-step error of the validation samples
/// against their energy, inside and beyond the training range, from
/// `error_vs_energy.csv`; left out without the file.
pub(crate) fn error_vs_energy(c: &CaseData) -> Result<Entry> {
    let e_train_max = c.config.data.e_train_max;
    let Some(t) = &c.error_vs_energy else {
        return Ok(skipped(
            "error_vs_energy",
            format!(
                "No error_vs_energy.csv in {} (a run folder from before it was written): `physlens eval --run {}` writes it.",
                c.dir.display(),
                c.dir.display()
            ),
        ));
    };
    let data = select(t, &["energy", "sq_err", "rel_err"])?;
    let (e, r) = (data.numbers("energy")?, data.numbers("rel_err")?);
    let med = |inside: bool| {
        let mut v: Vec<f64> = e
            .iter()
            .zip(&r)
            .filter(|(e, r)| (**e <= e_train_max) == inside && r.is_finite())
            .map(|(_, r)| *r)
            .collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let compare = match (med(true), med(false)) {
        (Some(a), Some(b)) => format!("the median error is {} inside and {} beyond it", sci(a, 3), sci(b, 3)),
        _ => "all samples lie on one side of it".into(),
    };
    let caption = format!(
        "Relative one-step error of the {} validation samples against their energy: training covered \
         E ≤ {e_train_max} (shaded), to the right the model extrapolates; {compare}.",
        e.len()
    );
    let what = "error against energy";
    Ok(drawn(c, "error_vs_energy", what, |t| Figure::ErrorVsEnergy(t, e_train_max), data, caption))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_is_found_with_its_low_peak_and_the_step_it_settles_back() {
        let steps: Vec<f64> = (1..=8).map(|s| f64::from(s) * 100.0).collect();
        let valid = [1e-3, 1e-12, 2e-12, 5e-9, 1e-8, 2e-11, 5e-12, 4e-12];
        let j = jump(&steps, &valid).unwrap();
        assert_eq!((j.low, j.at, j.peak, j.back), ((200.0, 1e-12), 400.0, 1e-8, Some(700.0)));
        // Words name the mechanism only at the floor.
        assert!(jump_words(&j, 1e-12).contains("floating-point floor"));
        assert!(!jump_words(&j, 1e-14).contains("floating-point floor"));
        assert!(!jump_words(&j, f64::NAN).contains("floating-point floor"));
    }

    #[test]
    fn a_falling_or_noisy_curve_has_no_jump() {
        let steps = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!(jump(&steps, &[1.0, 0.1, 0.5, 0.01, f64::NAN]).is_none());
        assert!(jump(&steps, &[1e-12, 5e-11, 9e-11, 2e-12, 1e-12]).is_none());
    }
}
