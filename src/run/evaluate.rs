//! Evaluating a trained model: MSE, rollouts, error against energy and the
//! effective map read as physics. Everything is computed and returned;
//! nothing is written here ([`crate::run::folder`] writes the files).

use crate::config::Config;
use crate::data::{Dataset, Sampler};
use crate::eval::in_context::{self, InContextResults, wider};
use crate::eval::{Rollout, Start, error_vs_energy_csv, rollout, rollout_starts};
use crate::interpret::jacobian::jacobian_report;
use crate::interpret::map::{MapReport, interpret_affine, interpret_with_jacobians};
use crate::interpret::patterns::{TrajectoryPatterns, trajectory_patterns};
use crate::model::{Model, mse};
use crate::physics::System;
use crate::physics::baselines::FIT_SEQUENCES;
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
    /// The in-context evaluation (its record is also in `eval.json`;
    /// `sequences.csv`), for context > 1 or parameters drawn per sequence.
    pub in_context: Option<InContextResults>,
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
    let in_context = in_context_of(config, model, sets);
    let evaluation = Evaluation {
        train_mse: mse(model, train_set),
        valid_mse: mse(model, valid),
        rollout: ro.summary(),
        interpretation,
        in_context: in_context.as_ref().map(|r| r.record.clone()),
    };
    let error_vs_energy = error_vs_energy_csv(model, valid);
    CaseResults { evaluation, error_vs_energy, rollout: ro, attention, in_context }
}

/// The in-context evaluation, when the context holds more than one state or
/// the parameters are drawn per sequence: the validation set, and sequences
/// from the wider ranges of [`wider`] (their own random stream).
fn in_context_of<F: Real>(
    config: &Config,
    model: &Model<F>,
    (train_set, valid): (&Dataset<F>, &Dataset<F>),
) -> Option<InContextResults> {
    if config.data.context == 1 && config.system.fixed().is_some() {
        return None;
    }
    let wide = wider(&config.system).map(|spec| {
        let sampler = Sampler::new(&spec, config.data.e_valid_max, config.data.noise, config.data.context);
        let set = Dataset::<F>::generate(&sampler, config.data.n_valid, &mut Rng::new(config.train.seed, Stream::Wide));
        (spec, set)
    });
    let training: Vec<_> = (0..train_set.len().min(FIT_SEQUENCES)).map(|n| train_set.clean_states(n)).collect();
    Some(in_context::evaluate(model, &config.system, valid, wide.as_ref(), &training))
}

/// Rolls `model` out for `steps` steps from the starts of `config`'s
/// evaluation (the same starts as [`evaluate`]).
pub fn rollout_of<F: Real>(config: &Config, model: &Model<F>, steps: usize) -> Rollout {
    rollout(model, &rollout_starts_of(config), steps)
}

/// The initial states of the evaluation's rollouts (their own random stream).
fn rollout_starts_of(config: &Config) -> Vec<Start> {
    let mut rng = Rng::new(config.train.seed, Stream::Rollout);
    rollout_starts(&config.system, config.data.e_valid_max, config.eval.n_rollouts, &mut rng)
}

/// The effective map read as physics: exact for context 1; otherwise the mean
/// Jacobian on the validation set, with the attention along one trajectory
/// (of the first validation sequence's system). No map is read as physics
/// when the parameters are drawn per sequence: there is no one system to
/// read it against (docs/outputs.md).
fn interpretation<F: Real>(
    config: &Config,
    model: &Model<F>,
    valid: &Dataset<F>,
) -> (Option<MapReport>, Option<TrajectoryPatterns>) {
    let fixed = config.system.fixed();
    if let Some(report) = fixed.as_ref().and_then(|system| interpret_affine(model, system)) {
        return (Some(report), None);
    }
    let exact = model.to_f64();
    let system: System = fixed.unwrap_or(valid.systems[0]);
    let osc = system.oscillator();
    let start = osc.state_from_energy_phase(1.0, 0.0);
    let patterns = trajectory_patterns(&exact, &osc, system.dt, start, None);
    let report = fixed.map(|system| {
        let inputs: Vec<f64> = valid.inputs.iter().map(|x| x.f64()).collect();
        interpret_with_jacobians(&exact, &system, &jacobian_report(&exact, &inputs))
    });
    (report, Some(patterns))
}
