//! Reading physics back from a learned 2×2 map (docs/physics.md).
//!
//! Every map here is in the COLUMN convention, `s' = M s` with `s = (x, p)`.
//! Three readings: [`spectral`] (from the eigenvalues), [`best_fit`] (the
//! nearest exact propagator in Frobenius norm), and the distances to the
//! candidate update rules ([`rule_distances`], summarised by [`verdict`]).
//!
//! ```
//! use physlens::physics::Oscillator;
//! use physlens::physics::readout::spectral;
//! let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
//! let r = spectral(&osc.propagator(0.1), 0.1);
//! assert!((r.omega0 - 2.0).abs() < 1e-12 && (r.gamma - 0.1).abs() < 1e-12);
//! assert!(r.oscillatory && r.identifiable);
//! ```

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::physics::Oscillator;
use crate::physics::rules::{all_rules, rule_map};
use crate::util::mat2::{Complex, Mat2, det, eigenvalues, frobenius, sub};

/// Relative step of the central finite differences in [`best_fit`]
/// (about the cube root of the f64 epsilon).
const FD_STEP: f64 = 6e-6;

/// Iteration cap of the Levenberg–Marquardt refinement in [`best_fit`].
const MAX_ITERATIONS: usize = 200;

/// Margin `d₂/d₁` from which the nearest rule counts as identified.
pub const MARGIN_IDENTIFIABLE: f64 = 10.0;

/// The spectral reading of a map (docs/physics.md).
#[derive(Clone, Debug, Serialize)]
pub struct SpectralReadout {
    /// Natural frequency ω0; NaN when the map has no oscillator reading.
    pub omega0: f64,
    /// Damping rate γ = −ln(det M)/(2Δt); NaN when det M ≤ 0.
    pub gamma: f64,
    /// Damped frequency ω = |arg λ|/Δt; 0 for real eigenvalues.
    pub omega: f64,
    /// The eigenvalues are a complex-conjugate pair.
    pub oscillatory: bool,
    /// ω is identifiable: the eigenvalues are complex and the principal branch
    /// of the argument (ωΔt < π) is the one consistent with the map.
    #[serde(rename = "omega_identifiable")]
    pub identifiable: bool,
}

/// Spectral readout of `m` for step `dt`.
///
/// - `γ = −ln(det M)/(2Δt)`, NaN if `det M ≤ 0`.
/// - Complex eigenvalues `λ = |λ| e^{±iθ}`, `θ ∈ (0, π)`: `ω = θ/Δt`,
///   `ω0 = sqrt(ω² + γ²)`. The argument only fixes ωΔt modulo 2π (and up to
///   sign), so the map is also checked against the two readings that do not
///   alias: an exact map has `M12 = e^{−γΔt} sin(ωΔt)/ω`, positive only when
///   ωΔt mod 2π < π, and `−M21/M12 = ω0²` for every branch. `identifiable`
///   is true iff `M12 > 0` and `(−M21/M12 − γ²) Δt² < π²`; the reported ω is
///   then the true one on an exact map, otherwise it is the aliased
///   principal-branch value.
/// - Real eigenvalues: `ω = 0`, not oscillatory, not identifiable. When both
///   are positive, the overdamped reading `λ1,2 = e^{(−γ ± κ)Δt}` gives
///   `ω0² = γ² − κ² = ln λ1 · ln λ2 / Δt²` (the product form has no
///   cancellation); `ω0` is NaN when that is negative (a growing mode) or
///   when an eigenvalue is ≤ 0.
pub fn spectral(m: &Mat2, dt: f64) -> SpectralReadout {
    let [l1, l2] = eigenvalues(m);
    let d = det(m);
    let gamma = if d > 0.0 { -d.ln() / (2.0 * dt) } else { f64::NAN };
    if l1.im > 0.0 {
        let omega = l1.arg() / dt;
        let omega_sq_alt = ratio_omega0_sq(m) - gamma * gamma;
        SpectralReadout {
            omega0: omega.hypot(gamma),
            gamma,
            omega,
            oscillatory: true,
            identifiable: m[0][1] > 0.0 && omega_sq_alt * dt * dt < PI * PI,
        }
    } else {
        let omega0 = if l1.re > 0.0 && l2.re > 0.0 { (l1.re.ln() * l2.re.ln()).sqrt() / dt } else { f64::NAN };
        SpectralReadout { omega0, gamma, omega: 0.0, oscillatory: false, identifiable: false }
    }
}

