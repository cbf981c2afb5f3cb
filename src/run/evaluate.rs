//! Evaluating a trained model: MSE, rollouts, error against energy and the
//! effective map read as physics; with parameters drawn per sequence, the
//! in-context interpretation and the activation patching of `physlens
//! interpret` and `physlens patch`. Everything is computed and returned;
//! nothing is written here ([`crate::run::folder`] writes the files).

use crate::config::Config;
use crate::data::{Dataset, Sampler};
use crate::eval::in_context::{self, InContextResults, wider};
use crate::eval::{Rollout, Start, error_vs_energy_csv, rollout, rollout_starts};
use crate::interpret::in_context::{InContextReport, has_oscillator_form, interpret_ranges};
use crate::interpret::jacobian::jacobian_report;
use crate::interpret::map::{MapReport, interpret_affine, interpret_with_jacobians};
use crate::interpret::patch::{PairOptions, PatchOptions, PatchReport, patch_checkpoint};
use crate::interpret::patterns::{TrajectoryPatterns, trajectory_patterns};
use crate::model::checkpoint::{AnyModel, Checkpoint};
use crate::model::{Model, mse};
use crate::physics::System;
use crate::physics::baselines::FIT_SEQUENCES;
use crate::physics::readout::SpectralReadout;
use crate::run::records::Evaluation;
use crate::util::error::Result;
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
    /// Parameters drawn per sequence: the in-context interpretation and the
    /// patching of the model.
    pub interpretation: Option<CaseInterpretation>,
}

/// What `physlens interpret` and `physlens patch` report on a case whose
/// parameters are drawn per sequence, computed on the f64 copy of its weights.
#[derive(Clone, Debug)]
pub struct CaseInterpretation {
    /// `in_context` of `interpret.json` (as `physlens interpret --json` has
    /// it) and, per sequence, `implied.csv`.
    pub in_context: InContextReport,
    /// `patch.json` (as `physlens patch --json` prints it).
    pub patch: PatchReport,
}

/// Evaluates `model` trained with `config` with `steps` rollout steps;
/// `sets` are the training and validation sets of `config`.
///
/// # Errors
/// As [`patch_checkpoint`], when the parameters are drawn per sequence.
pub fn evaluate<F: Real>(
    config: &Config,
    model: &Model<F>,
    sets: (&Dataset<F>, &Dataset<F>),
    steps: usize,
) -> Result<CaseResults> {
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
    let interpretation = case_interpretation(config, model)?;
    Ok(CaseResults { evaluation, error_vs_energy, rollout: ro, attention, in_context, interpretation })
}

impl CaseInterpretation {
    /// `implied.csv`: one row per validation sequence of the in-context
    /// interpretation, its true ω0 and γ and both readouts
    /// (`behaviour_*`, `jacobian_*`); the readout cells are empty where the
    /// map has no oscillator reading (`*_form` false).
    pub fn implied_csv(&self) -> String {
        let mut out = "sequence,omega0,gamma,behaviour_omega0,behaviour_gamma,behaviour_form,jacobian_omega0,\
                       jacobian_gamma,jacobian_form\n"
            .to_string();
        let reading = |r: Option<&SpectralReadout>, dt: f64| match r.filter(|r| has_oscillator_form(r, dt)) {
            Some(r) => format!("{:e},{:e},true", r.omega0, r.gamma),
            None => ",,false".into(),
        };
        for (n, r) in self.in_context.per_sequence.readings.iter().enumerate() {
            let s = &r.system;
            let (b, j) = (reading(r.behaviour.as_ref(), s.dt), reading(Some(&r.jacobian), s.dt));
            out.push_str(&format!("{n},{:e},{:e},{b},{j}\n", s.omega0, s.gamma));
        }
        out
    }

    /// `filter.csv`: per tap `k` (`k = 0` the last token), the four entries
    /// `ij` of the model's mean tap (`model_ij`, as `filter.taps`) and of the
    /// nearest candidate's (`nearest_ij`, averaged over the sequences the
    /// same way; empty without candidates). Column convention.
    pub fn filter_csv(&self) -> String {
        let entries = ["00", "01", "10", "11"];
        let mut out = "k".to_string();
        for who in ["model", "nearest"] {
            for e in entries {
                out.push_str(&format!(",{who}_{e}"));
            }
        }
        out.push('\n');
        let nearest = &self.in_context.per_sequence.nearest_taps;
        for (k, tap) in self.in_context.filter.taps.iter().enumerate() {
            out.push_str(&k.to_string());
            for m in [Some(tap), nearest.get(k)] {
                for e in 0..4 {
                    out.push_str(&m.map_or(",".into(), |m| format!(",{:e}", m[e / 2][e % 2])));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// With parameters drawn per sequence (`None` otherwise): the in-context
/// interpretation as `physlens interpret` makes it, on `data.n_valid`
/// sequences from the training ranges with energies up to
/// `data.e_valid_max` and the seed `train.seed` (`--n-valid`, `--e-max`,
/// `--seed`), and the patching as `physlens patch` makes it with its
/// defaults ([`PatchOptions`]: 64 pairs, ablations on 1024 sequences) at
/// the same energies and seed.
///
/// # Errors
/// As [`patch_checkpoint`].
fn case_interpretation<F: Real>(config: &Config, model: &Model<F>) -> Result<Option<CaseInterpretation>> {
    if config.system.fixed().is_some() {
        return Ok(None);
    }
    let (spec, data, seed) = (&config.system, &config.data, config.train.seed);
    let exact = model.to_f64();
    let in_context = interpret_ranges(&exact, spec, (data.n_valid, data.e_valid_max), seed, seed);
    let ckpt = Checkpoint { model: AnyModel::F64(exact), system: *spec, metadata: Default::default() };
    let opts = PatchOptions {
        pairs: PairOptions { seed, e_max: data.e_valid_max, ..PairOptions::default() },
        ..PatchOptions::default()
    };
    let patch = patch_checkpoint(&ckpt, "model.safetensors", &opts)?;
    Ok(Some(CaseInterpretation { in_context, patch }))
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
