//! The damped harmonic oscillator (docs/physics.md) and its exact propagator.
//!
//! Unit mass, `x'' + 2γ x' + ω0² x = 0`, momentum `p = x'`, state `s = (x, p)`
//! as a COLUMN vector: `s' = A s` and one step is `s_{n+1} = M s_n` with
//! `M = exp(A Δt)`.
//!
//! ```
//! use physlens::physics::{Oscillator, Regime};
//! let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
//! assert_eq!(osc.regime(), Regime::Underdamped);
//! let path = osc.trajectory([1.0, 0.0], 0.1, 10);
//! assert_eq!(path.len(), 11);
//! ```

use crate::util::mat2::{Mat2, Vec2, apply};

/// Largest `|q| Δt²` (with `q = γ² − ω0²`) for which the propagator uses the
/// power series instead of trigonometric / hyperbolic functions.
const SERIES_LIMIT: f64 = 1.0;

/// Highest power of `q Δt²` kept in the series; for `|q Δt²| ≤ 1` the first
/// dropped term is below `1/22! ≈ 9e-22`, far under f64 rounding.
const SERIES_TERMS: u32 = 10;

/// A unit-mass damped harmonic oscillator.
///
/// Preconditions for every method (validated by the caller, not here):
/// `omega0 > 0` and `gamma ≥ 0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Oscillator {
    /// Natural angular frequency ω0 (> 0).
    pub omega0: f64,
    /// Damping rate γ (≥ 0); the ODE is `x'' + 2γ x' + ω0² x = 0`.
    pub gamma: f64,
}

/// The damping regime of an [`Oscillator`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Regime {
    /// `γ < ω0`: decaying oscillation at `ω = sqrt(ω0² − γ²)`.
    Underdamped,
    /// `γ = ω0` exactly.
    Critical,
    /// `γ > ω0`: non-oscillating decay.
    Overdamped,
}

impl Regime {
    /// Human-readable name: "underdamped", "critically damped" or "overdamped".
    pub fn name(&self) -> &'static str {
        match self {
            Regime::Underdamped => "underdamped",
            Regime::Critical => "critically damped",
            Regime::Overdamped => "overdamped",
        }
    }
}

impl Oscillator {
    /// The generator `A = [[0, 1], [−ω0², −2γ]]` of `s' = A s` (column convention).
    pub fn generator(&self) -> Mat2 {
        [[0.0, 1.0], [-self.omega0 * self.omega0, -2.0 * self.gamma]]
    }

    /// The exact one-step map `M(Δt) = exp(A Δt)`, column convention
    /// `s_{n+1} = M s_n`. Preconditions: `dt > 0`, `γ ≥ 0`, `ω0 > 0`.
    ///
    /// All three regimes share one form,
    /// `M = e^{−γΔt} [[C + γS, S], [−ω0² S, C − γS]]`, with `q = γ² − ω0²`:
    /// `C = cos ωΔt`, `S = sin(ωΔt)/ω` (`ω² = −q`, underdamped) or
    /// `C = cosh κΔt`, `S = sinh(κΔt)/κ` (`κ² = q`, overdamped). When
    /// `|q| Δt² ≤ 1` both come from the power series
    /// `C = Σ (qΔt²)^k/(2k)!`, `S = Δt Σ (qΔt²)^k/(2k+1)!`, which is exact at
    /// critical damping (`C = 1`, `S = Δt`) and keeps `M` accurate and
    /// continuous across the regime boundaries. In the overdamped branch the
    /// decay factor is folded into the exponentials (`e^{−(γ∓κ)Δt}`) so that
    /// large `κΔt` neither overflows nor cancels.
    pub fn propagator(&self, dt: f64) -> Mat2 {
        let g = self.gamma;
        let w0 = self.omega0;
        let q = (g - w0) * (g + w0);
        let x = q * dt * dt;
        // (c, s) = e^{−γΔt} (C, S)
        let (c, s) = if x.abs() <= SERIES_LIMIT {
            let decay = (-g * dt).exp();
            let (c, s) = cos_sin_series(x);
            (decay * c, decay * dt * s)
        } else if q < 0.0 {
            let decay = (-g * dt).exp();
            let w = (-q).sqrt();
            let (sin, cos) = (w * dt).sin_cos();
            (decay * cos, decay * sin / w)
        } else {
            let kappa = q.sqrt();
            let slow = (-(w0 * w0) / (g + kappa) * dt).exp(); // e^{−(γ−κ)Δt}
            let fast = (-(g + kappa) * dt).exp(); // e^{−(γ+κ)Δt}
            let c = 0.5 * (slow + fast);
            let s = -slow * (-2.0 * kappa * dt).exp_m1() / (2.0 * kappa);
            (c, s)
        };
        [[c + g * s, s], [-(w0 * w0) * s, c - g * s]]
    }

    /// The damping regime; `Critical` only for `γ == ω0` exactly (the
    /// propagator is continuous in γ, so this is a label, not a switch).
    pub fn regime(&self) -> Regime {
        if self.gamma < self.omega0 {
            Regime::Underdamped
        } else if self.gamma == self.omega0 {
            Regime::Critical
        } else {
            Regime::Overdamped
        }
    }

    /// Damped angular frequency `ω = sqrt(ω0² − γ²)`; 0 unless underdamped.
    pub fn omega(&self) -> f64 {
        if self.gamma < self.omega0 { ((self.omega0 - self.gamma) * (self.omega0 + self.gamma)).sqrt() } else { 0.0 }
    }

    /// Energy `E = ½(p² + ω0² x²)` of the state `s = (x, p)`.
    pub fn energy(&self, s: Vec2) -> f64 {
        let [x, p] = s;
        0.5 * (p * p + self.omega0 * self.omega0 * x * x)
    }

    /// The state of energy `e ≥ 0` at phase `phi`:
    /// `(sqrt(2E)/ω0 · cos φ, sqrt(2E) · sin φ)`; inverse of [`Self::energy`].
    pub fn state_from_energy_phase(&self, e: f64, phi: f64) -> Vec2 {
        let amp = (2.0 * e).sqrt();
        let (sin, cos) = phi.sin_cos();
        [amp / self.omega0 * cos, amp * sin]
    }

    /// `n_steps + 1` states starting at `s0`, each the exact propagator of
    /// step `dt` applied to the previous one. Preconditions as for
    /// [`Self::propagator`].
    pub fn trajectory(&self, s0: Vec2, dt: f64, n_steps: usize) -> Vec<Vec2> {
        let m = self.propagator(dt);
        let mut states = Vec::with_capacity(n_steps + 1);
        let mut s = s0;
        states.push(s);
        for _ in 0..n_steps {
            s = apply(&m, s);
            states.push(s);
        }
        states
    }
}

/// `(Σ x^k/(2k)!, Σ x^k/(2k+1)!)`, i.e. `(cos, sin/·)` or `(cosh, sinh/·)` of
/// `sqrt(|x|)`, for `|x| ≤ SERIES_LIMIT`.
fn cos_sin_series(x: f64) -> (f64, f64) {
    let (mut c_term, mut s_term) = (1.0, 1.0);
    let (mut c, mut s) = (1.0, 1.0);
    for k in 1..=SERIES_TERMS {
        let two_k = f64::from(2 * k);
        c_term *= x / ((two_k - 1.0) * two_k);
        s_term *= x / (two_k * (two_k + 1.0));
        c += c_term;
        s += s_term;
    }
    (c, s)
}