/// `−M21/M12`, which equals ω0² for an exact map at any Δt.
pub fn ratio_omega0_sq(m: &Mat2) -> f64 {
    -m[1][0] / m[0][1]
}

/// The exact propagator nearest to a map (docs/physics.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestFit {
    /// Fitted natural frequency ω0 (> 0).
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub omega0: f64,
    /// Fitted damping rate γ (≥ 0).
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub gamma: f64,
    /// `‖M − M(ω0, γ, Δt)‖_F` at the fit.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub residual: f64,
}

/// `(ω0, γ)` minimising `‖M − exp(A(ω0, γ) Δt)‖_F` over `ω0 > 0`, `γ ≥ 0`.
///
/// Levenberg–Marquardt with a central-difference Jacobian and the bound
/// `γ ≥ 0` kept active when the step would cross it. It is run from the
/// spectral readout (when finite), from `ω0² = −M21/M12` with the spectral γ
/// (immune to aliasing), and from the best point of a small grid in
/// `(ω0Δt, γΔt)`; the lowest residual wins. On an exact map it converges to
/// rounding level.
pub fn best_fit(m: &Mat2, dt: f64) -> BestFit {
    starting_points(m, dt)
        .into_iter()
        .map(|start| refine(m, dt, start))
        .min_by(|a, b| a.residual.total_cmp(&b.residual))
        .expect("the grid always supplies a starting point")
}

/// The distance from a map to one candidate rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuleDistance {
    /// Rule name, one of [`crate::physics::rules::RULES`].
    pub name: String,
    /// `‖M − M_rule‖_F`.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub distance: f64,
    /// Eigenvalues of the rule's map.
    #[serde(default)]
    pub eigenvalues: [Complex; 2],
}

/// Frobenius distance from `m` to every rule of [`crate::physics::rules::RULES`] for
/// `osc` at step `dt`, sorted ascending (ties keep the order of `RULES`).
pub fn rule_distances(m: &Mat2, osc: &Oscillator, dt: f64) -> Vec<RuleDistance> {
    let mut distances: Vec<RuleDistance> = all_rules(osc, dt)
        .into_iter()
        .map(|(name, rule)| RuleDistance {
            name: name.to_string(),
            distance: frobenius(&sub(m, &rule)),
            eigenvalues: eigenvalues(&rule),
        })
        .collect();
    distances.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    distances
}

/// What the rule distances allow one to say (docs/outputs.md#verdict).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleVerdict {
    /// `margin ≥ 10`: the nearest rule is named.
    Runs,
    /// `margin < 10` and `d₁ ≤ s` (`s = ‖M_nearest − M_runner_up‖_F`): the
    /// map sits among rules it cannot tell apart at this Δt.
    CannotTellApart,
    /// `margin < 10` and `d₁ > s`: the map is farther from the nearest rule
    /// than that rule is from the runner-up, so it runs none of them; its own
    /// error is too large to tell the rules apart.
    NoneOfThem,
}

impl RuleVerdict {
    /// The name written to JSON (`runs`, `cannot_tell_apart`, `none_of_them`).
    pub fn name(self) -> &'static str {
        match self {
            RuleVerdict::Runs => "runs",
            RuleVerdict::CannotTellApart => "cannot_tell_apart",
            RuleVerdict::NoneOfThem => "none_of_them",
        }
    }

    /// The call for distances `d₁ ≤ d₂` to the nearest rule and the runner-up,
    /// which lie `separation` apart.
    pub fn from_distances(d1: f64, d2: f64, separation: f64) -> RuleVerdict {
        let margin = margin(d1, d2);
        if margin >= MARGIN_IDENTIFIABLE {
            RuleVerdict::Runs
        } else if d1 <= separation {
            RuleVerdict::CannotTellApart
        } else {
            RuleVerdict::NoneOfThem
        }
    }
}

