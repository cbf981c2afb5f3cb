//! Plain words for an interpretation: when ω is identifiable, and which rules
//! cannot be told apart and why (the margin explanation). The readable
//! summary that prints them is [`crate::interpret::text`].
//!
//! Every 2×2 map printed is in the COLUMN convention, `s' = M s + c`.

use std::f64::consts::PI;
use std::fmt::Write as _;

use serde::Serialize;

use crate::interpret::map::MapReport;
use crate::physics::readout::{MARGIN_IDENTIFIABLE, RuleVerdict};

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
        // The overdamped reading exists only when both eigenvalues are positive
        // and their logarithms share a sign (`spectral` leaves ω0 NaN otherwise).
        let reading = if r.learned.omega0.is_finite() {
            "; ω0 is the overdamped reading ln λ1 · ln λ2 / Δt²)"
        } else if r.eigenvalues.iter().all(|e| e.re > 0.0) {
            "); the overdamped reading ln λ1 · ln λ2 / Δt² is negative (one mode grows), so ω0 is undefined"
        } else {
            "); one of them is ≤ 0, so there is no overdamped reading either and ω0 and γ are undefined"
        };
        format!(
            "ω is not identifiable: the eigenvalues are real, so the map does not rotate and has no frequency to read \
             (ω = 0 is reported{reading}"
        )
    } else if r.learned.omega_identifiable {
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
        identifiable: r.learned.omega_identifiable,
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
    /// this model cannot tell apart at this Δt. One name when identifiable,
    /// none when the model runs none of them.
    pub indistinguishable: Vec<String>,
    /// The plain statement.
    pub statement: String,
}

/// Explains the margin of `r` at its step: which of the three verdicts of
/// [`RuleVerdict`] the distances allow, in words that quote them.
pub fn margin_explanation(r: &MapReport) -> MarginExplanation {
    let first = &r.methods[0];
    let second = r.methods.get(1).unwrap_or(first);
    let (d1, d2, s) = (first.distance, second.distance, r.rule_separation);
    let indistinguishable: Vec<String> = match r.rule_verdict {
        RuleVerdict::Runs => vec![first.name.clone()],
        RuleVerdict::CannotTellApart => {
            r.methods.iter().filter(|m| m.distance <= MARGIN_IDENTIFIABLE * d1).map(|m| m.name.clone()).collect()
        }
        RuleVerdict::NoneOfThem => Vec::new(),
    };
    let dt = r.truth.system.dt;
    let statement = match r.rule_verdict {
        RuleVerdict::Runs => format!(
            "runs {}: the runner-up {} is {d2:.3e} away against {d1:.3e} (margin d₂/d₁ = {:.1} ≥ 10)",
            first.name, second.name, r.margin
        ),
        RuleVerdict::CannotTellApart => format!(
            "cannot tell {} apart at Δt = {dt}: {} and {} differ from each other by only {s:.3e} at this step, \
             while the model is {d1:.3e} from {} and {:.3e} from the exact map (margin d₂/d₁ = {:.2} < 10)",
            join_names(&indistinguishable),
            first.name,
            second.name,
            first.name,
            r.error_vs_exact,
            r.margin
        ),
        RuleVerdict::NoneOfThem => format!(
            "runs none of the candidate rules: the nearest, {}, is {d1:.3e} away, farther than the {s:.3e} that \
             separates it from the runner-up {} at Δt = {dt}, so the model's own error (‖M − M_exact‖ = {:.3e}) is \
             too large to tell the rules apart",
            first.name, second.name, r.error_vs_exact
        ),
    };
    MarginExplanation {
        nearest: first.name.clone(),
        runner_up: second.name.clone(),
        d1,
        d2,
        margin: r.margin,
        gap_over_error: (d2 - d1) / r.error_vs_exact,
        rule_separation: s,
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
