//! Training: the step (forward, loss, backward, AdamW) and the loop around it
//! (schedule, metrics, checkpoints, divergence).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::{self, SystemInfo};
use crate::config::Config;
use crate::data::{Batches, Dataset};
use crate::error::{Error, Result};
use crate::eval::mse;
use crate::io::write_text;
use crate::mat2::Mat2;
use crate::model::{mse_loss, Activations, Model, Scratch};
use crate::optim::AdamW;
use crate::physics::Oscillator;
use crate::progress::Progress;
use crate::real::Real;
use crate::rng::{Rng, Stream};

/// Where training batches come from.
#[derive(Clone, Debug)]
enum Source<F> {
    /// A fixed set, visited in a shuffled order.
    Fixed { data: Dataset<F>, batches: Batches },
    /// Fresh samples every step.
    Fresh { rng: Rng },
}

/// Everything one training run holds between steps.
#[derive(Clone, Debug)]
pub struct Trainer<F: Real> {
    /// The resolved configuration.
    pub config: Config,
    /// The model being trained.
    pub model: Model<F>,
    /// Optimizer state.
    pub opt: AdamW<F>,
    /// Steps taken.
    pub step: u64,
    osc: Oscillator,
    propagator: Mat2,
    source: Source<F>,
    input: Vec<F>,  // [B, T, 2]
    target: Vec<F>, // [B, T, 2]
    acts: Activations<F>,
    scratch: Scratch<F>,
    grads: Vec<F>, // [P]
}

impl<F: Real> Trainer<F> {
    /// A fresh run: weights initialised and training data drawn from `config.train.seed`.
    pub fn new(config: &Config) -> Self {
        let cfg = config.model_config();
        let seed = config.train.seed;
        let osc = config.oscillator();
        let propagator = osc.propagator(config.system.dt);
        let model = Model::init(&cfg, &mut Rng::new(seed, Stream::Init));
        let source = match config.data.n_train {
            0 => Source::Fresh { rng: Rng::new(seed, Stream::Train) },
            n => Source::Fixed { data: training_set(config), batches: Batches::new(n, Rng::new(seed, Stream::Shuffle)) },
        };
        let b = config.train.batch_size;
        let width = b * cfg.n_ctx * 2;
        Trainer {
            opt: AdamW::new(config.adamw(), model.params.len()),
            grads: vec![F::zero(); model.params.len()],
            acts: Activations::new(&cfg, b),
            scratch: Scratch::new(&cfg, b),
            input: vec![F::zero(); width],
            target: vec![F::zero(); width],
            config: config.clone(),
            model,
            step: 0,
            osc,
            propagator,
            source,
        }
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        let t = &self.config.train;
        t.schedule.lr(self.step, t.steps, t.lr, t.lr_min)
    }

    /// One optimizer step on the next batch; returns the batch loss before
    /// the update. A non-finite loss leaves the weights untouched.
    pub fn step(&mut self) -> f64 {
        let b = self.config.train.batch_size;
        match &mut self.source {
            Source::Fixed { data, batches } => data.gather(batches.next_batch(b), &mut self.input, &mut self.target),
            Source::Fresh { rng } => {
                let fresh =
                    Dataset::generate(&self.osc, &self.propagator, self.config.data.e_train_max, b, self.model.cfg.n_ctx, rng);
                self.input.copy_from_slice(&fresh.inputs);
                self.target.copy_from_slice(&fresh.targets);
            }
        }
        self.model.forward(&self.input, &mut self.acts);
        let loss = mse_loss(&self.model.cfg, &self.acts.pred, &self.target, &mut self.scratch.d_pred);
        if loss.is_finite() {
            self.model.backward(&self.input, &self.acts, &mut self.scratch, &mut self.grads);
            let lr = self.lr();
            self.opt.step(&mut self.model.params, &self.grads, lr);
        }
        self.step += 1;
        loss
    }
}

/// What a finished training run reports.
#[derive(Clone, Debug)]
pub struct TrainOutcome<F: Real> {
    /// The trained model.
    pub model: Model<F>,
    /// Validation set used for the metrics.
    pub valid: Dataset<F>,
    /// Wall time of the training loop in seconds.
    pub seconds: f64,
}

