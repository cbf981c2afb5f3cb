//! The local truncation order of a learned rule: given models of the same
//! system trained at several Δt, fit
//! `ln ‖M_learned − M_exact‖ = slope · ln Δt + ln C` by least squares.
//!
//! A one-step method of order `p` has local error `O(Δt^{p+1})`, so the
//! slope estimates `p + 1`: about 2 for Euler or symplectic Euler, 3 for
//! leapfrog (undamped), RK2 or Crank–Nicolson, 5 for RK4. The fit is refused
//! where it would measure noise: fewer than three Δt, a model that runs the
//! exact map (its distance to it is its own error, not a truncation error),
//! or a distance at the model's error floor (rounding of its dtype, or its
//! distance to the rule its data were made with). Beside the slope stands the
//! slope of the nearest rule's own error over the same Δt, which is what the
//! models should show: for leapfrog with damping it is about 2.2, not 3.
//!
//! ```
//! use physlens::interpret::order::{fit_order, OrderPoint};
//! let pt = |dt: f64| OrderPoint {
//!     dt, error_vs_exact: 0.3 * dt.powi(3), omega0: 2.0, gamma: 0.0, nearest_method: "rk2".into(),
//!     identifiable: true, distance_to_generator: f64::NAN, rounding_floor: 1e-15, ..OrderPoint::default()
//! };
//! let fit = fit_order(vec![pt(0.05), pt(0.1), pt(0.2)]).unwrap();
//! assert!((fit.slope - 3.0).abs() < 1e-12 && (fit.method_order - 2.0).abs() < 1e-12);
//! ```

use serde::Serialize;

use crate::physics::Oscillator;
use crate::physics::rules::rule_map;

/// Distances below this many times a model's floor are called noise.
const ABOVE_FLOOR: f64 = 10.0;

/// One model's step and error.
#[derive(Clone, Debug, Default, Serialize)]
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
    /// The rule nearest to its map.
    pub nearest_method: String,
    /// Whether that rule is named with a margin ≥ 10.
    pub identifiable: bool,
    /// The rule its training data were made with (`exact` by default).
    pub generator: String,
    /// `‖M_learned − M_generator‖`: how far the model is from its own data
    /// (NaN when the generator is exact: that distance is the error itself).
    pub distance_to_generator: f64,
    /// The rounding floor of its dtype: 10 ε ‖M_exact‖.
    pub rounding_floor: f64,
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
    /// The rule nearest to every model's map, when they share one.
    pub rule: Option<String>,
    /// The slope of that rule's own `‖M_rule − M_exact‖` over the same Δt
    /// (what a model running it shows).
    pub rule_slope: Option<f64>,
    /// Its nominal slope `p + 1` (2 for Euler, 3 for leapfrog, 5 for RK4).
    pub nominal_slope: Option<f64>,
    /// Caveats (differing systems), empty when none.
    pub note: String,
}

/// The nominal local-error exponent `p + 1` of a rule of order `p`.
pub(crate) fn nominal_slope(rule: &str) -> Option<f64> {
    match rule {
        "euler" | "implicit_euler" | "symplectic_euler" => Some(2.0),
        "crank_nicolson" | "rk2" | "leapfrog" => Some(3.0),
        "rk3" => Some(4.0),
        "rk4" => Some(5.0),
        _ => None,
    }
}

/// Why a point cannot enter the fit, if it cannot.
fn unusable(p: &OrderPoint) -> Option<String> {
    if !(p.error_vs_exact > 0.0 && p.error_vs_exact.is_finite()) {
        return Some(format!(
            "{}: error vs exact is {:e}; the fit needs a positive error at every Δt",
            p.model, p.error_vs_exact
        ));
    }
    if p.identifiable && p.nearest_method == "exact" {
        return Some(format!(
            "{} runs the exact map (the nearest rule, margin ≥ 10): its distance to it, {:.2e}, is its own error, not a \
             truncation error. To measure an order, train on a rule's data ([system] generator)",
            p.model, p.error_vs_exact
        ));
    }
    if p.error_vs_exact < ABOVE_FLOOR * p.rounding_floor {
        return Some(format!(
            "{}: its error vs exact, {:.2e}, is at the rounding floor of its dtype ({:.1e}): noise, not a truncation error",
            p.model, p.error_vs_exact, p.rounding_floor
        ));
    }
    if p.error_vs_exact < ABOVE_FLOOR * p.distance_to_generator {
        return Some(format!(
            "{}: its error vs exact, {:.2e}, is within {ABOVE_FLOOR}× of its distance to the {} data it was trained on \
             ({:.2e}): the model's own error floor, not the rule's truncation error",
            p.model, p.error_vs_exact, p.generator, p.distance_to_generator
        ));
    }
    None
}

/// Fits [`OrderFit`] to `points`.
///
/// # Errors
/// A message saying why no order can be named: fewer than three distinct Δt,
/// a model whose distance to the exact map is not a truncation error (see
/// the module doc), or models trained on different generators.
pub fn fit_order(points: Vec<OrderPoint>) -> Result<OrderFit, String> {
    let mut dts: Vec<f64> = points.iter().map(|p| p.dt).collect();
    dts.sort_by(f64::total_cmp);
    dts.dedup();
    if dts.len() < 3 {
        return Err(format!(
            "the truncation order needs models trained at three or more different Δt (got {}): a line through two \
             points always fits",
            dts.len()
        ));
    }
    if let Some(why) = points.iter().find_map(unusable) {
        return Err(why);
    }
    let first = &points[0];
    if points.iter().any(|p| p.generator != first.generator) {
        return Err("the models were trained on data of different generators: fit each generator separately".into());
    }
    let xs: Vec<f64> = points.iter().map(|p| p.dt.ln()).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.error_vs_exact.ln()).collect();
    let (slope, intercept, r2) = line_fit(&xs, &ys);
    let same = points.iter().all(|p| p.omega0 == first.omega0 && p.gamma == first.gamma);
    let note = if same {
        String::new()
    } else {
        "the models were trained on different systems (ω0 or γ differ); the slope mixes Δt with the physics".into()
    };
    let rule = points.iter().all(|p| p.nearest_method == first.nearest_method).then(|| first.nearest_method.clone());
    let rule_slope = rule.as_deref().filter(|_| same).and_then(|name| {
        let osc = Oscillator { omega0: first.omega0, gamma: first.gamma };
        let ys: Option<Vec<f64>> = points
            .iter()
            .map(|p| {
                let m = rule_map(name, &osc, p.dt)?;
                Some(crate::util::mat2::frobenius(&crate::util::mat2::sub(&m, &osc.propagator(p.dt))).ln())
            })
            .collect();
        Some(line_fit(&xs, &ys?).0)
    });
    let nominal_slope = rule.as_deref().and_then(nominal_slope);
    Ok(OrderFit { points, slope, intercept, method_order: slope - 1.0, r2, rule, rule_slope, nominal_slope, note })
}

/// Least-squares line `y = slope x + intercept` and its R².
pub(crate) fn line_fit(xs: &[f64], ys: &[f64]) -> (f64, f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_tot: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let ss_res: f64 = xs.iter().zip(ys).map(|(x, y)| (y - intercept - slope * x).powi(2)).sum();
    let r2 = if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { 1.0 };
    (slope, intercept, r2)
}
