//! The records of a run folder, one type per file, each both written and
//! read back with serde (`docs/outputs.md` lists every key):
//! - [`Summary`] is `summary.json`, one [`CaseSummary`] per case;
//! - [`Evaluation`] is `eval.json`;
//! - `interpret.json` is [`InterpretRecord`]: a [`MapReport`] for one
//!   system, the in-context interpretation under `in_context` when the
//!   parameters are drawn per sequence.
//!
//! Floats that were not finite are written as `null` (JSON has no NaN) and
//! read back as NaN. Keys added after the first version read with a default
//! where one can be honest; the rule verdict (`rule_verdict`) has none, and a
//! file without it is refused with its name (`physlens eval` remakes it).

use serde::{Deserialize, Serialize};

use crate::eval::RolloutSummary;
use crate::eval::in_context::InContext;
use crate::interpret::in_context::InContextReport;
use crate::interpret::map::{Learned, MapReport};
use crate::physics::SystemSpec;
use crate::physics::readout::RuleVerdict;
use crate::util::json::nan_if_null;

/// One case of `summary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CaseSummary {
    /// Case name (its folder).
    pub name: String,
    /// The system the case was trained on (`omega0`, `gamma`, `dt`, each a
    /// number or a `[lo, hi]` range, and `generator`).
    #[serde(flatten)]
    pub system: SystemSpec,
    /// MSE on the whole training set after training.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_mse: f64,
    /// MSE on the validation set (energies up to `e_valid_max`).
    #[serde(deserialize_with = "nan_if_null")]
    pub valid_mse: f64,
    /// Rollout headline numbers.
    pub rollout: RolloutSummary,
    /// Spectral readout of the effective map (the mean Jacobian for context
    /// > 1); `null` when the parameters are drawn per sequence.
    pub learned: Option<Learned>,
    /// Nearest candidate update rule (`null` as `learned`).
    pub nearest_method: Option<String>,
    /// `d₂/d₁` of the rule distances.
    #[serde(default = "crate::util::json::nan", deserialize_with = "nan_if_null")]
    pub margin: f64,
    /// What the distances allow one to say: `runs`, `cannot_tell_apart`
    /// or `none_of_them` (`null` as `learned`).
    pub rule_verdict: Option<RuleVerdict>,
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
    /// The in-context evaluation ([`Evaluation::in_context`]).
    #[serde(default)]
    pub in_context: Option<InContext>,
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
    /// Jacobian of the last prediction on the validation set otherwise);
    /// `null` when the parameters are drawn per sequence.
    pub interpretation: Option<MapReport>,
    /// Errors per position against the baselines, for context > 1 or
    /// parameters drawn per sequence.
    #[serde(default)]
    pub in_context: Option<InContext>,
}

/// `interpret.json` of a case: the map read as physics (one system; its
/// keys at the top level, docs/outputs.md) and, with parameters drawn per
/// sequence, `in_context` as `physlens interpret --json` has it (docs/in-context.md).
/// Written only: [`InContextReport`] is not read back as a whole (the
/// report reads the keys it draws, `crate::report`).
#[derive(Clone, Debug, Serialize)]
pub struct InterpretRecord<'a> {
    /// The map read as physics; absent when the parameters are drawn per sequence.
    #[serde(flatten)]
    pub map: Option<&'a MapReport>,
    /// The in-context interpretation; absent for one system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_context: Option<&'a InContextReport>,
}

impl CaseSummary {
    /// The summary row of a case called `name` trained on `system`, from its
    /// evaluation; `train_seconds` NaN where unknown.
    pub fn new(name: &str, system: SystemSpec, eval: &Evaluation, train_seconds: f64) -> CaseSummary {
        let r = eval.interpretation.as_ref();
        CaseSummary {
            name: name.to_string(),
            system,
            train_mse: eval.train_mse,
            valid_mse: eval.valid_mse,
            rollout: eval.rollout.clone(),
            learned: r.map(|r| r.learned.clone()),
            nearest_method: r.map(|r| r.nearest_method.clone()),
            margin: r.map_or(f64::NAN, |r| r.margin),
            rule_verdict: r.map(|r| r.rule_verdict),
            error_vs_exact: r.map_or(f64::NAN, |r| r.error_vs_exact),
            model: format!("{name}/model.safetensors"),
            train_seconds,
            train_steps: None,
            stopped_at_floor_step: None,
            floor_mse: f64::NAN,
            in_context: eval.in_context.clone(),
        }
    }
}
