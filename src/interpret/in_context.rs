//! In-context interpretation (docs/in-context.md): what a model whose system changes
//! from one sequence to the next computes, read two ways and compared with
//! known algorithms.
//!
//! - **Behaviour** ([`InContextReport::implied`]): per validation sequence,
//!   the least-squares 2×2 map `M̂` with `ŝ ≈ M̂ s` (no offset: the
//!   oscillator has none) over [`WINDOWS`] consecutive full-context windows
//!   of its trajectory (window `j` = `s_j … s_{j+T−1}`, `ŝ` its last
//!   prediction, `s = s_{j+T−1}`), read out with
//!   [`spectral`](crate::physics::readout::spectral) and regressed on the
//!   truth. Sliding whole windows (rather than the positions of one window)
//!   scores only the prediction with the full context, works without the
//!   causal mask and for context 1.
//! - **Mechanism** ([`InContextReport::jacobian_implied`]): the same readout
//!   of the exact Jacobian `∂ŝ_T/∂s_{T−1}` of window 0, where it has
//!   oscillator form ([`has_oscillator_form`]); `null` with the reason when
//!   fewer than [`FORM_SHARE`] of the sequences' Jacobians have it.
//! - **Algorithm** ([`FilterReport`]): the token Jacobians of window 0 as an
//!   effective linear filter `ŝ_T ≈ Σ_k taps[k] s_{T−1−k}`, how much of their
//!   variation across sequences the true parameters explain, and their
//!   distance to candidate filters ([`candidate_names`]).
//!
//! Conventions: every 2×2 map is in the COLUMN convention of physics
//! (`taps[k][i][j] = ∂ŝ_i/∂s_{T−1−k, j}`); `k = 0` is the last token.
//!
//! # Shapes
//! N validation sequences, T = `n_ctx` tokens, W = [`WINDOWS`]: trajectories
//! `[N][T + W − 1]` states, window inputs `[N·W, T, 2]`, Jacobians
//! `[N, T, 2, 2]`, taps `[T]` 2×2.

use std::fmt::Write as _;

use nalgebra::DMatrix;
use serde::Serialize;

use crate::data::{Dataset, Sampler};
use crate::interpret::context_probes::{ProbeGrid, probe_grid};
use crate::interpret::jacobian::{Jacobians, last_prediction_jacobians};
use crate::model::{Activations, D_IN, Model};
use crate::physics::baselines::{FIT_SEQUENCES, LinearFilter, MAX_EXTRAPOLATION, MAX_FILTER, least_squares};
use crate::physics::readout::{MARGIN_IDENTIFIABLE, SpectralReadout, spectral};
use crate::physics::{System, SystemSpec};
use crate::util::mat2::{self, Complex, Mat2, Vec2};
use crate::util::rng::{Rng, Stream};

/// Full-context windows per sequence in the behaviour fit (8 equations for
/// the 4 unknowns of `M̂`).
pub const WINDOWS: usize = 4;

/// Share of sequences whose last-token Jacobian must have oscillator form
/// for `jacobian_implied` to be reported.
pub const FORM_SHARE: f64 = 0.5;

/// The taps count as constant across sequences when their standard
/// deviation (root of the mean squared deviation, summed over entries) is
/// below this fraction of `1 + ‖mean taps‖_F`: `param_r2` is then `null`.
pub const TAP_STD_TOL: f64 = 1e-9;

/// A behaviour-implied ω0 whose regression slope on the truth is below this
/// never adapts to the sequence.
pub const NEVER_ADAPTS_SLOPE: f64 = 0.2;

/// A behaviour-implied ω0 that adapts tracks the truth when its R² on the
/// truth reaches this; below, it follows the truth only loosely.
pub const TRACKS_R2: f64 = 0.9;

/// `param_r2` below this: the taps do not depend on the parameters.
pub const FIXED_FILTER_R2: f64 = 0.1;

/// A filter IS a candidate when its distance to it is below this fraction
/// of the filter's own size (`relative_distance`); farther, the verdict says
/// it is none of them and names the nearest only as the nearest.
pub const MATCH_TOL: f64 = 0.05;

/// Taps whose spread across sequences (`tap_relative_std`) is below this
/// count as one fixed filter; above it, they vary, with the parameters
/// (`param_r2`) or with the states.
pub const TAPS_VARY: f64 = 0.05;

// ─── Report types ────────────────────────────────────────────────────────

/// A readout regressed on the truth across sequences.
#[derive(Clone, Debug, Serialize)]
pub struct Regression {
    /// Least-squares slope of implied on true (1 = tracks the truth, 0 =
    /// ignores it); NaN (`null`) when the truth does not vary.
    pub slope: f64,
    /// Intercept of that line.
    pub intercept: f64,
    /// R² of that line (squared correlation); 0 when the implied values do
    /// not vary, NaN when the truth does not.
    pub r2: f64,
    /// Median of `|implied − true|`.
    pub median_abs_err: f64,
    /// Median implied value.
    pub median_implied: f64,
    /// `[min, max]` of the true values.
    pub truth_range: [f64; 2],
    /// Sequences in the regression (those of oscillator form).
    pub n: usize,
}

/// One readout (behaviour or mechanism) across sequences.
#[derive(Clone, Debug, Serialize)]
pub struct Implied {
    /// Implied ω0 against the true ω0.
    pub omega0: Regression,
    /// Implied γ against the true γ.
    pub gamma: Regression,
    /// Sequences read.
    pub n_sequences: usize,
    /// Sequences whose map has oscillator form (in the regressions).
    pub n_oscillator_form: usize,
    /// Sequences left out, by reason: `real_eigenvalues`, `growing`, `aliased` (complex
    /// eigenvalues but ωΔt not identifiable or det ≤ 0), `undetermined` (the
    /// states do not fix the map).
    pub left_out: LeftOut,
}

