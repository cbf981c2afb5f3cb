//! Interpretation of a trained model: its effective map read as physics
//! (docs/physics.md).
//!
//! Convention: every map here is in the COLUMN convention of physics,
//! `s' = M s + c`. The row-convention model is converted once, in
//! [`crate::model::circuits::to_physics`].

use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::physics::System;
use crate::physics::readout::{
    BestFit, RuleDistance, RuleVerdict, best_fit, ratio_omega0_sq, rule_distances, spectral, verdict,
};
use crate::util::mat2::{Complex, Mat2, Vec2, eigenvalues};
use crate::util::real::Real;

/// `learned`: the spectral reading of the map (docs/physics.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Learned {
    /// ω0 from the eigenvalues.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub omega0: f64,
    /// γ = −ln(det M)/(2Δt).
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub gamma: f64,
    /// ω = |arg λ|/Δt.
    #[serde(default = "crate::util::json::nan", deserialize_with = "crate::util::json::nan_if_null")]
    pub omega: f64,
    /// Eigenvalues are complex (the map rotates).
    #[serde(default)]
    pub oscillatory: bool,
    /// ω is identifiable at this Δt (ωΔt < π). Not to be confused with the
    /// top-level `identifiable`, which is about the update rule.
    #[serde(default, alias = "identifiable")]
    pub omega_identifiable: bool,
}

/// `truth`: the system the model was trained on (from the checkpoint
/// metadata), with its damped frequency.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Truth {
    /// ω0, γ and Δt.
    #[serde(flatten)]
    pub system: System,
    /// Damped frequency `sqrt(ω0² − γ²)` (0 unless underdamped).
    #[serde(default = "crate::util::json::nan", deserialize_with = "crate::util::json::nan_if_null")]
    pub omega: f64,
}

/// Relative errors of the readouts against the truth (absolute for γ = 0).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadoutErrors {
    /// `|ω0_learned − ω0| / ω0`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub omega0_rel: f64,
    /// `|γ_learned − γ| / γ`, or the absolute error when γ = 0.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub gamma_rel: f64,
    /// `|ω0_fit − ω0| / ω0` for the best fit.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub best_fit_omega0_rel: f64,
    /// Same as `gamma_rel` for the best fit.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub best_fit_gamma_rel: f64,
    /// `|ω0_learned − ω0|`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub omega0_abs: f64,
    /// `|γ_learned − γ|`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub gamma_abs: f64,
}

/// The docs/outputs.md interpretation of an affine map (`physlens interpret --json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapReport {
    /// `M`, column convention.
    #[serde(deserialize_with = "crate::util::json::mat2_nan_if_null")]
    pub effective_map: Mat2,
    /// `c`.
    #[serde(deserialize_with = "crate::util::json::vec2_nan_if_null")]
    pub offset: Vec2,
    /// Eigenvalues of `M`.
    pub eigenvalues: [Complex; 2],
    /// Spectral readout.
    pub learned: Learned,
    /// Nearest exact propagator.
    pub best_fit: BestFit,
    /// `−M21/M12`, a second estimate of ω0².
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub omega0_sq_ratio: f64,
    /// From the checkpoint metadata.
    pub truth: Truth,
    /// Readout errors against the truth.
    pub errors: ReadoutErrors,
    /// Distance to every candidate rule, ascending.
    pub methods: Vec<RuleDistance>,
    /// The candidate at the smallest distance.
    pub nearest_method: String,
    /// `d₂/d₁`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub margin: f64,
    /// `margin ≥ 10`: the nearest rule may be named (see `rule_verdict`).
    pub identifiable: bool,
    /// What the distances allow one to say: `runs` (margin ≥ 10),
    /// `cannot_tell_apart` or `none_of_them` (docs/outputs.md#verdict).
    pub rule_verdict: RuleVerdict,
    /// `‖M_nearest − M_runner_up‖_F`: how far apart the two nearest rules are.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub rule_separation: f64,
    /// `‖M − M_exact‖_F`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub error_vs_exact: f64,
    /// How the map was obtained.
    #[serde(default)]
    pub map_kind: String,
    /// The exact propagator `exp(AΔt)` of the true system.
    #[serde(default = "crate::util::json::nan_mat2", deserialize_with = "crate::util::json::mat2_nan_if_null")]
    pub exact_map: Mat2,
    /// Its eigenvalues `e^{(−γ ± iω)Δt}`.
    #[serde(default)]
    pub exact_eigenvalues: [Complex; 2],
}