/// `d₂/d₁`: +∞ when `d₁ = 0 < d₂`, 1 when both are equal (0 included).
fn margin(d1: f64, d2: f64) -> f64 {
    if d2 == d1 { 1.0 } else { d2 / d1 }
}

/// Which rule a map implements, and how sure that is (docs/outputs.md).
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// The rule at the smallest distance d₁.
    pub nearest_method: String,
    /// `d₂/d₁` (d₂ the runner-up); +∞ when `d₁ = 0 < d₂`, 1 when both are 0.
    pub margin: f64,
    /// `margin ≥ 10`.
    pub identifiable: bool,
    /// What may be said: [`RuleVerdict`].
    pub rule_verdict: RuleVerdict,
    /// `‖M_nearest − M_runner_up‖_F` (0 with a single candidate).
    pub rule_separation: f64,
    /// `‖M − M_exact‖_F`, the map's error against the exact propagator.
    pub error_vs_exact: f64,
}

/// Summarise `distances` (sorted ascending, as from [`rule_distances`]) for
/// the map `m` of `osc` at step `dt`. With a single candidate the margin is +∞.
///
/// # Panics
/// If `distances` is empty.
pub fn verdict(distances: &[RuleDistance], m: &Mat2, osc: &Oscillator, dt: f64) -> Verdict {
    let nearest = distances.first().expect("at least one rule distance");
    let d1 = nearest.distance;
    let (margin, rule_separation, rule_verdict) = match distances.get(1) {
        None => (f64::INFINITY, 0.0, RuleVerdict::Runs),
        Some(runner_up) => {
            let rule = |name: &str| rule_map(name, osc, dt).unwrap_or([[f64::NAN; 2]; 2]);
            let separation = frobenius(&sub(&rule(&nearest.name), &rule(&runner_up.name)));
            (
                margin(d1, runner_up.distance),
                separation,
                RuleVerdict::from_distances(d1, runner_up.distance, separation),
            )
        }
    };
    Verdict {
        nearest_method: nearest.name.clone(),
        margin,
        identifiable: margin >= MARGIN_IDENTIFIABLE,
        rule_verdict,
        rule_separation,
        error_vs_exact: frobenius(&sub(m, &osc.propagator(dt))),
    }
}

// ---------------------------------------------------------------- best fit

/// Fit parameters `[ω0, γ]`.
type Params = [f64; 2];

/// Entries of `M(ω0, γ, Δt) − M`, flattened row-major.
fn residuals(m: &Mat2, dt: f64, p: Params) -> [f64; 4] {
    let model = Oscillator { omega0: p[0], gamma: p[1] }.propagator(dt);
    let r = sub(&model, m);
    [r[0][0], r[0][1], r[1][0], r[1][1]]
}

/// Sum of squared residuals.
fn cost(r: &[f64; 4]) -> f64 {
    r.iter().map(|x| x * x).sum()
}

/// Candidate starts: spectral readout, ratio reading, best grid point.
fn starting_points(m: &Mat2, dt: f64) -> Vec<Params> {
    let mut starts = Vec::with_capacity(3);
    let spec = spectral(m, dt);
    let gamma0 = if spec.gamma.is_finite() { spec.gamma.max(0.0) } else { 0.0 };
    if spec.omega0.is_finite() && spec.omega0 > 0.0 {
        starts.push([spec.omega0, gamma0]);
    }
    let ratio = ratio_omega0_sq(m);
    if ratio.is_finite() && ratio > 0.0 {
        starts.push([ratio.sqrt(), gamma0]);
    }
    starts.push(grid_start(m, dt));
    starts
}