/// Counts of sequences without an oscillator reading, by reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeftOut {
    /// Real eigenvalues.
    pub real_eigenvalues: usize,
    /// Complex eigenvalues of a map that grows by more than [`GROWTH_TOL`] per step.
    pub growing: usize,
    /// Complex eigenvalues, but not identifiable (aliased ω, det ≤ 0).
    pub aliased: usize,
    /// The behaviour fit is not determined (collinear states).
    pub undetermined: usize,
}

/// The distance of the effective filter to one candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Candidate {
    /// `filter_k`, `extrapolation_k`, `cayley_hamilton` or `exact_step`.
    pub name: String,
    /// Mean over sequences of `sqrt(Σ_k ‖J_k − C_k‖_F²)` over all T taps.
    pub distance: f64,
    /// `distance` over the filter's size ([`FilterReport::size`]): below
    /// [`MATCH_TOL`] the filter is this candidate.
    pub relative_distance: f64,
}

/// The token Jacobians read as a linear filter.
#[derive(Clone, Debug, Serialize)]
pub struct FilterReport {
    /// `[T]`: `taps[k]` = mean over sequences of `∂ŝ_T/∂s_{T−1−k}`, column
    /// convention, `k = 0` the last token.
    pub taps: Vec<Mat2>,
    /// Standard deviation of the per-sequence taps around their mean (root of
    /// the mean over sequences of `Σ_k ‖J_k − taps[k]‖_F²`).
    pub tap_std: f64,
    /// The filter's size: mean over sequences of `sqrt(Σ_k ‖J_k‖_F²)`.
    pub size: f64,
    /// `tap_std / size`: below [`TAPS_VARY`] the taps are one fixed filter.
    pub tap_relative_std: f64,
    /// Share of the taps' variance across sequences explained by a linear
    /// regression on `(1, ω0, γ, Δt)` (the parameters that vary), summed over
    /// the 4T entries; `null` when the taps do not vary or no parameter does
    /// (see `param_r2_reason`).
    pub param_r2: Option<f64>,
    /// Why `param_r2` is `null`.
    pub param_r2_reason: Option<String>,
    /// Every candidate, ascending distance.
    pub candidates: Vec<Candidate>,
    /// The nearest candidate.
    pub nearest: String,
    /// `d₂/d₁` (`null` when infinite).
    pub margin: f64,
    /// Roots of `det(λ^K I − Σ_k taps[k] λ^{K−1−k})` for the mean taps, K the
    /// last tap above 1e-9 of the largest; by modulus, descending.
    pub roots: Vec<Complex>,
    /// `e^{(−γ ± iω)Δt}` at the MEAN true (ω0, γ, Δt) of the sequences.
    pub true_roots: [Complex; 2],
    /// For each true root, the distance to the nearest filter root.
    pub root_errors: [f64; 2],
}

/// `in_context` of `physlens interpret --json` (docs/in-context.md).
#[derive(Clone, Debug, Serialize)]
pub struct InContextReport {
    /// Validation sequences read.
    pub n_sequences: usize,
    /// Full-context windows per sequence in the behaviour fit.
    pub windows: usize,
    /// Behaviour: the per-sequence map `ŝ ≈ M̂ s` read out.
    pub implied: Implied,
    /// Mechanism: `∂ŝ_T/∂s_{T−1}` read out; `null` when too few sequences'
    /// Jacobians have oscillator form.
    pub jacobian_implied: Option<Implied>,
    /// Why `jacobian_implied` is `null`.
    pub jacobian_implied_reason: Option<String>,
    /// The token Jacobians as a filter.
    pub filter: FilterReport,
    /// The verdict in plain words.
    pub verdict: String,
    /// Held-out ridge probes from every site × position to the per-sequence
    /// parameters, `M` and the taps (JSON key `in_context.probes`; see
    /// [`crate::interpret::context_probes`]).
    pub probes: ProbeGrid,
    /// What the regressions and the mean taps summarise, kept for the files
    /// beside the report (`implied.csv`, the filter figure); not in the JSON.
    #[serde(skip)]
    pub per_sequence: PerSequence,
}

/// The per-sequence readings behind [`InContextReport`] (not serialised).
///
/// # Shapes
/// `readings` `[N]`, `nearest_taps` `[T]` 2×2.
#[derive(Clone, Debug, Default)]
pub struct PerSequence {
    /// One per validation sequence, in order.
    pub readings: Vec<SequenceReading>,
    /// The nearest candidate's taps ([`FilterReport::nearest`]), averaged over
    /// the sequences as `filter.taps` is (column convention, `k = 0` the
    /// last token); empty without candidates.
    pub nearest_taps: Vec<Mat2>,
}

/// One validation sequence: its system and both readouts.
#[derive(Clone, Debug)]
pub struct SequenceReading {
    /// The sequence's true system.
    pub system: System,
    /// Its behaviour map read out; `None` when the states do not fix the map.
    pub behaviour: Option<SpectralReadout>,
    /// Its `∂ŝ_T/∂s_{T−1}` read out.
    pub jacobian: SpectralReadout,
}

// ─── Data ────────────────────────────────────────────────────────────────

