//! The whole study of `physlens run`: for every case, train, evaluate, roll
//! out and interpret, then write `summary.json` (SPEC §4, §6).
//!
//! A case folder holds `config.toml`, `metrics.csv`, `model.safetensors`,
//! `train_state.safetensors`, `eval.json`, `rollout.csv`, `trajectories.csv`,
//! `error_vs_energy.csv`, `interpret.json` (and `attention.csv` for context
//! > 1); the report adds `figures/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::model::checkpoint::{self, AnyModel};
use crate::config::Config;
use crate::data::Dataset;
use crate::util::error::{Error, Result};
use crate::eval::{RolloutSummary, rollout, rollout_starts};
use crate::model::mse;
use crate::interpret::map::{MapReport, interpret_affine, interpret_with_jacobians};
use crate::util::io::{write_json, write_text};
use crate::interpret::jacobian::jacobian_report;
use crate::model::Model;
use crate::interpret::patterns::{patterns_csv, trajectory_patterns};
use crate::train::progress::Progress;
use crate::util::cancel::CancelToken;
use crate::util::real::{Dtype, Real};
use crate::util::rng::{Rng, Stream};
use crate::train::{system_info, train, training_set, validation_set};

/// Makes the progress line of each case from its name and step count.
pub type ProgressFactory<'a> = dyn Fn(&str, u64) -> Box<dyn Progress> + Sync + 'a;

/// Trajectories written to `trajectories.csv` for plotting.
const SAVED_TRAJECTORIES: usize = 8;

/// The learned ω0 and γ (spectral readout).
#[derive(Clone, Debug, Serialize)]
pub struct LearnedParams {
    /// ω0.
    pub omega0: f64,
    /// γ.
    pub gamma: f64,
}

/// One case of `summary.json` (SPEC §4), with a few more keys.
#[derive(Clone, Debug, Serialize)]
pub struct CaseSummary {
    /// Case name (its folder).
    pub name: String,
    /// ω0 of the system.
    pub omega0: f64,
    /// γ of the system.
    pub gamma: f64,
    /// Δt.
    pub dt: f64,
    /// MSE on the whole training set after training.
    pub train_mse: f64,
    /// MSE on the validation set (energies up to `e_valid_max`).
    pub valid_mse: f64,
    /// Rollout headline numbers.
    pub rollout: RolloutSummary,
    /// Spectral readout of the effective map (the mean Jacobian for context > 1).
    pub learned: LearnedParams,
    /// Nearest candidate update rule.
    pub nearest_method: String,
    /// `d₂/d₁` of the rule distances.
    pub margin: f64,
    /// `‖M − M_exact‖_F`.
    pub error_vs_exact: f64,
    /// Checkpoint path relative to the run folder.
    pub model: String,
    /// Training wall time in seconds.
    pub train_seconds: f64,
}

/// `summary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// One entry per case, in config order.
    pub cases: Vec<CaseSummary>,
    /// Wall time of the whole study in seconds.
    pub seconds: f64,
}

/// Everything `eval` computes for a trained model (`eval.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    /// MSE on the whole training set.
    pub train_mse: f64,
    /// MSE on the validation set.
    pub valid_mse: f64,
    /// Rollout headline numbers.
    pub rollout: RolloutSummary,
    /// The effective map read as physics (exact for context 1, the mean
    /// Jacobian of the last prediction on the validation set otherwise).
    pub interpretation: MapReport,
}

