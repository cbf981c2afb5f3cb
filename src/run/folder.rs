//! A run folder: what `physlens train` made (`config.toml`,
//! `model.safetensors`, …) and the evaluation files written beside it.
//! This is the one place that writes evaluation results to disk.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::config::memory::Workload;
use crate::data::Dataset;
use crate::eval::Rollout;
use crate::interpret::patterns::patterns_csv;
use crate::model::Model;
use crate::model::checkpoint::{self, AnyModel};
use crate::run::evaluate::{CaseResults, evaluate, rollout_of};
use crate::run::records::InterpretRecord;
use crate::train::{training_set, validation_set};
use crate::util::error::{Error, Result};
use crate::util::io::{write_json, write_text};
use crate::util::real::Real;

/// Trajectories written to `trajectories.csv` for plotting.
const SAVED_TRAJECTORIES: usize = 8;

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
        let file = dir.join("model.safetensors");
        let model = checkpoint::load(&file)?.model;
        if model.cfg().resolved() != config.model_config().resolved() {
            let message = format!(
                "its `model` metadata {:?} is not the architecture of the folder's config.toml {:?} ([model], data.context \
                 and train.loss_positions); the folder mixes two runs",
                model.cfg(),
                config.model_config()
            );
            return Err(Error::Checkpoint { file, message });
        }
        Ok(RunDir { dir: dir.into(), config, model })
    }

    /// The resolved config a run folder was trained with (`config.toml`).
    pub fn config_of(dir: &Path) -> Result<Config> {
        let config_path = dir.join("config.toml");
        if !dir.exists() {
            return Err(Error::Input { file: dir.into(), message: "no such folder".into() });
        }
        if !config_path.is_file() {
            return Err(Error::Input {
                file: dir.into(),
                message: "not a run folder: it has no config.toml (expected a folder written by `physlens train --out DIR`, or a case folder such as runs/blog/undamped)".into(),
            });
        }
        Config::from_file(&config_path)
    }

    /// Evaluates the model (rollouts of `eval.rollout_steps`) and writes the
    /// evaluation files ([`write_results`]).
    ///
    /// # Errors
    /// [`Error::Config`] when the evaluation needs more memory than the
    /// machine has (nothing computed or written); [`Error::Io`] if a file
    /// cannot be written.
    pub fn evaluate(&self) -> Result<CaseResults> {
        self.config.check_memory(Workload::Evaluate, &self.config_file())?;
        fn typed<F: Real>(run: &RunDir, model: &Model<F>) -> Result<CaseResults> {
            let sets = (&training_set(&run.config), &validation_set(&run.config));
            evaluate_into(&run.config, model, sets, &run.dir)
        }
        match &self.model {
            AnyModel::F32(m) => typed(self, m),
            AnyModel::F64(m) => typed(self, m),
        }
    }

    /// Rolls the model out for `steps` steps from the evaluation's starts and
    /// writes `rollout_<steps>.csv` and `trajectories_<steps>.csv` only: the
    /// files of the evaluation (and the report made from them) stay as they are.
    ///
    /// # Errors
    /// [`Error::Option`] `steps` for 0 steps (nothing to roll out, nothing
    /// written), or for more steps than the machine has memory for;
    /// [`Error::Config`] when `eval.n_rollouts` is what needs too much
    /// memory; [`Error::Io`] if a file cannot be written.
    pub fn rollout(&self, steps: usize) -> Result<(Rollout, [PathBuf; 2])> {
        if steps == 0 {
            let message = "must be at least 1 (the number of autoregressive steps to roll out)".into();
            return Err(Error::Option { name: "steps".into(), message });
        }
        match self.config.check_memory(Workload::Rollout { steps }, &self.config_file()) {
            Err(Error::Config { key, message, .. }) if key == "eval.rollout_steps" => {
                let message = message.split(" Lower `").next().unwrap_or_default();
                return Err(Error::Option {
                    name: "steps".into(),
                    message: format!("{steps}: {message} Roll out fewer steps"),
                });
            }
            other => other?,
        }
        let rollout = match &self.model {
            AnyModel::F32(m) => rollout_of(&self.config, m, steps),
            AnyModel::F64(m) => rollout_of(&self.config, m, steps),
        };
        let files = [self.dir.join(format!("rollout_{steps}.csv")), self.dir.join(format!("trajectories_{steps}.csv"))];
        write_text(&files[0], &rollout.stats_csv())?;
        write_text(&files[1], &rollout.trajectories_csv(SAVED_TRAJECTORIES))?;
        Ok((rollout, files))
    }

    /// `config.toml` of the folder, as errors name it.
    fn config_file(&self) -> String {
        self.dir.join("config.toml").display().to_string()
    }
}

/// Writes a case's evaluation into `dir`: `rollout.csv`, `trajectories.csv`,
/// `error_vs_energy.csv`, `interpret.json` (the map when there is one
/// system; `in_context` when the parameters are drawn per sequence),
/// `eval.json`, and for context > 1 `attention.csv`; `sequences.csv` with an
/// in-context evaluation; with parameters drawn per sequence `implied.csv`,
/// `filter.csv`, `context_probes.csv` and the files of `physlens patch --out` (`patch.json`, `effects.csv`,
/// `ablation.csv`).
pub fn write_results(dir: &Path, r: &CaseResults) -> Result<()> {
    write_text(&dir.join("rollout.csv"), &r.rollout.stats_csv())?;
    write_text(&dir.join("trajectories.csv"), &r.rollout.trajectories_csv(SAVED_TRAJECTORIES))?;
    write_text(&dir.join("error_vs_energy.csv"), &r.error_vs_energy)?;
    if let Some(patterns) = &r.attention {
        write_text(&dir.join("attention.csv"), &patterns_csv(patterns))?;
    }
    if let Some(ic) = &r.in_context {
        write_text(&dir.join("sequences.csv"), &ic.sequences_csv)?;
    }
    let record = InterpretRecord {
        map: r.evaluation.interpretation.as_ref(),
        in_context: r.interpretation.as_ref().map(|i| &i.in_context),
    };
    if record.map.is_some() || record.in_context.is_some() {
        write_json(&dir.join("interpret.json"), &record)?;
    }
    if let Some(i) = &r.interpretation {
        write_text(&dir.join("implied.csv"), &i.implied_csv())?;
        write_text(&dir.join("filter.csv"), &i.filter_csv())?;
        let probes = crate::interpret::context_probes::context_probes_csv(&i.in_context.probes);
        write_text(&dir.join("context_probes.csv"), &probes)?;
        i.patch.write(dir)?;
    }
    write_json(&dir.join("eval.json"), &r.evaluation)
}

/// Evaluates a freshly trained `model` (with the sets training already drew)
/// and writes the results into `dir`.
pub fn evaluate_into<F: Real>(
    config: &Config,
    model: &Model<F>,
    sets: (&Dataset<F>, &Dataset<F>),
    dir: &Path,
) -> Result<CaseResults> {
    let results = evaluate(config, model, sets, config.eval.rollout_steps)?;
    write_results(dir, &results)?;
    Ok(results)
}