/// `n` validation sequences of `n_ctx` states drawn from `spec` as
/// [`crate::interpret::full::validation_inputs`] draws them (energies
/// uniform on `[0, e_max]`, no noise, [`Stream::Valid`] of `seed`), with
/// their per-sequence systems.
pub fn validation_set(spec: &SystemSpec, n_ctx: usize, n: usize, e_max: f64, seed: u64) -> Dataset<f64> {
    Dataset::generate(&Sampler::new(spec, e_max, 0.0, n_ctx), n, &mut Rng::new(seed, Stream::Valid))
}

/// [`FIT_SEQUENCES`] clean sequences of `n_ctx + 1` states from the
/// training ranges `spec` ([`Stream::Train`] of `seed`, energies on
/// `[0, e_max]`), to fit the `filter_k` candidates on as the baselines are.
pub fn training_sequences(spec: &SystemSpec, n_ctx: usize, e_max: f64, seed: u64) -> Vec<Vec<Vec2>> {
    let set = Dataset::<f64>::generate(
        &Sampler::new(spec, e_max, 0.0, n_ctx),
        FIT_SEQUENCES,
        &mut Rng::new(seed, Stream::Train),
    );
    (0..set.len()).map(|n| set.clean_states(n)).collect()
}

/// `len` exact states of sequence `n` of `set`, stepped from its first
/// state with its data step.
fn trajectory(set: &Dataset<f64>, n: usize, len: usize) -> Vec<Vec2> {
    let m = set.systems[n].data_step();
    std::iter::successors(Some(set.starts[n]), |s| Some(mat2::apply(&m, *s))).take(len).collect()
}

// ─── The analysis ────────────────────────────────────────────────────────

/// [`interpret_in_context`] on `n_valid` sequences drawn from the ranges
/// `spec` with energies on `[0, e_max]` ([`validation_set`] of `seed`), the
/// `filter_k` candidates fitted on sequences from the same ranges
/// ([`training_sequences`] of `seed`), the probes' untrained control drawn
/// with `init_seed`: what `physlens interpret` and a run report.
pub fn interpret_ranges(
    model: &Model<f64>,
    spec: &SystemSpec,
    (n_valid, e_max): (usize, f64),
    seed: u64,
    init_seed: u64,
) -> InContextReport {
    let t = model.cfg.n_ctx;
    let set = validation_set(spec, t, n_valid, e_max, seed);
    let training = training_sequences(spec, t, e_max, seed);
    interpret_in_context(model, &set, &training, init_seed)
}

/// Interprets `model` on the sequences of `set` (their systems and first
/// states; T = `model.cfg.n_ctx`), with the `filter_k` candidates fitted on
/// `training` (clean sequences from the training ranges). The probes'
/// untrained control is the model's shape at the initial weights of `seed`
/// ([`Stream::Init`], as training with `train.seed = seed` starts).
///
/// # Panics
/// If `set` holds no sequence.
pub fn interpret_in_context(
    model: &Model<f64>,
    set: &Dataset<f64>,
    training: &[Vec<Vec2>],
    seed: u64,
) -> InContextReport {
    let (n, t) = (set.systems.len(), model.cfg.n_ctx);
    assert!(n > 0, "no sequence to interpret");
    let trajectories: Vec<Vec<Vec2>> = (0..n).map(|b| trajectory(set, b, t + WINDOWS - 1)).collect();
    let last_preds = window_predictions(model, &trajectories);
    let truth: Vec<System> = set.systems.clone();
    let behaviour: Vec<Option<SpectralReadout>> = (0..n)
        .map(|b| {
            let states: Vec<Vec2> = trajectories[b][t - 1..].to_vec();
            behaviour_map(&states, &last_preds[b]).map(|m| spectral(&m, truth[b].dt))
        })
        .collect();
    let implied = implied_of(&behaviour, &truth);
    let window0: Vec<f64> = trajectories.iter().flat_map(|s| s[..t].iter().flat_map(|v| *v)).collect();
    let jac = last_prediction_jacobians(model, &window0);
    let mechanism: Vec<Option<SpectralReadout>> =
        (0..n).map(|b| Some(spectral(&jac.get(b, t - 1), truth[b].dt))).collect();
    let mech = implied_of(&mechanism, &truth);
    let (jacobian_implied, jacobian_implied_reason) = if (mech.n_oscillator_form as f64) < FORM_SHARE * n as f64 {
        let why = format!(
            "∂ŝ/∂(last token) has oscillator form (complex eigenvalues, identifiable ω, no growth) for only {} of \
             {n} sequences ({} real eigenvalues, {} growing, {} aliased): the prediction does not rest on the last \
             token alone, so that Jacobian is not a one-step map",
            mech.n_oscillator_form, mech.left_out.real_eigenvalues, mech.left_out.growing, mech.left_out.aliased
        );
        (None, Some(why))
    } else {
        (Some(mech), None)
    };
    let per: Vec<Vec<Mat2>> = (0..n).map(|b| taps_of(&jac, b)).collect();
    let (filter, nearest_taps) = filter_report(&per, &truth, training);
    let control = Model::<f64>::init(&model.cfg, &mut Rng::new(seed, Stream::Init));
    let probes = probe_grid(model, Some(&control), &window0, &truth, Some(&per));
    let per_sequence = PerSequence {
        nearest_taps,
        readings: (0..n)
            .map(|b| SequenceReading {
                system: truth[b],
                behaviour: behaviour[b].clone(),
                jacobian: mechanism[b].clone().expect("every Jacobian is read"),
            })
            .collect(),
    };
    let mut report = InContextReport {
        n_sequences: n,
        windows: WINDOWS,
        implied,
        jacobian_implied,
        jacobian_implied_reason,
        filter,
        verdict: String::new(),
        probes,
        per_sequence,
    };
    report.verdict = verdict(&report.implied, &report.filter);
    report
}

