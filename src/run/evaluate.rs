//! Evaluating a trained model: MSE, rollouts, error against energy and the
//! effective map read as physics. Everything is computed and returned;
//! nothing is written here ([`crate::run::folder`] writes the files).

use crate::config::Config;
use crate::data::Dataset;
use crate::eval::{Rollout, error_vs_energy_csv, rollout, rollout_starts};
use crate::interpret::jacobian::jacobian_report;
use crate::interpret::map::{MapReport, interpret_affine, interpret_with_jacobians};
use crate::interpret::patterns::{TrajectoryPatterns, trajectory_patterns};
use crate::model::{Model, mse};
use crate::run::records::Evaluation;
use crate::util::real::Real;
use crate::util::rng::{Rng, Stream};

/// Everything evaluating one model gives: the `eval.json` record and the
/// tables behind the CSV files.
#[derive(Clone, Debug)]
pub struct CaseResults {
    /// `eval.json` (its `interpretation` is also `interpret.json`).
    pub evaluation: Evaluation,
    /// The rollouts (`rollout.csv`, `trajectories.csv`).
    pub rollout: Rollout,
    /// `error_vs_energy.csv`.
    pub error_vs_energy: String,
    /// Attention along one trajectory (`attention.csv`), for context > 1.
    pub attention: Option<TrajectoryPatterns>,
}

/// Evaluates `model` trained with `config` with `steps` rollout steps;
/// `sets` are the training and validation sets of `config`.
pub fn evaluate<F: Real>(
    config: &Config,
    model: &Model<F>,
    sets: (&Dataset<F>, &Dataset<F>),
    steps: usize,
) -> CaseResults {
    let (train_set, valid) = sets;
    let ro = rollout_of(config, model, steps);
    let (interpretation, attention) = interpretation(config, model, valid);
    let evaluation = Evaluation {
        train_mse: mse(model, train_set),
        valid_mse: mse(model, valid),
        rollout: ro.summary(),
        interpretation,
    };
    let error_vs_energy = error_vs_energy_csv(model, valid, &config.oscillator());
    CaseResults { evaluation, error_vs_energy, rollout: ro, attention }
}

/// Rolls `model` out for `steps` steps from the starts of `config`'s
/// evaluation (the same starts as [`evaluate`]).
pub fn rollout_of<F: Real>(config: &Config, model: &Model<F>, steps: usize) -> Rollout {
    rollout(model, &config.system, &rollout_starts_of(config), steps)
}

/// The initial states of the evaluation's rollouts (their own random stream).
fn rollout_starts_of(config: &Config) -> Vec<crate::util::mat2::Vec2> {
    let mut rng = Rng::new(config.train.seed, Stream::Rollout);
    rollout_starts(&config.oscillator(), config.data.e_valid_max, config.eval.n_rollouts, &mut rng)
}

/// The effective map read as physics: exact for context 1; otherwise the mean
/// Jacobian on the validation set, with the attention along one trajectory.
fn interpretation<F: Real>(
    config: &Config,
    model: &Model<F>,
    valid: &Dataset<F>,
) -> (MapReport, Option<TrajectoryPatterns>) {
    if let Some(report) = interpret_affine(model, &config.system) {
        return (report, None);
    }
    let exact = model.to_f64();
    let inputs: Vec<f64> = valid.inputs.iter().map(|x| x.f64()).collect();
    let osc = config.oscillator();
    let start = osc.state_from_energy_phase(1.0, 0.0);
    let patterns = trajectory_patterns(&exact, &osc, config.system.dt, start, None);
    (interpret_with_jacobians(&exact, &config.system, &jacobian_report(&exact, &inputs)), Some(patterns))
}
