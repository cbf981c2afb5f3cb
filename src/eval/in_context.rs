//! In-context evaluation: how well a model predicts the next state at each
//! position of its context, against the [`baselines`](crate::physics::baselines), on
//! sequences whose parameters come from the training ranges and on sequences
//! from wider ranges (docs/outputs.md, `in_context`).
//!
//! Position t (1 … T) is the prediction of state `s_t` from `s_0 … s_{t−1}`
//! (the model's token t − 1); its error is the relative error of docs/physics.md,
//! `‖ŝ_t − s_t‖/‖s_t‖`, against the clean state. Without the causal mask a
//! position before the last sees its own target, so only the last is scored.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{csv_number, finite, quantile};
use crate::data::Dataset;
use crate::model::{Activations, D_IN, Model};
use crate::physics::baselines::{Baseline, all_baselines};
use crate::physics::{Param, SystemSpec};
use crate::util::json::vec_nan_if_null;
use crate::util::mat2::Vec2;
use crate::util::real::Real;

/// Median, 5 % and 95 % quantiles of the relative one-step error, one value
/// per position (NaN, `null` in JSON, where a predictor has too few states
/// or the position is not scored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Median over sequences.
    #[serde(deserialize_with = "vec_nan_if_null")]
    pub median_rel_err: Vec<f64>,
    /// 5 % quantile.
    #[serde(default, deserialize_with = "vec_nan_if_null")]
    pub q05_rel_err: Vec<f64>,
    /// 95 % quantile.
    #[serde(default, deserialize_with = "vec_nan_if_null")]
    pub q95_rel_err: Vec<f64>,
}

/// The errors at the last position on one set of sequences.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastPosition {
    /// The parameter ranges the sequences were drawn from.
    pub system: SystemSpec,
    /// Sequences in the set.
    pub n_sequences: usize,
    /// The model's median relative error at the last position.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub median_rel_err_last: f64,
    /// Each baseline's median relative error at the last position.
    #[serde(deserialize_with = "crate::util::json::map_nan_if_null")]
    pub baselines: BTreeMap<String, f64>,
}

/// `in_context` of `eval.json` and `summary.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InContext {
    /// `1 … T`.
    pub positions: Vec<usize>,
    /// The model's errors per position, on validation sequences from the
    /// training ranges.
    #[serde(flatten)]
    pub model: Curve,
    /// The model's median error at the last position (the headline).
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub median_rel_err_last: f64,
    /// Each baseline's errors per position, on the same sequences (exact
    /// states, f64).
    pub baselines: BTreeMap<String, Curve>,
    /// The baseline whose predictions at the last position are closest to
    /// the model's (the smallest median of `‖ŝ_model − ŝ_baseline‖/‖s‖`).
    pub nearest_baseline: String,
    /// Whether the model resembles it: that distance is below [`RESEMBLES`]
    /// times the model's own median error (closer to the baseline than to
    /// the truth). When false the nearest baseline is only the least far.
    pub resembles_nearest: bool,
    /// The median distance to the nearest baseline.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub nearest_baseline_distance: f64,
    /// At the last position, sequences drawn from wider ranges ([`wider`])
    /// with at least one parameter outside the training ranges; `null` when
    /// no parameter is drawn per sequence.
    pub outside: Option<LastPosition>,
}

/// A baseline is named as the model's nearest only when the model's
/// predictions are closer to it than this fraction of the model's own error
/// (median, last position): closer to the baseline than to the truth.
pub const RESEMBLES: f64 = 0.5;

impl InContext {
    /// The nearest baseline when the model resembles it
    /// ([`InContext::resembles_nearest`]), `None` when it resembles none.
    pub fn resembled(&self) -> Option<&str> {
        self.resembles_nearest.then_some(self.nearest_baseline.as_str())
    }
}