/// Reads the affine map `s' = M s + c` of a model trained on `system`.
pub fn analyze_map(m: Mat2, c: Vec2, system: &System, map_kind: &str) -> MapReport {
    let (osc, dt, exact) = (system.oscillator(), system.dt, system.step());
    let s = spectral(&m, dt);
    let fit = best_fit(&m, dt);
    let methods = rule_distances(&m, &osc, dt);
    let v = verdict(&methods, &m, &osc, dt);
    let rel = |got: f64, want: f64| if want == 0.0 { (got - want).abs() } else { ((got - want) / want).abs() };
    MapReport {
        effective_map: m,
        offset: c,
        eigenvalues: eigenvalues(&m),
        errors: ReadoutErrors {
            omega0_rel: rel(s.omega0, osc.omega0),
            gamma_rel: rel(s.gamma, osc.gamma),
            best_fit_omega0_rel: rel(fit.omega0, osc.omega0),
            best_fit_gamma_rel: rel(fit.gamma, osc.gamma),
            omega0_abs: (s.omega0 - osc.omega0).abs(),
            gamma_abs: (s.gamma - osc.gamma).abs(),
        },
        learned: Learned {
            omega0: s.omega0,
            gamma: s.gamma,
            omega: s.omega,
            oscillatory: s.oscillatory,
            omega_identifiable: s.identifiable,
        },
        best_fit: fit,
        omega0_sq_ratio: ratio_omega0_sq(&m),
        truth: Truth { system: *system, omega: system.omega() },
        methods,
        nearest_method: v.nearest_method,
        margin: v.margin,
        identifiable: v.identifiable,
        rule_verdict: v.rule_verdict,
        rule_separation: v.rule_separation,
        error_vs_exact: v.error_vs_exact,
        exact_map: exact,
        exact_eigenvalues: eigenvalues(&exact),
        map_kind: map_kind.into(),
    }
}

/// The interpretation of an attention-only context-1 model (exact affine
/// map); `None` for models whose map depends on the input (context > 1, or
/// MLP blocks).
pub fn interpret_affine<F: Real>(model: &Model<F>, system: &System) -> Option<MapReport> {
    let (m, c) = model.affine_map()?;
    Some(analyze_map(m, c, system, "exact affine map of a context-1 model"))
}

/// The interpretation of any model (docs/outputs.md): the exact affine map for an
/// attention-only context-1 model (any number of layers), otherwise the mean Jacobian of the
/// last prediction w.r.t. the last input token from `jacobians` (computed on
/// the validation set), with the linearisation's mean intercept as offset.
/// `map_kind` says which. The full report (Jacobians of every token,
/// circuits, probes…) is [`crate::interpret::full::interpret_checkpoint`].
pub fn interpret_with_jacobians<F: Real>(
    model: &Model<F>,
    system: &System,
    jacobians: &crate::interpret::jacobian::JacobianReport,
) -> MapReport {
    if let Some(report) = interpret_affine(model, system) {
        return report;
    }
    let why = if model.cfg.has_mlp() {
        format!("MLP blocks ({}): not one affine map", model.cfg.act.name())
    } else {
        format!("context {}: not one affine map", model.cfg.n_ctx)
    };
    let kind = format!(
        "mean Jacobian of the last prediction w.r.t. the last input token over {} validation states ({why})",
        jacobians.n_states
    );
    analyze_map(jacobians.last().mean, jacobians.offset, system, &kind)
}
