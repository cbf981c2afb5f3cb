//! The local truncation order of a learned rule (issue 3, item 4): given
//! models of the same system trained at several Δt, fit
//! `ln ‖M_learned − M_exact‖ = slope · ln Δt + ln C` by least squares.
//!
//! A one-step method of order `p` has local error `O(Δt^{p+1})`, so the
//! slope estimates `p + 1`: about 2 for Euler or symplectic Euler, 3 for
//! leapfrog, RK2 or Crank–Nicolson, 5 for RK4. A model whose error is set by
//! training noise rather than by a rule shows a flat or erratic slope.
//!
//! ```
//! use physlens::interpret::order::{fit_order, OrderPoint};
//! let pt = |dt: f64| OrderPoint { model: String::new(), dt, error_vs_exact: 0.3 * dt.powi(3), omega0: 2.0, gamma: 0.0 };
//! let fit = fit_order(vec![pt(0.05), pt(0.1), pt(0.2)]).unwrap();
//! assert!((fit.slope - 3.0).abs() < 1e-12 && (fit.method_order - 2.0).abs() < 1e-12);
//! ```

use serde::Serialize;

/// One model's step and error.
#[derive(Clone, Debug, Serialize)]
pub struct OrderPoint {
    /// The checkpoint it came from.
    pub model: String,
    /// Δt.
    pub dt: f64,
    /// `‖M_learned − M_exact‖_F`.
    pub error_vs_exact: f64,
    /// ω0 of its system.
    pub omega0: f64,
    /// γ of its system.
    pub gamma: f64,
}

/// The fitted power law.
#[derive(Clone, Debug, Serialize)]
pub struct OrderFit {
    /// The points, in the order given.
    pub points: Vec<OrderPoint>,
    /// `d ln error / d ln Δt`: the local truncation exponent `p + 1`.
    pub slope: f64,
    /// `ln C`.
    pub intercept: f64,
    /// `slope − 1`: the order `p` of the method.
    pub method_order: f64,
    /// R² of the log-log fit.
    pub r2: f64,
    /// Caveats (differing systems), empty when none.
    pub note: String,
}

/// Fits [`OrderFit`] to `points`.
///
/// # Errors
/// A message when fewer than two distinct Δt are given or an error is not
/// positive and finite (an exact map has no truncation error to fit).
pub fn fit_order(points: Vec<OrderPoint>) -> Result<OrderFit, String> {
    if let Some(p) = points.iter().find(|p| !(p.error_vs_exact > 0.0 && p.error_vs_exact.is_finite())) {
        return Err(format!(
            "{}: error vs exact is {:e}; the truncation order needs a positive error at every Δt",
            p.model, p.error_vs_exact
        ));
    }
    let xs: Vec<f64> = points.iter().map(|p| p.dt.ln()).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.error_vs_exact.ln()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if points.len() < 2 || sxx <= 1e-24 {
        return Err("the truncation order needs models trained at two or more different Δt".into());
    }
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_tot: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let ss_res: f64 = xs.iter().zip(&ys).map(|(x, y)| (y - intercept - slope * x).powi(2)).sum();
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 };
    let first = &points[0];
    let same = points.iter().all(|p| p.omega0 == first.omega0 && p.gamma == first.gamma);
    let note = if same {
        String::new()
    } else {
        "the models were trained on different systems (ω0 or γ differ); the slope mixes Δt with the physics".into()
    };
    Ok(OrderFit { points, slope, intercept, method_order: slope - 1.0, r2, note })
}