/// The fixed training set of a config; with `n_train = 0` (fresh samples
/// every step), the first `n_valid` samples the training stream would draw.
pub fn training_set<F: Real>(config: &Config) -> Dataset<F> {
    let osc = config.oscillator();
    let m = osc.propagator(config.system.dt);
    let n = match config.data.n_train {
        0 => config.data.n_valid,
        n => n,
    };
    let mut rng = Rng::new(config.train.seed, Stream::Train);
    Dataset::generate(&osc, &m, config.data.e_train_max, n, config.data.context, &mut rng)
}

/// The validation set of a config (its own random stream).
pub fn validation_set<F: Real>(config: &Config) -> Dataset<F> {
    let osc = config.oscillator();
    let m = osc.propagator(config.system.dt);
    let mut rng = Rng::new(config.train.seed, Stream::Valid);
    Dataset::generate(&osc, &m, config.data.e_valid_max, config.data.n_valid, config.data.context, &mut rng)
}

/// The metadata that identifies the system a model was trained on.
pub fn system_info(config: &Config) -> SystemInfo {
    SystemInfo::oscillator(config.system.omega0, config.system.gamma, config.system.dt)
}

/// Trains to the end of the schedule, writing into `dir`: `config.toml`
/// (first), `metrics.csv` (one row every `log_every` steps) and
/// `model.safetensors` (every `checkpoint_every` steps and at the end).
/// A non-finite or exploding loss stops with [`Error::Diverged`], keeping the
/// last finite checkpoint.
pub fn train<F: Real>(config: &Config, dir: &Path, progress: &Progress) -> Result<TrainOutcome<F>> {
    write_text(&dir.join("config.toml"), &config.to_toml())?;
    let valid = validation_set::<F>(config);
    let mut trainer = Trainer::<F>::new(config);
    let t = &config.train;
    let model_path = dir.join("model.safetensors");
    let mut metrics = String::from("step,lr,train_loss,valid_mse,elapsed_s\n");
    let start = Instant::now();
    let mut window = (0.0, 0u64); // (sum of batch losses, count) since the last row
    let mut first_loss = None;
    let mut history: Vec<(u64, f64)> = vec![];
    while trainer.step < t.steps {
        let lr = trainer.lr();
        let loss = trainer.step();
        let first = *first_loss.get_or_insert(loss);
        if !loss.is_finite() || loss > 1e6 * first.max(1e-12) {
            history.push((trainer.step, loss));
            let checkpoint = save_last_good(&trainer, &model_path)?;
            return Err(Error::Diverged(diagnosis(&history, lr, &checkpoint)));
        }
        window = (window.0 + loss, window.1 + 1);
        let s = trainer.step;
        if s.is_multiple_of(t.log_every) || s == t.steps {
            let (train_loss, valid_mse) = (window.0 / window.1 as f64, mse(&trainer.model, &valid));
            let elapsed = start.elapsed().as_secs_f64();
            writeln!(metrics, "{s},{lr:e},{train_loss:e},{valid_mse:e},{elapsed:.3}").expect("write to String");
            write_text(&dir.join("metrics.csv"), &metrics)?;
            progress.update(s, train_loss, valid_mse, elapsed);
            history.push((s, train_loss));
            window = (0.0, 0);
        }
        if s.is_multiple_of(t.checkpoint_every) || s == t.steps {
            checkpoint::save(&model_path, &trainer.model, &system_info(config), &Default::default())?;
        }
    }
    Ok(TrainOutcome { model: trainer.model, valid, seconds: start.elapsed().as_secs_f64() })
}

/// Writes the current weights if they are all finite (otherwise leaves the
/// last periodic checkpoint in place) and says which file holds the last good weights.
fn save_last_good<F: Real>(trainer: &Trainer<F>, path: &Path) -> Result<PathBuf> {
    if trainer.model.params.iter().all(|w| w.is_finite()) {
        checkpoint::save(path, &trainer.model, &system_info(&trainer.config), &Default::default())?;
    }
    Ok(path.to_path_buf())
}

/// A human-readable account of a divergence with a hint.
fn diagnosis(history: &[(u64, f64)], lr: f64, checkpoint: &Path) -> String {
    let (step, loss) = history.last().copied().unwrap_or((0, f64::NAN));
    let recent: Vec<String> = history.iter().rev().take(6).rev().map(|(s, l)| format!("{s}: {l:.3e}")).collect();
    format!(
        "loss became {loss:e} at step {step} (learning rate {lr:e}); recent losses [{}]. \
         Hint: the learning rate is probably too high — try a lower train.lr or a cosine schedule. \
         The last finite weights are in {}",
        recent.join(", "),
        checkpoint.display()
    )
}
