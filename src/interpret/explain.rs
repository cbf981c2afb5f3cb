//! Plain words for an interpretation: when ω is identifiable, and which rules
//! cannot be told apart and why (the margin explanation). The readable
//! summary that prints them is [`crate::interpret::text`].
//!
//! Every 2×2 map printed is in the COLUMN convention, `s' = M s + c`.

use std::f64::consts::PI;
use std::fmt::Write as _;

use serde::Serialize;

use crate::interpret::map::MapReport;
use crate::physics::Oscillator;
use crate::physics::readout::MARGIN_IDENTIFIABLE;
use crate::physics::rules::rule_map;
use crate::util::mat2::{frobenius, sub};

/// Whether ω can be read from the map's eigenvalues, in words.
#[derive(Clone, Debug, Serialize)]
pub struct OmegaIdentifiability {
    /// ω can be read (complex eigenvalues on the principal branch, ωΔt < π).
    pub identifiable: bool,
    /// The eigenvalues are real (the map does not rotate).
    pub eigenvalues_real: bool,
    /// `ω_learned Δt`.
    pub omega_dt_learned: f64,
    /// `ω_true Δt` from the metadata.
    pub omega_dt_truth: f64,
    /// The plain statement.
    pub statement: String,
}

/// Reads [`OmegaIdentifiability`] off a report.
pub fn omega_identifiability(r: &MapReport) -> OmegaIdentifiability {
    let dt = r.truth.system.dt;
    let (learned, truth) = (r.learned.omega * dt, r.truth.omega * dt);
    let mut statement = if !r.learned.oscillatory {
        "ω is not identifiable: the eigenvalues are real, so the map does not rotate and has no frequency to read \
         (ω = 0 is reported; ω0 is the overdamped reading ln λ1 · ln λ2 / Δt²)"
            .to_string()
    } else if r.learned.identifiable {
        format!("ω is identifiable: ωΔt = {learned:.4} < π")
    } else {
        format!(
            "ω is not identifiable at this Δt: arg λ fixes ωΔt only modulo 2π, and this map's M12 sign or −M21/M12 say \
             ωΔt ≥ π; ω = {:.6} is the principal-branch alias",
            r.learned.omega
        )
    };
    if truth >= PI {
        let _ = write!(statement, " (the true system has ωΔt = {truth:.4} ≥ π: no map at this Δt can identify ω)");
    }
    OmegaIdentifiability {
        identifiable: r.learned.identifiable,
        eigenvalues_real: !r.learned.oscillatory,
        omega_dt_learned: learned,
        omega_dt_truth: truth,
        statement,
    }
}

/// The identifiability margin explained: the gap between the nearest rule
/// and the runner-up, against the model's own error.
#[derive(Clone, Debug, Serialize)]
pub struct MarginExplanation {
    /// Nearest rule (distance d₁).
    pub nearest: String,
    /// Runner-up (distance d₂).
    pub runner_up: String,
    /// d₁.
    pub d1: f64,
    /// d₂.
    pub d2: f64,
    /// `d₂/d₁`.
    pub margin: f64,
    /// `(d₂ − d₁) / ‖M − M_exact‖`: the gap in units of the model's own error.
    pub gap_over_error: f64,
    /// `‖M_nearest − M_runner_up‖_F`: how far apart the two rules are at this Δt.
    pub rule_separation: f64,
    /// `‖M − M_exact‖_F`.
    pub error_vs_exact: f64,
    /// The rules within a factor 10 of d₁ (the nearest included): the ones
    /// this model cannot tell apart at this Δt. One name when identifiable.
    pub indistinguishable: Vec<String>,
    /// The plain statement.
    pub statement: String,
}

/// Explains the margin of `r` for `osc` at step `dt`.
pub fn margin_explanation(r: &MapReport, osc: &Oscillator, dt: f64) -> MarginExplanation {
    let first = &r.methods[0];
    let second = r.methods.get(1).unwrap_or(first);
    let (d1, d2) = (first.distance, second.distance);
    let rule_separation = match (rule_map(&first.name, osc, dt), rule_map(&second.name, osc, dt)) {
        (Some(a), Some(b)) => frobenius(&sub(&a, &b)),
        _ => f64::NAN,
    };
    let indistinguishable: Vec<String> = if r.identifiable {
        vec![first.name.clone()]
    } else {
        r.methods.iter().filter(|m| m.distance <= MARGIN_IDENTIFIABLE * d1).map(|m| m.name.clone()).collect()
    };
    let statement = if r.identifiable {
        format!(
            "runs {}: the runner-up {} is {:.3e} away against {:.3e} (margin d₂/d₁ = {:.1} ≥ 10)",
            first.name, second.name, d2, d1, r.margin
        )
    } else {
        format!(
            "cannot tell {} apart at Δt = {dt}: {} and {} differ from each other by only {:.3e} at this step, \
             while the model is {:.3e} from {} and {:.3e} from the exact map (margin d₂/d₁ = {:.2} < 10)",
            join_names(&indistinguishable),
            first.name,
            second.name,
            rule_separation,
            d1,
            first.name,
            r.error_vs_exact,
            r.margin
        )
    };
    MarginExplanation {
        nearest: first.name.clone(),
        runner_up: second.name.clone(),
        d1,
        d2,
        margin: r.margin,
        gap_over_error: (d2 - d1) / r.error_vs_exact,
        rule_separation,
        error_vs_exact: r.error_vs_exact,
        indistinguishable,
        statement,
    }
}

/// "a, b and c".
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