/// The model's last prediction on each of the [`WINDOWS`] windows of every
/// trajectory.
///
/// # Shapes
/// `trajectories` `[N][T + W − 1]`; returns `[N][W]`.
fn window_predictions(model: &Model<f64>, trajectories: &[Vec<Vec2>]) -> Vec<Vec<Vec2>> {
    let t = model.cfg.n_ctx;
    let inputs: Vec<f64> =
        trajectories.iter().flat_map(|s| (0..WINDOWS).flat_map(move |j| s[j..j + t].iter().flat_map(|v| *v))).collect();
    let w = t * D_IN;
    let rows = inputs.len() / w;
    let chunk = Activations::<f64>::chunk(&model.cfg, rows);
    let mut acts = Activations::new(&model.cfg, chunk);
    let mut last = Vec::with_capacity(rows);
    for part in inputs.chunks(chunk * w) {
        model.forward(part, &mut acts);
        for b in 0..part.len() / w {
            let p = &acts.pred[(b * t + t - 1) * D_IN..][..D_IN];
            last.push([p[0], p[1]]);
        }
    }
    last.chunks(WINDOWS).map(<[Vec2]>::to_vec).collect()
}

/// The least-squares `M̂` (column convention, no offset) with
/// `preds[j] ≈ M̂ states[j]`; `None` when the states do not span the plane.
///
/// # Shapes
/// `states` and `preds` `[W]`.
pub fn behaviour_map(states: &[Vec2], preds: &[Vec2]) -> Option<Mat2> {
    let mut sts = [[0.0; 2]; 2]; // Σ s sᵀ
    let mut pst = [[0.0; 2]; 2]; // Σ ŝ sᵀ
    for (s, p) in states.iter().zip(preds) {
        for i in 0..2 {
            for j in 0..2 {
                sts[i][j] += s[i] * s[j];
                pst[i][j] += p[i] * s[j];
            }
        }
    }
    if mat2::det(&sts) <= 1e-12 * sts[0][0] * sts[1][1] {
        return None;
    }
    Some(mat2::mul(&pst, &mat2::inverse(&sts)?)) // M̂ = (Σ ŝ sᵀ)(Σ s sᵀ)⁻¹
}

/// Largest growth per step `−γΔt` a map may show and still be read as a
/// (damped) oscillator: 1 %.
pub const GROWTH_TOL: f64 = 0.01;

/// Whether a readout at step `dt` is of oscillator form: complex
/// eigenvalues, an identifiable ω (ωΔt < π on the branch the map supports),
/// a finite γ (det > 0) that does not grow by more than [`GROWTH_TOL`] per
/// step (a damped oscillator's map never grows).
pub fn has_oscillator_form(r: &SpectralReadout, dt: f64) -> bool {
    r.oscillatory && r.identifiable && r.gamma.is_finite() && r.omega0.is_finite() && r.gamma * dt >= -GROWTH_TOL
}

/// Regresses the readouts of oscillator form on the truth, counting the others.
fn implied_of(readouts: &[Option<SpectralReadout>], truth: &[System]) -> Implied {
    let mut left_out = LeftOut::default();
    let mut kept: Vec<(&SpectralReadout, &System)> = vec![];
    for (r, s) in readouts.iter().zip(truth) {
        match r {
            None => left_out.undetermined += 1,
            Some(r) if has_oscillator_form(r, s.dt) => kept.push((r, s)),
            Some(r) if !r.oscillatory => left_out.real_eigenvalues += 1,
            Some(r) if r.identifiable && r.gamma.is_finite() => left_out.growing += 1,
            Some(_) => left_out.aliased += 1,
        }
    }
    let pairs = |f: fn(&SpectralReadout, &System) -> (f64, f64)| kept.iter().map(|(r, s)| f(r, s)).collect::<Vec<_>>();
    Implied {
        omega0: regression(&pairs(|r, s| (r.omega0, s.omega0))),
        gamma: regression(&pairs(|r, s| (r.gamma, s.gamma))),
        n_sequences: readouts.len(),
        n_oscillator_form: kept.len(),
        left_out,
    }
}

/// Least-squares line of `implied` on `truth` over the `(implied, truth)` pairs.
fn regression(pairs: &[(f64, f64)]) -> Regression {
    let n = pairs.len();
    let nan = f64::NAN;
    if n == 0 {
        let r = [nan; 2];
        return Regression {
            slope: nan,
            intercept: nan,
            r2: nan,
            median_abs_err: nan,
            median_implied: nan,
            truth_range: r,
            n,
        };
    }
    let nf = n as f64;
    let (my, mx) = (pairs.iter().map(|p| p.0).sum::<f64>() / nf, pairs.iter().map(|p| p.1).sum::<f64>() / nf);
    let (mut sxx, mut sxy, mut syy) = (0.0, 0.0, 0.0);
    for (y, x) in pairs {
        sxx += (x - mx) * (x - mx);
        sxy += (x - mx) * (y - my);
        syy += (y - my) * (y - my);
    }
    let truth_varies = sxx > 1e-24 * (1.0 + mx * mx) * nf;
    let slope = if truth_varies { sxy / sxx } else { nan };
    let r2 = if !truth_varies {
        nan
    } else if syy <= 1e-24 * (1.0 + my * my) * nf {
        0.0
    } else {
        sxy * sxy / (sxx * syy)
    };
    let truth_range = pairs.iter().fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], p| [lo.min(p.1), hi.max(p.1)]);
    Regression {
        slope,
        intercept: my - slope * mx,
        r2,
        median_abs_err: median(pairs.iter().map(|(y, x)| (y - x).abs()).collect()),
        median_implied: median(pairs.iter().map(|p| p.0).collect()),
        truth_range,
        n,
    }
}