/// The wider ranges of the out-of-range evaluation: every range `[lo, hi]`
/// of `spec` becomes `[lo/2, 1.25·hi]` (ω0 ∈ [1, 4] → [0.5, 5]); `None` when
/// no parameter is drawn per sequence.
pub fn wider(spec: &SystemSpec) -> Option<SystemSpec> {
    let widen = |p: Param| match p {
        Param::Uniform([lo, hi]) => Param::Uniform([lo / 2.0, 1.25 * hi]),
        fixed => fixed,
    };
    spec.fixed().is_none().then(|| SystemSpec {
        omega0: widen(spec.omega0),
        gamma: widen(spec.gamma),
        dt: widen(spec.dt),
        generator: spec.generator,
    })
}

/// Every sequence's errors: `[N][T]` relative errors of the model and of each
/// baseline, and each baseline's distance to the model at the last position.
struct Errors {
    model: Vec<Vec<f64>>,
    baselines: Vec<Vec<Vec<f64>>>, // [baseline][N][T]
    distance_last: Vec<Vec<f64>>,  // [baseline][N]
}

fn relative(a: Vec2, b: Vec2) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1]) / b[0].hypot(b[1])
}

/// The model's predictions `[N, T, 2]` on `set` (in f64).
fn predictions<F: Real>(model: &Model<F>, set: &Dataset<F>) -> Vec<f64> {
    let w = model.cfg.n_ctx * D_IN;
    let chunk = Activations::<F>::chunk(&model.cfg, set.len());
    let mut acts = Activations::new(&model.cfg, chunk);
    let mut out = Vec::with_capacity(set.inputs.len());
    for inputs in set.inputs.chunks(chunk * w) {
        model.forward(inputs, &mut acts);
        out.extend(acts.pred[..inputs.len()].iter().map(|v| v.f64()));
    }
    out
}

fn errors<F: Real>(model: &Model<F>, set: &Dataset<F>, baselines: &[Baseline]) -> Errors {
    let t = model.cfg.n_ctx;
    let pred = predictions(model, set);
    let scored = |pos: usize| model.cfg.causal || pos == t;
    let mut out = Errors {
        model: vec![],
        baselines: vec![vec![]; baselines.len()],
        distance_last: vec![vec![]; baselines.len()],
    };
    for n in 0..set.len() {
        let states = set.clean_states(n);
        let model_pred = |pos: usize| {
            let p = &pred[(n * t + pos - 1) * D_IN..][..D_IN];
            [p[0], p[1]]
        };
        out.model.push(
            (1..=t).map(|pos| if scored(pos) { relative(model_pred(pos), states[pos]) } else { f64::NAN }).collect(),
        );
        for (b, baseline) in baselines.iter().enumerate() {
            let predicted: Vec<Option<Vec2>> = (1..=t).map(|pos| baseline.predict(&states[..pos])).collect();
            let errs = (1..=t).map(|pos| predicted[pos - 1].map_or(f64::NAN, |p| relative(p, states[pos]))).collect();
            out.baselines[b].push(errs);
            let (m, s) = (model_pred(t), states[t]);
            let distance = predicted[t - 1].map_or(f64::NAN, |p| (m[0] - p[0]).hypot(m[1] - p[1]) / s[0].hypot(s[1]));
            out.distance_last[b].push(distance);
        }
    }
    out
}

/// Median, 5 % and 95 % quantile of the finite values (NaN when none is).
fn stats(values: impl Iterator<Item = f64>) -> [f64; 3] {
    let mut xs: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if xs.is_empty() {
        return [f64::NAN; 3];
    }
    xs.sort_by(f64::total_cmp);
    [0.5, 0.05, 0.95].map(|q| finite(quantile(&xs, q)))
}

fn curve(per_sequence: &[Vec<f64>], t: usize) -> Curve {
    let per_position: Vec<[f64; 3]> = (0..t).map(|p| stats(per_sequence.iter().map(|e| e[p]))).collect();
    Curve {
        median_rel_err: per_position.iter().map(|s| s[0]).collect(),
        q05_rel_err: per_position.iter().map(|s| s[1]).collect(),
        q95_rel_err: per_position.iter().map(|s| s[2]).collect(),
    }
}

