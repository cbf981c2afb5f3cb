//! The physical system a model learns: the oscillator's (ω0, γ) and the time
//! step Δt between tokens, for one sequence (or all of them when nothing is
//! drawn per sequence): the `truth` of an interpretation, a rollout's start.
//! The config's `[system]`, the checkpoint's `system` metadata and the cases
//! of `summary.json` hold a [`crate::physics::SystemSpec`], which checks the
//! values ([`crate::physics::SystemSpec::invalid`]).

use serde::{Deserialize, Serialize};

use crate::physics::Oscillator;
use crate::physics::rules::Rule;
use crate::util::json::nan_if_null;
use crate::util::mat2::Mat2;

/// A damped harmonic oscillator sampled every `dt`.
///
/// ```
/// use physlens::System;
/// let system = System::new(2.0, 0.1, 0.1); // ω0, γ, Δt; exact data
/// let m = system.step();
/// let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
/// assert!((det - (-2.0 * 0.1 * 0.1f64).exp()).abs() < 1e-12); // det = e^(−2γΔt)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct System {
    /// Natural angular frequency ω0 (> 0).
    #[serde(deserialize_with = "nan_if_null")]
    pub omega0: f64,
    /// Damping rate γ (≥ 0; under-, critically or overdamped).
    #[serde(deserialize_with = "nan_if_null")]
    pub gamma: f64,
    /// Time step Δt between tokens (> 0).
    #[serde(deserialize_with = "nan_if_null")]
    pub dt: f64,
    /// The rule that steps the training and validation data (and the
    /// rollouts' reference): `exact` (`exp(AΔt)`) unless a positive control
    /// asks for a numerical integrator.
    pub generator: Rule,
}

/// The seed experiment's system: ω0 = 2, γ = 0.1, Δt = 0.1.
impl Default for System {
    fn default() -> Self {
        System { omega0: 2.0, gamma: 0.1, dt: 0.1, generator: Rule::Exact }
    }
}

impl System {
    /// The system (ω0, γ, Δt) with exact data.
    pub fn new(omega0: f64, gamma: f64, dt: f64) -> System {
        System { omega0, gamma, dt, generator: Rule::Exact }
    }

    /// The differential equation (ω0, γ) without the time step.
    pub fn oscillator(&self) -> Oscillator {
        Oscillator { omega0: self.omega0, gamma: self.gamma }
    }

    /// The exact one-step map `exp(A Δt)` (column convention).
    pub fn step(&self) -> Mat2 {
        self.oscillator().propagator(self.dt)
    }

    /// The one-step map the data are made with: the [`System::generator`]
    /// rule (`exp(A Δt)` for `exact`).
    pub fn data_step(&self) -> Mat2 {
        self.generator.map(&self.oscillator(), self.dt)
    }

    /// The damped frequency `sqrt(ω0² − γ²)` (0 unless underdamped).
    pub fn omega(&self) -> f64 {
        self.oscillator().omega()
    }
}