/// Median of finite values (NaN when there is none).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 { xs[m] } else { 0.5 * (xs[m - 1] + xs[m]) }
}

// ─── The filter ──────────────────────────────────────────────────────────

/// A candidate's taps: the same for every sequence, or made from its system.
enum Taps {
    Fixed(Vec<Mat2>),
    PerSequence(fn(&System, usize) -> Vec<Mat2>),
}

/// `T` taps, `first` followed by zeros (truncated to `t`).
fn padded(first: &[Mat2], t: usize) -> Vec<Mat2> {
    (0..t).map(|k| first.get(k).copied().unwrap_or([[0.0; 2]; 2])).collect()
}

/// Cayley–Hamilton with the true one-step map: `s_{t+1} = tr(M) s_t − det(M) s_{t−1}`.
fn cayley_hamilton(system: &System, t: usize) -> Vec<Mat2> {
    let m = system.data_step();
    let i = mat2::identity();
    padded(&[mat2::scale(&i, mat2::trace(&m)), mat2::scale(&i, -mat2::det(&m))], t)
}

/// The exact one-step map `[M, 0, …]`.
fn exact_step(system: &System, t: usize) -> Vec<Mat2> {
    padded(&[system.data_step()], t)
}

/// Polynomial extrapolation of order k as taps: `(−1)^{j+1} C(k, j) I` on `s_{T−j}`.
fn extrapolation_taps(k: usize, t: usize) -> Vec<Mat2> {
    let mut binomial = 1.0;
    let taps: Vec<Mat2> = (1..=k)
        .map(|j| {
            binomial *= (k + 1 - j) as f64 / j as f64;
            let sign = if j % 2 == 1 { 1.0 } else { -1.0 };
            mat2::scale(&mat2::identity(), sign * binomial)
        })
        .collect();
    padded(&taps, t)
}

/// The candidate filters for context `t`: `filter_k` (k ≤ min(T, 8), those
/// `training` determines), `extrapolation_k` (k ≤ min(T, 4)),
/// `cayley_hamilton` (T ≥ 2) and `exact_step`.
fn candidates(training: &[Vec<Vec2>], t: usize) -> Vec<(String, Taps)> {
    let mut out: Vec<(String, Taps)> = vec![];
    for k in 1..=MAX_FILTER.min(t) {
        if let Some(f) = LinearFilter::fit(training, k) {
            out.push((format!("filter_{k}"), Taps::Fixed(padded(&f.taps, t))));
        }
    }
    for k in 1..=MAX_EXTRAPOLATION.min(t) {
        out.push((format!("extrapolation_{k}"), Taps::Fixed(extrapolation_taps(k, t))));
    }
    if t >= 2 {
        out.push(("cayley_hamilton".into(), Taps::PerSequence(cayley_hamilton)));
    }
    out.push(("exact_step".into(), Taps::PerSequence(exact_step)));
    out
}

/// The names of the candidates [`interpret_in_context`] compares a filter
/// of context `t` with, given the training sequences.
pub fn candidate_names(training: &[Vec<Vec2>], t: usize) -> Vec<String> {
    candidates(training, t).into_iter().map(|(name, _)| name).collect()
}

/// The mean over the sequences of per-sequence taps `per` `[N][T]` (N > 0).
fn mean_taps(per: &[Vec<Mat2>]) -> Vec<Mat2> {
    (0..per[0].len())
        .map(|k| {
            let sum = per.iter().fold([[0.0; 2]; 2], |acc, p| mat2::add(&acc, &p[k]));
            mat2::scale(&sum, 1.0 / per.len() as f64)
        })
        .collect()
}

/// Sequence `b`'s taps `[T]`, `k = 0` the last token.
fn taps_of(jac: &Jacobians, b: usize) -> Vec<Mat2> {
    let t = jac.n_ctx;
    (0..t).map(|k| jac.get(b, t - 1 - k)).collect()
}

/// `sqrt(Σ_k ‖a_k − b_k‖_F²)`.
fn tap_distance(a: &[Mat2], b: &[Mat2]) -> f64 {
    a.iter().zip(b).map(|(x, y)| mat2::frobenius(&mat2::sub(x, y)).powi(2)).sum::<f64>().sqrt()
}