/// Runs every case of `config.run.cases` in parallel into `out/<case>/` and
/// writes `out/summary.json`.
pub fn run_study(config: &Config, out: &Path, progress: &ProgressFactory<'_>, cancel: &CancelToken) -> Result<Summary> {
    let start = Instant::now();
    let jobs: Vec<(Config, PathBuf, Box<dyn Progress>)> = config
        .run
        .cases
        .iter()
        .map(|case| {
            let mut c = config.clone();
            c.system.gamma = case.gamma;
            (c, out.join(&case.name), progress(&case.name, config.train.steps))
        })
        .collect();
    let cases: Vec<CaseSummary> = jobs
        .par_iter()
        .map(|(c, dir, progress)| {
            let summary = run_case(c, dir, progress.as_ref(), cancel);
            match &summary {
                Ok(s) => progress.finish(&format!(
                    "done in {:.1}s: rollout median rel. err. {:.2e} at step {}",
                    s.train_seconds, s.rollout.median_rel_err_final, s.rollout.steps
                )),
                Err(e) => progress.finish(&format!("failed: {e}")),
            }
            summary
        })
        .collect::<Result<_>>()?;
    let summary = Summary { cases, seconds: start.elapsed().as_secs_f64() };
    write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Trains one case into `dir` and evaluates it.
pub fn run_case(config: &Config, dir: &Path, progress: &dyn Progress, cancel: &CancelToken) -> Result<CaseSummary> {
    match config.train.dtype {
        Dtype::F32 => run_case_typed::<f32>(config, dir, progress, cancel),
        Dtype::F64 => run_case_typed::<f64>(config, dir, progress, cancel),
    }
}

fn run_case_typed<F: Real>(
    config: &Config,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<CaseSummary> {
    let outcome = train::<F>(config, dir, progress, cancel)?;
    let sets = (&outcome.train, &outcome.valid);
    let eval = evaluate(config, &outcome.model, sets, dir, config.eval.rollout_steps)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let r = &eval.interpretation;
    let learned = LearnedParams { omega0: r.learned.omega0, gamma: r.learned.gamma };
    let (nearest_method, margin, error_vs_exact) = (r.nearest_method.clone(), r.margin, r.error_vs_exact);
    Ok(CaseSummary {
        name: name.clone(),
        omega0: config.system.omega0,
        gamma: config.system.gamma,
        dt: config.system.dt,
        train_mse: eval.train_mse,
        valid_mse: eval.valid_mse,
        rollout: eval.rollout,
        learned,
        nearest_method,
        margin,
        error_vs_exact,
        model: format!("{name}/model.safetensors"),
        train_seconds: outcome.seconds,
    })
}

/// Evaluates `model` trained with `config`, writing `eval.json`,
/// `rollout.csv`, `trajectories.csv`, `error_vs_energy.csv`, `interpret.json`
/// and, for context > 1, `attention.csv` into `dir`.
/// `sets` are the training and validation sets of `config`.
pub fn evaluate<F: Real>(
    config: &Config,
    model: &Model<F>,
    sets: (&Dataset<F>, &Dataset<F>),
    dir: &Path,
    steps: usize,
) -> Result<Evaluation> {
    let (train_set, valid) = sets;
    let osc = config.oscillator();
    let mut rng = Rng::new(config.train.seed, Stream::Rollout);
    let starts = rollout_starts(&osc, config.data.e_valid_max, config.eval.n_rollouts, &mut rng);
    let ro = rollout(model, &osc, config.system.dt, &starts, steps);
    write_text(&dir.join("rollout.csv"), &ro.stats_csv())?;
    write_text(&dir.join("trajectories.csv"), &ro.trajectories_csv(SAVED_TRAJECTORIES, config.system.dt))?;
    write_text(&dir.join("error_vs_energy.csv"), &crate::report::data::error_vs_energy_csv(model, valid, &osc))?;
    let system = system_info(config);
    let interpretation = match interpret_affine(model, &system) {
        Some(report) => report,
        None => {
            // Context > 1: the mean Jacobian on the validation set, and the
            // attention along one trajectory for the report.
            let exact = model.to_f64();
            let inputs: Vec<f64> = valid.inputs.iter().map(|x| x.f64()).collect();
            let start = osc.state_from_energy_phase(1.0, 0.0);
            let patterns = trajectory_patterns(&exact, &osc, config.system.dt, start, None);
            write_text(&dir.join("attention.csv"), &patterns_csv(&patterns))?;
            interpret_with_jacobians(&exact, &system, &jacobian_report(&exact, &inputs))
        }
    };
    write_json(&dir.join("interpret.json"), &interpretation)?;
    let eval = Evaluation {
        train_mse: mse(model, train_set),
        valid_mse: mse(model, valid),
        rollout: ro.summary(),
        interpretation,
    };
    write_json(&dir.join("eval.json"), &eval)?;
    Ok(eval)
}

/// A trained run folder: its resolved config and its checkpoint.
pub struct RunDir {
    /// The folder.
    pub dir: PathBuf,
    /// `config.toml` as resolved at training time.
    pub config: Config,
    /// `model.safetensors`.
    pub model: AnyModel,
}

impl RunDir {
    /// Opens a folder written by `physlens train` (or one case of `physlens run`).
    pub fn open(dir: &Path) -> Result<RunDir> {
        let config = Self::config_of(dir)?;
        let model = checkpoint::load(&dir.join("model.safetensors"))?.model;
        Ok(RunDir { dir: dir.into(), config, model })
    }

    /// The resolved config a run folder was trained with (`config.toml`).
    pub fn config_of(dir: &Path) -> Result<Config> {
        let config_path = dir.join("config.toml");
        if !config_path.is_file() {
            return Err(Error::Input {
                file: dir.into(),
                message: "not a run folder: it has no config.toml (expected a folder written by `physlens train --out DIR`, or a case folder such as runs/blog/undamped)".into(),
            });
        }
        Config::from_file(&config_path)
    }

    fn evaluate_typed<F: Real>(&self, model: &Model<F>, steps: usize) -> Result<Evaluation> {
        let sets = (&training_set(&self.config), &validation_set(&self.config));
        evaluate(&self.config, model, sets, &self.dir, steps)
    }

    /// Re-evaluates the run with `steps` rollout steps and rewrites its evaluation files.
    pub fn evaluate(&self, steps: usize) -> Result<Evaluation> {
        match &self.model {
            AnyModel::F32(m) => self.evaluate_typed(m, steps),
            AnyModel::F64(m) => self.evaluate_typed(m, steps),
        }
    }
}