fn last_position(system: SystemSpec, errors: &Errors, baselines: &[Baseline], t: usize, keep: &[bool]) -> LastPosition {
    let median = |e: &[Vec<f64>]| stats(e.iter().zip(keep).filter(|(_, k)| **k).map(|(e, _)| e[t - 1]))[0];
    LastPosition {
        system,
        n_sequences: keep.iter().filter(|k| **k).count(),
        median_rel_err_last: median(&errors.model),
        baselines: baselines.iter().zip(&errors.baselines).map(|(b, e)| (b.name(), median(e))).collect(),
    }
}

/// What [`evaluate`] returns: the record and the per-sequence table.
#[derive(Clone, Debug)]
pub struct InContextResults {
    /// The `in_context` record.
    pub record: InContext,
    /// `sequences.csv`: one row per sequence of both sets.
    pub sequences_csv: String,
}

/// Evaluates `model` on `valid` (parameters from the training ranges
/// `spec`) and on `wide` (from [`wider`] ranges, when there are ranges),
/// against the baselines, the fixed filters fitted on `training` (clean
/// state sequences of the training set).
pub fn evaluate<F: Real>(
    model: &Model<F>,
    spec: &SystemSpec,
    valid: &Dataset<F>,
    wide: Option<&(SystemSpec, Dataset<F>)>,
    training: &[Vec<Vec2>],
) -> InContextResults {
    let t = model.cfg.n_ctx;
    let baselines = all_baselines(training);
    let inside = errors(model, valid, &baselines);
    let curves: BTreeMap<String, Curve> =
        baselines.iter().zip(&inside.baselines).map(|(b, e)| (b.name(), curve(e, t))).collect();
    let distances: Vec<f64> = inside.distance_last.iter().map(|d| stats(d.iter().copied())[0]).collect();
    let nearest =
        (0..baselines.len()).filter(|&b| !distances[b].is_nan()).min_by(|&a, &b| distances[a].total_cmp(&distances[b]));
    let model_curve = curve(&inside.model, t);
    let last = model_curve.median_rel_err[t - 1];
    let mut csv = sequences_header(&baselines);
    write_rows(&mut csv, "inside", valid, spec, &inside, t);
    let outside = wide.map(|(wide_spec, set)| {
        let errs = errors(model, set, &baselines);
        write_rows(&mut csv, "wide", set, spec, &errs, t);
        let keep: Vec<bool> = set.systems.iter().map(|s| !spec.contains(s)).collect();
        last_position(*wide_spec, &errs, &baselines, t, &keep)
    });
    let record = InContext {
        positions: (1..=t).collect(),
        median_rel_err_last: last,
        model: model_curve,
        baselines: curves,
        nearest_baseline: nearest.map_or_else(String::new, |b| baselines[b].name()),
        resembles_nearest: nearest.is_some_and(|b| distances[b] < RESEMBLES * last),
        nearest_baseline_distance: nearest.map_or(f64::NAN, |b| distances[b]),
        outside,
    };
    InContextResults { record, sequences_csv: csv }
}

fn sequences_header(baselines: &[Baseline]) -> String {
    let mut header = String::from("set,omega0,gamma,dt,x0,p0,energy,in_training_range,rel_err_last");
    for b in baselines {
        write!(header, ",{}_rel_err_last", b.name()).expect("write to String");
    }
    header.push('\n');
    header
}

fn write_rows<F: Real>(
    csv: &mut String,
    set_name: &str,
    set: &Dataset<F>,
    spec: &SystemSpec,
    errors: &Errors,
    t: usize,
) {
    for (n, system) in set.systems.iter().enumerate() {
        let energy = system.oscillator().energy(set.starts[n]);
        let inside = spec.contains(system);
        write!(
            csv,
            "{set_name},{:e},{:e},{:e},{:e},{:e},{:e},{inside},{}",
            system.omega0,
            system.gamma,
            system.dt,
            set.starts[n][0],
            set.starts[n][1],
            energy,
            csv_number(errors.model[n][t - 1])
        )
        .expect("write to String");
        for b in &errors.baselines {
            write!(csv, ",{}", csv_number(b[n][t - 1])).expect("write to String");
        }
        csv.push('\n');
    }
}