/// The [`FilterReport`] of the per-sequence taps `per` `[N][T]` ([`taps_of`]
/// each sequence's Jacobians; N > 0) of sequences of systems `truth`, and
/// the nearest candidate's taps averaged over the same sequences (empty
/// without candidates; [`PerSequence::nearest_taps`]).
fn filter_report(per: &[Vec<Mat2>], truth: &[System], training: &[Vec<Vec2>]) -> (FilterReport, Vec<Mat2>) {
    let (n, t) = (per.len(), per[0].len());
    let taps = mean_taps(per);
    let tap_std = (per.iter().map(|p| tap_distance(p, &taps).powi(2)).sum::<f64>() / n as f64).sqrt();
    let zero = vec![[[0.0; 2]; 2]; t];
    let size = per.iter().map(|p| tap_distance(p, &zero)).sum::<f64>() / n as f64;
    let scale = 1.0 + tap_distance(&taps, &zero);
    let (param_r2, param_r2_reason) = if tap_std <= TAP_STD_TOL * scale {
        (None, Some(format!("the taps do not vary across sequences (std {tap_std:.1e})")))
    } else {
        match param_r2(per, &taps, truth) {
            Some(r2) => (Some(r2), None),
            None => (None, Some("no parameter varies across the sequences".into())),
        }
    };
    let fitted = candidates(training, t);
    let mut candidates: Vec<Candidate> = fitted
        .iter()
        .map(|(name, c)| {
            let d = (0..n)
                .map(|b| match c {
                    Taps::Fixed(taps) => tap_distance(&per[b], taps),
                    Taps::PerSequence(f) => tap_distance(&per[b], &f(&truth[b], t)),
                })
                .sum::<f64>()
                / n as f64;
            Candidate { name: name.clone(), distance: d, relative_distance: d / size }
        })
        .collect();
    candidates.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    let nearest = candidates.first().and_then(|first| fitted.iter().find(|(name, _)| *name == first.name));
    let nearest_taps = match nearest {
        None => vec![],
        Some((_, Taps::Fixed(taps))) => taps.clone(),
        Some((_, Taps::PerSequence(f))) => mean_taps(&truth.iter().map(|s| f(s, t)).collect::<Vec<_>>()),
    };
    let margin = match candidates.as_slice() {
        [a, b, ..] => b.distance / a.distance,
        _ => f64::NAN,
    };
    let mean = |f: fn(&System) -> f64| truth.iter().map(f).sum::<f64>() / n as f64;
    let mean_system = System::new(mean(|s| s.omega0), mean(|s| s.gamma), mean(|s| s.dt));
    let roots = filter_roots(&taps);
    let true_roots = true_roots(&mean_system);
    let root_errors =
        true_roots.map(|r| roots.iter().map(|x| (x.re - r.re).hypot(x.im - r.im)).fold(f64::INFINITY, f64::min));
    let report = FilterReport {
        taps,
        tap_std,
        size,
        tap_relative_std: tap_std / size,
        param_r2,
        param_r2_reason,
        nearest: candidates.first().map_or_else(String::new, |c| c.name.clone()),
        margin,
        candidates,
        roots,
        true_roots,
        root_errors,
    };
    (report, nearest_taps)
}

/// Share of the variance of the per-sequence taps (flattened, `4T` entries)
/// explained by a least-squares regression on `(1, ω0, γ, Δt)`, keeping
/// only the parameters that vary; `None` when none does.
///
/// # Shapes
/// `per` `[N][T]` 2×2, `mean` `[T]` 2×2, `truth` `[N]`.
fn param_r2(per: &[Vec<Mat2>], mean: &[Mat2], truth: &[System]) -> Option<f64> {
    let n = per.len();
    let getters: [fn(&System) -> f64; 3] = [|s| s.omega0, |s| s.gamma, |s| s.dt];
    let columns: Vec<Vec<f64>> = getters
        .iter()
        .map(|g| {
            let m = truth.iter().map(g).sum::<f64>() / n as f64;
            truth.iter().map(|s| g(s) - m).collect::<Vec<f64>>()
        })
        .filter(|c| c.iter().map(|v| v * v).sum::<f64>() > 1e-24 * n as f64)
        .collect();
    if columns.is_empty() || n <= columns.len() + 1 {
        return None;
    }
    let x = DMatrix::from_fn(n, columns.len(), |i, j| columns[j][i]);
    let t = mean.len();
    let y = DMatrix::from_fn(n, 4 * t, |i, c| per[i][c / 4][c % 4 / 2][c % 2] - mean[c / 4][c % 4 / 2][c % 2]);
    let total: f64 = y.iter().map(|v| v * v).sum();
    let beta = least_squares(x.clone(), y.clone())?;
    let residual: f64 = (&y - &x * beta).iter().map(|v| v * v).sum();
    Some(1.0 - residual / total)
}

/// `e^{(−γ ± iω)Δt}` (real `e^{(−γ ± κ)Δt}` when overdamped), `+` first.
fn true_roots(s: &System) -> [Complex; 2] {
    let (g, w2) = (s.gamma, s.omega0 * s.omega0 - s.gamma * s.gamma);
    let decay = (-g * s.dt).exp();
    if w2 >= 0.0 {
        let (sin, cos) = (w2.sqrt() * s.dt).sin_cos();
        [Complex { re: decay * cos, im: decay * sin }, Complex { re: decay * cos, im: -decay * sin }]
    } else {
        let k = (-w2).sqrt() * s.dt;
        [Complex { re: decay * k.exp(), im: 0.0 }, Complex { re: decay * (-k).exp(), im: 0.0 }]
    }
}

/// Roots of `det(λ^K I − Σ_k A_k λ^{K−1−k})`: the eigenvalues of the block
/// companion matrix `[[A_0 … A_{K−1}], [I 0 …], …]` (2K × 2K), K the last
/// tap whose norm exceeds 1e-9 of the largest. Sorted by modulus, descending.
fn filter_roots(taps: &[Mat2]) -> Vec<Complex> {
    let norms: Vec<f64> = taps.iter().map(mat2::frobenius).collect();
    let largest = norms.iter().copied().fold(0.0, f64::max);
    let Some(last) = norms.iter().rposition(|&v| v > 1e-9 * largest) else { return vec![] };
    let k = last + 1;
    let c = DMatrix::from_fn(2 * k, 2 * k, |i, j| {
        if i < 2 {
            taps[j / 2][i][j % 2]
        } else if j + 2 == i {
            1.0
        } else {
            0.0
        }
    });
    let mut roots: Vec<Complex> = c.complex_eigenvalues().iter().map(|z| Complex { re: z.re, im: z.im }).collect();
    roots.sort_by(|a, b| b.re.hypot(b.im).total_cmp(&a.re.hypot(a.im)));
    roots
}

