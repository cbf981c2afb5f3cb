//! The records of a run folder, one type per file, each both written and
//! read back with serde (`docs/outputs.md` lists every key):
//! - [`Summary`] is `summary.json`, one [`CaseSummary`] per case;
//! - [`Evaluation`] is `eval.json`;
//! - `interpret.json` is [`crate::interpret::map::MapReport`].
//!
//! Floats that were not finite are written as `null` (JSON has no NaN) and
//! read back as NaN. Keys added after the first version read with a default
//! where one can be honest; the rule verdict (`rule_verdict`) has none, and a
//! file without it is refused with its name (`physlens eval` remakes it).

use serde::{Deserialize, Serialize};

use crate::eval::RolloutSummary;
use crate::interpret::map::{Learned, MapReport};
use crate::physics::System;
use crate::physics::readout::RuleVerdict;
use crate::util::json::nan_if_null;

/// One case of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseSummary {
    /// Case name (its folder).
    pub name: String,
    /// The system the case was trained on (`omega0`, `gamma`, `dt`).
    #[serde(flatten)]
    pub system: System,
    /// MSE on the whole training set after training.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_mse: f64,
    /// MSE on the validation set (energies up to `e_valid_max`).
    #[serde(deserialize_with = "nan_if_null")]
    pub valid_mse: f64,
    /// Rollout headline numbers.
    pub rollout: RolloutSummary,
    /// Spectral readout of the effective map (the mean Jacobian for context > 1).
    pub learned: Learned,
    /// Nearest candidate update rule.
    pub nearest_method: String,
    /// `d₂/d₁` of the rule distances.
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub margin: f64,
    /// What the distances allow one to say: `runs`, `cannot_tell_apart`
    /// or `none_of_them`.
    pub rule_verdict: RuleVerdict,
    /// `‖M − M_exact‖_F`.
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub error_vs_exact: f64,
    /// Checkpoint path relative to the run folder.
    #[serde(default)]
    pub model: String,
    /// Training wall time in seconds (NaN where unknown, e.g. a lone run folder).
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub train_seconds: f64,
    /// Optimizer steps taken (`train.steps`, or fewer after a stop at the
    /// floor); null where unknown.
    #[serde(default)]
    pub train_steps: Option<u64>,
    /// The step training stopped at the floating-point floor
    /// (`train.stop_at_floor`); null if it ran to `train.steps`.
    #[serde(default)]
    pub stopped_at_floor_step: Option<u64>,
    /// The rounding floor of the validation MSE, `ε² · mean ‖s‖²` (NaN where unknown).
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub floor_mse: f64,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    /// One entry per case, in config order.
    pub cases: Vec<CaseSummary>,
    /// Wall time of the whole study in seconds.
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub seconds: f64,
}

/// `eval.json`: everything `eval` computes for a trained model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evaluation {
    /// MSE on the whole training set.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_mse: f64,
    /// MSE on the validation set.
    #[serde(deserialize_with = "nan_if_null")]
    pub valid_mse: f64,
    /// Rollout headline numbers.
    pub rollout: RolloutSummary,
    /// The effective map read as physics (exact for context 1, the mean
    /// Jacobian of the last prediction on the validation set otherwise).
    pub interpretation: MapReport,
}

impl CaseSummary {
    /// The summary row of a case called `name` trained on `system`, from its
    /// evaluation; `train_seconds` NaN where unknown.
    pub fn new(name: &str, system: System, eval: &Evaluation, train_seconds: f64) -> CaseSummary {
        let r = &eval.interpretation;
        CaseSummary {
            name: name.to_string(),
            system,
            train_mse: eval.train_mse,
            valid_mse: eval.valid_mse,
            rollout: eval.rollout.clone(),
            learned: r.learned.clone(),
            nearest_method: r.nearest_method.clone(),
            margin: r.margin,
            rule_verdict: r.rule_verdict,
            error_vs_exact: r.error_vs_exact,
            model: format!("{name}/model.safetensors"),
            train_seconds,
            train_steps: None,
            stopped_at_floor_step: None,
            floor_mse: f64::NAN,
        }
    }
}
