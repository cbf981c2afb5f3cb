//! Candidate update rules (docs/physics.md): one step of size `h` of a numerical
//! integrator, written as the 2×2 matrix it applies to the state `(x, p)`
//! (column convention, `s' = M s`).
//!
//! ```
//! use physlens::physics::Oscillator;
//! use physlens::physics::rules::{RULES, all_rules, rule_map};
//! let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
//! assert_eq!(all_rules(&osc, 0.1).len(), RULES.len());
//! assert!(rule_map("verlet", &osc, 0.1).is_none());
//! ```

use serde::{Deserialize, Serialize};

use crate::physics::Oscillator;
use crate::util::mat2::{Mat2, add, identity, inverse, mul, scale, sub};

/// Names of the candidate rules, in the order used in every output.
pub const RULES: [&str; 9] =
    ["exact", "euler", "implicit_euler", "crank_nicolson", "rk2", "rk3", "rk4", "symplectic_euler", "leapfrog"];

/// One of the rules of [`RULES`] as a value: what steps the data
/// (`[system] generator`). Serialised by its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `exp(Ah)`.
    #[default]
    Exact,
    /// `I + Ah`.
    Euler,
    /// `(I − Ah)⁻¹`.
    ImplicitEuler,
    /// `(I − Ah/2)⁻¹ (I + Ah/2)`.
    CrankNicolson,
    /// Taylor series of `exp(Ah)` to order 2.
    Rk2,
    /// … to order 3.
    Rk3,
    /// … to order 4.
    Rk4,
    /// Kick by `h`, then drift by `h`.
    SymplecticEuler,
    /// Kick by `h/2`, drift by `h`, kick by `h/2`.
    Leapfrog,
}

impl Rule {
    /// Its name in [`RULES`] and in every output.
    pub fn name(self) -> &'static str {
        RULES[self as usize]
    }

    /// Its one-step matrix for `osc` with step `h` ([`rule_map`]).
    pub fn map(self, osc: &Oscillator, h: f64) -> Mat2 {
        rule_map(self.name(), osc, h).expect("every Rule is a known rule, nonsingular for h > 0, γ ≥ 0")
    }

    /// Whether the rule is the exact propagator.
    pub fn is_exact(self) -> bool {
        self == Rule::Exact
    }
}

/// The one-step matrix of rule `name` for `osc` with step `h`, or `None` for
/// an unknown name (or if an implicit rule's system were singular, which
/// cannot happen for `h > 0`, `γ ≥ 0`).
///
/// With `A` the generator: `exact = exp(Ah)`; `euler = I + Ah`;
/// `implicit_euler = (I − Ah)⁻¹`; `crank_nicolson = (I − Ah/2)⁻¹ (I + Ah/2)`;
/// `rk2`, `rk3`, `rk4` = Taylor series of `exp(Ah)` to order 2, 3, 4 (what
/// RK-k reduces to on a linear system); `symplectic_euler` = kick by `h`
/// then drift by `h`; `leapfrog` = kick by `h/2`, drift by `h`, kick by `h/2`.
/// A kick by `τ` is `p ← p + τ f(x, p)` with `f = −ω0² x − 2γ p`, a drift by
/// `h` is `x ← x + h p`.
pub fn rule_map(name: &str, osc: &Oscillator, h: f64) -> Option<Mat2> {
    let ah = scale(&osc.generator(), h);
    let id = identity();
    match name {
        "exact" => Some(osc.propagator(h)),
        "euler" => Some(taylor(&ah, 1)),
        "implicit_euler" => inverse(&sub(&id, &ah)),
        "crank_nicolson" => {
            let half = scale(&ah, 0.5);
            Some(mul(&inverse(&sub(&id, &half))?, &add(&id, &half)))
        }
        "rk2" => Some(taylor(&ah, 2)),
        "rk3" => Some(taylor(&ah, 3)),
        "rk4" => Some(taylor(&ah, 4)),
        "symplectic_euler" => Some(mul(&drift(h), &kick(osc, h))),
        "leapfrog" => {
            let half_kick = kick(osc, 0.5 * h);
            Some(mul(&half_kick, &mul(&drift(h), &half_kick)))
        }
        _ => None,
    }
}

/// Every rule of [`RULES`] with its matrix, in that order.
pub fn all_rules(osc: &Oscillator, h: f64) -> Vec<(&'static str, Mat2)> {
    RULES.iter().filter_map(|&name| rule_map(name, osc, h).map(|m| (name, m))).collect()
}

/// `Σ_{k=0..order} (Ah)^k / k!`.
fn taylor(ah: &Mat2, order: u32) -> Mat2 {
    let mut term = identity();
    let mut sum = identity();
    for k in 1..=order {
        term = scale(&mul(&term, ah), 1.0 / f64::from(k));
        sum = add(&sum, &term);
    }
    sum
}

/// Kick by `tau`: `p ← p + τ (−ω0² x − 2γ p)`, `x` unchanged.
fn kick(osc: &Oscillator, tau: f64) -> Mat2 {
    [[1.0, 0.0], [-tau * osc.omega0 * osc.omega0, 1.0 - 2.0 * osc.gamma * tau]]
}

/// Drift by `h`: `x ← x + h p`, `p` unchanged.
fn drift(h: f64) -> Mat2 {
    [[1.0, h], [0.0, 1.0]]
}