/// The lowest-cost point of a coarse grid, `ω0Δt ∈ [0.01, 3]` (geometric),
/// `γΔt ∈ {0} ∪ [0.01, 3]` (geometric).
fn grid_start(m: &Mat2, dt: f64) -> Params {
    const N: i32 = 16;
    let level = |i: i32| 0.01 * 300f64.powf(f64::from(i) / f64::from(N - 1)) / dt;
    let mut best = ([level(0), 0.0], f64::INFINITY);
    for i in 0..N {
        for j in -1..N {
            let gamma = if j < 0 { 0.0 } else { level(j) };
            let p = [level(i), gamma];
            let c = cost(&residuals(m, dt, p));
            if c < best.1 {
                best = (p, c);
            }
        }
    }
    best.0
}

/// Jacobian `∂r/∂p` (4×2, rows = residual entries) by central differences,
/// one-sided in γ at the bound.
fn jacobian(m: &Mat2, dt: f64, p: Params) -> [[f64; 2]; 4] {
    let mut jac = [[0.0; 2]; 4];
    for k in 0..2 {
        let h = FD_STEP * p[k].abs().max(1.0 / dt);
        let (mut lo, mut hi) = (p, p);
        hi[k] += h;
        lo[k] -= h;
        if k == 1 && lo[k] < 0.0 {
            lo[k] = p[k];
        }
        let (r_hi, r_lo) = (residuals(m, dt, hi), residuals(m, dt, lo));
        for i in 0..4 {
            jac[i][k] = (r_hi[i] - r_lo[i]) / (hi[k] - lo[k]);
        }
    }
    jac
}

/// Levenberg–Marquardt from `start`, keeping `γ ≥ 0` and `ω0 ≥ 0`
/// (the propagator depends on ω0² only, so `|ω0|` is taken).
fn refine(m: &Mat2, dt: f64, start: Params) -> BestFit {
    let mut p = start;
    let mut r = residuals(m, dt, p);
    let mut c = cost(&r);
    let mut lambda = 1e-3;
    for _ in 0..MAX_ITERATIONS {
        let jac = jacobian(m, dt, p);
        let mut jtj = [[0.0; 2]; 2];
        let mut grad = [0.0; 2];
        for i in 0..4 {
            for a in 0..2 {
                grad[a] += jac[i][a] * r[i];
                for b in 0..2 {
                    jtj[a][b] += jac[i][a] * jac[i][b];
                }
            }
        }
        let floor = 1e-15 * (jtj[0][0] + jtj[1][1]) + f64::MIN_POSITIVE;
        let mut accepted = None;
        while lambda < 1e20 {
            let step = damped_step(&jtj, &grad, lambda, floor, p[1] == 0.0);
            let trial = [(p[0] + step[0]).abs(), (p[1] + step[1]).max(0.0)];
            let r_trial = residuals(m, dt, trial);
            let c_trial = cost(&r_trial);
            if c_trial < c {
                accepted = Some((trial, r_trial, c_trial));
                lambda = (lambda * 0.1).max(1e-12);
                break;
            }
            lambda *= 10.0;
        }
        let Some((trial, r_trial, c_trial)) = accepted else {
            break;
        };
        let moved = (trial[0] - p[0]).abs().max((trial[1] - p[1]).abs());
        p = trial;
        r = r_trial;
        c = c_trial;
        if moved <= 1e-15 * p[0].max(p[1]) {
            break;
        }
    }
    BestFit { omega0: p[0], gamma: p[1], residual: c.sqrt() }
}

/// Solve `(JᵀJ + λ (diag JᵀJ + floor)) δ = −Jᵀr`; when `γ` sits on its bound
/// and the step would push it below, solve for `δω0` alone with `δγ = 0`.
fn damped_step(jtj: &Mat2, grad: &[f64; 2], lambda: f64, floor: f64, at_bound: bool) -> Params {
    let a00 = jtj[0][0] + lambda * (jtj[0][0] + floor);
    let a11 = jtj[1][1] + lambda * (jtj[1][1] + floor);
    let a01 = jtj[0][1];
    let d = a00 * a11 - a01 * a01;
    let step = [(-grad[0] * a11 + grad[1] * a01) / d, (-grad[1] * a00 + grad[0] * a01) / d];
    if at_bound && step[1] < 0.0 { [-grad[0] / a00, 0.0] } else { step }
}