// ─── The verdict ─────────────────────────────────────────────────────────

/// The verdict in plain words, from three readings: does the behaviour
/// adapt to ω0 (slope ≥ [`NEVER_ADAPTS_SLOPE`]); do the taps vary across
/// sequences ([`TAPS_VARY`]) and if so with the parameters
/// ([`FIXED_FILTER_R2`]) or with the states; and is the filter one of the
/// candidates ([`MATCH_TOL`]; several named when the margin is below
/// [`MARGIN_IDENTIFIABLE`]).
pub fn verdict(implied: &Implied, f: &FilterReport) -> String {
    let b = &implied.omega0;
    let adapts = b.slope.is_finite() && b.slope >= NEVER_ADAPTS_SLOPE;
    let vary = f.tap_relative_std >= TAPS_VARY;
    let with_params = vary && f.param_r2.is_some_and(|r2| r2 >= FIXED_FILTER_R2);
    let matched = f.candidates.first().is_some_and(|c| c.relative_distance < MATCH_TOL);
    let filter = filter_phrase(f);
    let taps = match f.param_r2 {
        _ if !vary => format!("its taps are the same for every sequence (relative spread {:.1e})", f.tap_relative_std),
        Some(r2) if r2 >= FIXED_FILTER_R2 => format!(
            "its taps change from sequence to sequence (relative spread {:.2}) and (ω0, γ) explain {:.0} % of that",
            f.tap_relative_std,
            100.0 * r2
        ),
        r2 => format!(
            "its taps change from sequence to sequence (relative spread {:.2}) but (ω0, γ) explain {} of that: \
             they follow the states, not the parameters",
            f.tap_relative_std,
            r2.map_or_else(|| "none (they do not vary)".into(), |r2| format!("only {:.0} %", 100.0 * r2))
        ),
    };
    let behaviour = format!(
        "its behaviour-implied ω0 {} (slope {:.2}, R² {:.2}, median error {:.2e})",
        match (adapts, b.r2 >= TRACKS_R2) {
            (false, _) => "does not follow the truth",
            (true, true) => "tracks the truth",
            (true, false) => "follows the truth only loosely",
        },
        b.slope,
        b.r2,
        b.median_abs_err
    );
    let mut s = if !adapts {
        format!(
            "never adapts: its behaviour-implied ω0 stays near {:.3} (slope {:.2}) while the true ω0 spans {:.3}–{:.3}; \
             {taps}; {filter}",
            b.median_implied, b.slope, b.truth_range[0], b.truth_range[1]
        )
    } else if !vary && matched {
        format!("runs a fixed filter ({filter}): {taps}, yet {behaviour}: it predicts without identifying ω0")
    } else if !with_params {
        format!("predicts without identifying ω0: {taps}, yet {behaviour}; {filter}")
    } else if matched && ["exact_step", "cayley_hamilton"].contains(&f.nearest.as_str()) {
        format!("identifies the dynamics: {taps}, {behaviour}; {filter}")
    } else {
        format!("adapts its filter to the dynamics: {taps}, {behaviour}; {filter}")
    };
    let left = implied.n_sequences - implied.n_oscillator_form;
    if left > 0 {
        let _ =
            write!(s, " ({left} of {} sequences have no oscillator reading of their behaviour)", implied.n_sequences);
    }
    s
}

/// What the filter is: one candidate, several that cannot be told apart,
/// or none (with the nearest and its relative distance).
fn filter_phrase(f: &FilterReport) -> String {
    let Some(first) = f.candidates.first() else { return "no candidate to compare with".into() };
    if first.relative_distance >= MATCH_TOL {
        return format!(
            "its filter is none of the candidates (nearest {}, at {:.0} % of the filter's size)",
            first.name,
            100.0 * first.relative_distance
        );
    }
    if f.margin.is_finite() && f.margin < MARGIN_IDENTIFIABLE {
        let close: Vec<&str> = f
            .candidates
            .iter()
            .filter(|c| c.distance < MARGIN_IDENTIFIABLE * first.distance)
            .map(|c| c.name.as_str())
            .collect();
        return format!("its filter is one of {} (cannot tell them apart, margin {:.2})", close.join(", "), f.margin);
    }
    format!(
        "nearest {}, relative distance {:.1e}, margin {}",
        first.name,
        first.relative_distance,
        fmt_margin(f.margin)
    )
}

