//! The generator a learned map implies: `A_learned = log(M) / Δt`
//! (principal real logarithm, COLUMN convention).
//!
//! For an exact propagator `M = exp(AΔt)` (with `ωΔt < π`) this returns
//! `A = [[0, 1], [−ω0², −2γ]]` itself, so the entries read the physics
//! directly: `−A21 = ω0²`, `−A22 = 2γ`, and `A11 = 0`, `A12 = 1` test whether
//! the map has the structure of `x' = p` at all (a map that rescales or
//! mixes `x` and `p` shows up there).
//!
//! ```
//! use physlens::physics::generator::generator;
//! use physlens::physics::Oscillator;
//! let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
//! let g = generator(&osc.propagator(0.1), 0.1).unwrap();
//! assert!((g.a[1][0] + 4.0).abs() < 1e-12 && (g.gamma - 0.1).abs() < 1e-12);
//! ```

use serde::Serialize;

use crate::util::mat2::{Mat2, eigenvalues};

/// `log(M)/Δt` and what it says.
#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    /// `A_learned`, column convention.
    pub a: Mat2,
    /// `−A21`: ω0² (can be negative for a map that is no oscillator).
    pub omega0_sq: f64,
    /// `−A22 / 2`: γ.
    pub gamma: f64,
    /// `‖A_learned − [[0, 1], [A21, A22]]‖_F`: how far the map is from
    /// having the structure `x' = p` (0 for any exact propagator).
    pub structure_error: f64,
}

/// The principal real logarithm of `m` divided by `dt`, or `None` when `m`
/// has no real logarithm (an eigenvalue ≤ 0, or a repeated negative one).
///
/// Writes `log M = a I + b M` (Cayley–Hamilton): with complex eigenvalues
/// `r e^{±iθ}`, `b = θ/(r sin θ)`, `a = ln r − b r cos θ`; with real positive
/// ones `λ1 ≥ λ2`, `b = ln(λ1/λ2)/(λ1 − λ2)` (computed with `ln_1p`, and
/// `1/λ` for a double eigenvalue), `a = ln λ1 − b λ1`.
pub fn generator(m: &Mat2, dt: f64) -> Option<Generator> {
    let [l1, l2] = eigenvalues(m);
    let (a, b) = if l1.im != 0.0 {
        let (r, theta) = (l1.abs(), l1.arg().abs());
        let b = if theta == 0.0 { 1.0 / r } else { theta / (r * theta.sin()) };
        (r.ln() - b * r * theta.cos(), b)
    } else if l1.re > 0.0 && l2.re > 0.0 {
        let (hi, lo) = (l1.re.max(l2.re), l1.re.min(l2.re));
        let b = if hi == lo { 1.0 / hi } else { ((hi - lo) / lo).ln_1p() / (hi - lo) };
        (hi.ln() - b * hi, b)
    } else {
        return None;
    };
    let log = [[a + b * m[0][0], b * m[0][1]], [b * m[1][0], a + b * m[1][1]]];
    let a_gen = log.map(|row| row.map(|v| v / dt));
    let structure_error = a_gen[0][0].hypot(a_gen[0][1] - 1.0);
    Some(Generator { a: a_gen, omega0_sq: -a_gen[1][0], gamma: -0.5 * a_gen[1][1], structure_error })
}
