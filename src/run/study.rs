//! The whole study of `physlens run`: for every case, train, evaluate, roll
//! out and interpret, then write `summary.json`
//! (`docs/outputs.md`). The resolved study config is `study.toml`, written
//! first, so that an interrupted study can be resumed ([`resume_study`]).
//!
//! A case folder holds `config.toml`, `metrics.csv`, `model.safetensors`,
//! `train_state.safetensors`, `eval.json`, `rollout.csv`, `trajectories.csv`,
//! `error_vs_energy.csv`, `interpret.json`, and `attention.csv` for a
//! context above 1. With parameters drawn per sequence it also holds
//! `sequences.csv`, `implied.csv`, `filter.csv`, `patch.json`, `effects.csv`
//! and `ablation.csv`, and `interpret.json` holds `in_context` instead of a
//! map. The report adds `figures/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::Config;
use crate::config::memory::Workload;
use crate::run::folder::evaluate_into;
use crate::run::records::{CaseSummary, Summary};
use crate::train::progress::Progress;
use crate::train::state::STATE_FILE;
use crate::train::train;
use crate::train::trainer::resume_checked as resume_training;
use crate::util::cancel::CancelToken;
use crate::util::error::{Error, Result};
use crate::util::io::{write_json, write_text};
use crate::util::real::{Dtype, Real};

/// Makes the progress line of each case from its name and step count.
pub type ProgressFactory<'a> = dyn Fn(&str, u64) -> Box<dyn Progress> + Sync + 'a;

/// The resolved config of a study, in its output folder.
pub const STUDY_FILE: &str = "study.toml";

/// Runs every case of `config.run.cases` in parallel into `out/<case>/` and
/// writes `out/summary.json` (and first `out/study.toml`).
pub fn run_study(config: &Config, out: &Path, progress: &ProgressFactory<'_>, cancel: &CancelToken) -> Result<Summary> {
    write_text(&out.join(STUDY_FILE), &config.to_toml())?;
    study(config, out, progress, cancel, false)
}

/// Finishes the study in `out` that was interrupted (or crashed): every case
/// continues from its saved training state (a case that never started
/// trains from the beginning, one that finished is not trained again), then
/// every case is evaluated and `summary.json` written. The weights and
/// numbers are those of a study never stopped.
///
/// # Errors
/// [`Error::Input`] if `out` has no `study.toml` (not a study folder).
pub fn resume_study(out: &Path, progress: &ProgressFactory<'_>, cancel: &CancelToken) -> Result<Summary> {
    let path = out.join(STUDY_FILE);
    if !path.is_file() {
        let message = if out.is_dir() {
            "not a study folder: it has no study.toml (expected a folder written by `physlens run --out DIR`)"
        } else {
            "no such folder"
        };
        return Err(Error::Input { file: out.into(), message: message.into() });
    }
    let config = Config::from_file(&path)?;
    config.check_memory(Workload::Study, &path.display().to_string())?;
    study(&config, out, progress, cancel, true)
}

fn study(
    config: &Config,
    out: &Path,
    progress: &ProgressFactory<'_>,
    cancel: &CancelToken,
    resume: bool,
) -> Result<Summary> {
    let start = Instant::now();
    let jobs: Vec<(Config, PathBuf, Box<dyn Progress>)> = config
        .case_configs()?
        .into_iter()
        .zip(&config.run.cases)
        .map(|(c, case)| {
            let steps = c.train.steps;
            (c, out.join(&case.name), progress(&case.name, steps))
        })
        .collect();
    let cases: Vec<CaseSummary> = jobs
        .par_iter()
        .map(|(c, dir, progress)| {
            let resume = resume && dir.join(STATE_FILE).is_file();
            let summary = run_case(c, dir, progress.as_ref(), cancel, resume);
            match &summary {
                Ok(s) => {
                    let stop = match s.stopped_at_floor_step {
                        Some(step) => format!(
                            "; training stopped at the floor at step {step} of {} (validation MSE at or below \
                             ε²·mean‖s‖² = {:.3e} for train.floor_patience = {} steps)",
                            c.train.steps, s.floor_mse, c.train.floor_patience
                        ),
                        None => String::new(),
                    };
                    let in_context = match &s.in_context {
                        Some(ic) => format!("; in context {:.2e} at the last position", ic.median_rel_err_last),
                        None => String::new(),
                    };
                    progress.finish(&format!(
                        "done in {:.1}s: rollout median rel. err. {:.2e} at step {}{in_context}{stop}",
                        s.train_seconds, s.rollout.median_rel_err_final, s.rollout.steps
                    ))
                }
                Err(e) => progress.finish(&format!("failed: {e}")),
            }
            summary
        })
        .collect::<Result<_>>()?;
    let summary = Summary { cases, seconds: start.elapsed().as_secs_f64() };
    write_json(&out.join("summary.json"), &summary)?;
    Ok(summary)
}

/// Trains one case into `dir` (or continues its saved training, `resume`)
/// and evaluates it.
pub fn run_case(
    config: &Config,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
    resume: bool,
) -> Result<CaseSummary> {
    match config.train.dtype {
        Dtype::F32 => run_case_typed::<f32>(config, dir, progress, cancel, resume),
        Dtype::F64 => run_case_typed::<f64>(config, dir, progress, cancel, resume),
    }
}

fn run_case_typed<F: Real>(
    config: &Config,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
    resume: bool,
) -> Result<CaseSummary> {
    let outcome =
        if resume { resume_training::<F>(dir, progress, cancel)? } else { train::<F>(config, dir, progress, cancel)? };
    let results = evaluate_into(config, &outcome.model, (&outcome.train, &outcome.valid), dir)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut summary = CaseSummary::new(&name, config.system, &results.evaluation, outcome.seconds);
    summary.train_steps = Some(outcome.end_step);
    summary.stopped_at_floor_step = outcome.floor_stop.map(|s| s.step);
    summary.floor_mse = outcome.floor_mse;
    Ok(summary)
}
