//! The whole study of `physlens run`: for every case, train, evaluate, roll
//! out and interpret, then write `summary.json`
//! (`docs/outputs.md`).
//!
//! A case folder holds `config.toml`, `metrics.csv`, `model.safetensors`,
//! `train_state.safetensors`, `eval.json`, `rollout.csv`, `trajectories.csv`,
//! `error_vs_energy.csv`, `interpret.json` (and `attention.csv` for context
//! > 1); the report adds `figures/`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use crate::config::Config;
use crate::run::folder::evaluate_into;
use crate::run::records::{CaseSummary, Summary};
use crate::train::progress::Progress;
use crate::train::train;
use crate::util::cancel::CancelToken;
use crate::util::error::Result;
use crate::util::io::write_json;
use crate::util::real::{Dtype, Real};

/// Makes the progress line of each case from its name and step count.
pub type ProgressFactory<'a> = dyn Fn(&str, u64) -> Box<dyn Progress> + Sync + 'a;

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
    let results = evaluate_into(config, &outcome.model, (&outcome.train, &outcome.valid), dir)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(CaseSummary::new(&name, config.system, &results.evaluation, outcome.seconds))
}