/// A margin for the verdict (`∞` when the nearest is at distance 0).
fn fmt_margin(m: f64) -> String {
    if m.is_finite() { format!("{m:.3e}") } else { "∞".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_companion_roots_of_cayley_hamilton_are_the_eigenvalues_of_m() {
        let s = System::new(2.0, 0.1, 0.1);
        let roots = filter_roots(&cayley_hamilton(&s, 4));
        let want = true_roots(&s);
        assert_eq!(roots.len(), 4); // (λ² − tr λ + det)², each root twice
        for w in want {
            let d = roots.iter().map(|r| (r.re - w.re).hypot(r.im - w.im)).fold(f64::INFINITY, f64::min);
            assert!(d < 1e-12, "{roots:?} vs {want:?}");
        }
    }

    /// Taps linear in (ω0, γ) give R² = 1; taps that are each sequence's
    /// exact step vary with the parameters, not linearly: R² high, below 1.
    #[test]
    fn param_r2_is_one_for_taps_linear_in_the_parameters() {
        let truth: Vec<System> =
            (0..50).map(|i| System::new(1.0 + 0.06 * i as f64, 0.01 * (i % 7) as f64, 0.1)).collect();
        let per: Vec<Vec<Mat2>> =
            truth.iter().map(|s| vec![[[s.omega0, 2.0 * s.gamma], [0.5, -s.omega0 + s.gamma]], s.step()]).collect();
        let linear: Vec<Vec<Mat2>> = per.iter().map(|p| vec![p[0]]).collect();
        let r2 = param_r2(&linear, &mean_taps(&linear), &truth).unwrap();
        assert!((r2 - 1.0).abs() < 1e-12, "{r2}");
        let r2 = param_r2(&per, &mean_taps(&per), &truth).unwrap();
        assert!(r2 > 0.9 && r2 <= 1.0, "{r2}");
    }

    #[test]
    fn the_behaviour_map_of_an_exact_trajectory_is_its_step() {
        let m = System::new(2.5, 0.2, 0.1).step();
        let states: Vec<Vec2> =
            std::iter::successors(Some([1.0, 0.3]), |s| Some(mat2::apply(&m, *s))).take(WINDOWS).collect();
        let preds: Vec<Vec2> = states.iter().map(|s| mat2::apply(&m, *s)).collect();
        let fit = behaviour_map(&states, &preds).unwrap();
        assert!(mat2::frobenius(&mat2::sub(&fit, &m)) < 1e-12);
    }

    #[test]
    fn extrapolation_taps_predict_as_the_baseline_does() {
        let history: Vec<Vec2> = (0..5).map(|t| [t as f64 * t as f64, 1.0 - t as f64]).collect();
        let taps = extrapolation_taps(3, 5);
        let mut p = [0.0; 2];
        for (k, tap) in taps.iter().enumerate() {
            let v = mat2::apply(tap, history[4 - k]);
            p = [p[0] + v[0], p[1] + v[1]];
        }
        assert_eq!(Some(p), crate::physics::baselines::extrapolate(&history, 3));
    }

    /// Readings with a behaviour of the given slope and R², taps of the
    /// given relative spread and param R², nearest candidate `nearest` at
    /// `relative` of the filter's size, the next 10× farther.
    fn readings(
        slope: f64,
        r2: f64,
        spread: f64,
        param_r2: Option<f64>,
        nearest: &str,
        relative: f64,
    ) -> (Implied, FilterReport) {
        let reg = Regression {
            slope,
            intercept: 0.0,
            r2,
            median_abs_err: 1e-2,
            median_implied: 2.5,
            truth_range: [1.0, 4.0],
            n: 100,
        };
        let implied = Implied {
            omega0: reg.clone(),
            gamma: reg,
            n_sequences: 100,
            n_oscillator_form: 100,
            left_out: LeftOut::default(),
        };
        let candidate = |name: &str, relative: f64| Candidate {
            name: name.into(),
            distance: relative,
            relative_distance: relative,
        };
        let filter = FilterReport {
            taps: vec![mat2::identity()],
            tap_std: spread,
            size: 1.0,
            tap_relative_std: spread,
            param_r2,
            param_r2_reason: None,
            candidates: vec![candidate(nearest, relative), candidate("filter_1", 10.0 * relative)],
            nearest: nearest.into(),
            margin: 10.0,
            roots: vec![],
            true_roots: [Complex { re: 1.0, im: 0.0 }; 2],
            root_errors: [0.0; 2],
        };
        (implied, filter)
    }

    /// Each branch of the verdict, on readings whose answer is known.
    #[test]
    fn the_verdict_names_what_the_readings_show() {
        let says = |r: (Implied, FilterReport)| verdict(&r.0, &r.1);
        let fixed = says(readings(1.0, 0.99, 1e-12, None, "filter_3", 1e-9));
        assert!(
            fixed.starts_with("runs a fixed filter (nearest filter_3") && fixed.contains("tracks the truth"),
            "{fixed}"
        );
        let never = says(readings(0.0, 0.0, 1e-12, None, "filter_1", 1e-9));
        assert!(never.starts_with("never adapts"), "{never}");
        let states = says(readings(0.98, 0.99, 0.2, Some(0.03), "filter_1", 0.4));
        assert!(
            states.starts_with("predicts without identifying ω0") && states.contains("follow the states"),
            "{states}"
        );
        assert!(states.contains("none of the candidates (nearest filter_1, at 40 %"), "{states}");
        let loose = says(readings(0.8, 0.4, 0.2, Some(0.03), "filter_1", 0.4));
        assert!(loose.contains("follows the truth only loosely"), "{loose}");
        let adapts = says(readings(0.97, 0.95, 0.2, Some(0.5), "filter_1", 0.3));
        assert!(adapts.starts_with("adapts its filter to the dynamics") && adapts.contains("explain 50 %"), "{adapts}");
        let identifies = says(readings(1.0, 1.0, 0.2, Some(0.9), "exact_step", 1e-3));
        assert!(identifies.starts_with("identifies the dynamics"), "{identifies}");
        let far = says(readings(1.0, 1.0, 1e-12, None, "filter_3", 0.3));
        assert!(far.starts_with("predicts without identifying ω0") && far.contains("none of the candidates"), "{far}");
    }

    #[test]
    fn a_regression_of_a_constant_has_slope_zero_and_r2_zero() {
        let r = regression(&[(2.0, 1.0), (2.0, 2.0), (2.0, 4.0)]);
        assert_eq!((r.slope, r.r2, r.median_implied), (0.0, 0.0, 2.0));
        assert!((r.median_abs_err - 1.0).abs() < 1e-15);
    }
}
