//! Training: the step (forward, loss, backward, AdamW) and the loop around it
//! (schedule, metrics, checkpoints, divergence).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use crate::config::Config;
use crate::config::memory::Workload;
use crate::data::{Batches, Dataset, Sampler};
use crate::kernel::{Batch, Kernel, on_workers};
use crate::model::checkpoint;
use crate::model::{Model, ModelConfig, mse};
use crate::train::optim::{AdamW, AdamWConfig};
use crate::train::progress::Progress;
use crate::train::state::{DataState, STATE_FILE, TrainState};
use crate::util::cancel::CancelToken;
use crate::util::error::{Error, Result};
use crate::util::io::write_text;
use crate::util::real::Real;
use crate::util::rng::{Rng, Stream};

/// Where training batches come from.
#[derive(Clone, Debug)]
enum Source<F> {
    /// A fixed set, visited in a shuffled order.
    Fixed { data: Dataset<F>, batches: Batches },
    /// Fresh samples every step, drawn into `fresh`.
    Fresh { rng: Rng, fresh: Dataset<F> },
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
    /// The step at which the validation MSE had stayed at the floor for
    /// `train.floor_patience` steps (`train.stop_at_floor`): training stops there.
    pub floor_reached: Option<u64>,
    sampler: Sampler,
    source: Source<F>,
    kernel: Kernel<F>,
    grads: Vec<F>, // [P]
}

impl<F: Real> Trainer<F> {
    /// A fresh run: weights initialised and training data drawn from `config.train.seed`.
    pub fn new(config: &Config) -> Self {
        let cfg = config.model_config();
        let seed = config.train.seed;
        let model = Model::init(&cfg, &mut Rng::new(seed, Stream::Init));
        let source = match config.data.n_train {
            0 => Source::Fresh { rng: Rng::new(seed, Stream::Train), fresh: Dataset::empty(cfg.n_ctx) },
            n => {
                Source::Fixed { data: training_set(config), batches: Batches::new(n, Rng::new(seed, Stream::Shuffle)) }
            }
        };
        let b = config.train.batch_size;
        Trainer {
            opt: AdamW::new(AdamWConfig::from(&config.train), model.params.len()),
            grads: vec![F::zero(); model.params.len()],
            kernel: Kernel::new(&model, b),
            config: config.clone(),
            model,
            step: 0,
            floor_reached: None,
            sampler: config.sampler(config.data.e_train_max),
            source,
        }
    }

    /// The full state after `self.step` steps, with the loop's bookkeeping.
    fn snapshot(&self, log: &LoopLog, elapsed: f64) -> TrainState<F> {
        let data = match &self.source {
            Source::Fixed { batches, .. } => {
                let (order, next, rng_position) = batches.state();
                DataState::Fixed { order: order.to_vec(), next, rng_position }
            }
            Source::Fresh { rng, .. } => DataState::Fresh { rng_position: rng.position() },
        };
        TrainState {
            step: self.step,
            params: self.model.params.clone(),
            m: self.opt.m.clone(),
            v: self.opt.v.clone(),
            adam_t: self.opt.t,
            data,
            elapsed,
            window: log.window,
            first_loss: log.first_loss,
            metrics: log.metrics.clone(),
            floor_since: log.floor_since,
            floor_reached: self.floor_reached,
        }
    }

    /// The trainer of `config` continued from `state`; an error message when
    /// the state does not fit the config.
    fn restore(config: &Config, state: TrainState<F>) -> std::result::Result<Self, String> {
        let mut trainer = Trainer::new(config);
        let n = trainer.model.params.len();
        if state.params.len() != n {
            return Err(format!("holds {} parameters but the run's config.toml needs {n}", state.params.len()));
        }
        let seed = config.train.seed;
        trainer.source = match (trainer.source, state.data) {
            (Source::Fixed { data, .. }, DataState::Fixed { order, next, rng_position }) => {
                if order.len() != data.len() || next > order.len() || order.iter().any(|&i| i as usize >= data.len()) {
                    return Err(format!("its batch order does not fit the {} training sequences", data.len()));
                }
                Source::Fixed {
                    data,
                    batches: Batches::restore(order, next, Rng::new(seed, Stream::Shuffle), rng_position),
                }
            }
            (Source::Fresh { mut rng, fresh }, DataState::Fresh { rng_position }) => {
                rng.set_position(rng_position);
                Source::Fresh { rng, fresh }
            }
            _ => {
                return Err("its data mode (fixed set or fresh samples) differs from config.toml's data.n_train".into());
            }
        };
        trainer.model.params = state.params;
        trainer.opt.m = state.m;
        trainer.opt.v = state.v;
        trainer.opt.t = state.adam_t;
        trainer.step = state.step;
        trainer.floor_reached = state.floor_reached;
        Ok(trainer)
    }

    /// The learning rate of the next step.
    pub fn lr(&self) -> f64 {
        let t = &self.config.train;
        t.schedule.lr(self.step, t.steps, t.lr, t.lr_min)
    }

    /// The step training ends at: `train.steps`, or the step the floor was
    /// reached at (`train.stop_at_floor`).
    pub fn end_step(&self) -> u64 {
        self.floor_reached.unwrap_or(self.config.train.steps)
    }

    /// One optimizer step on the next batch; returns the batch loss before
    /// the update. A non-finite loss leaves the weights untouched.
    pub fn step(&mut self) -> f64 {
        let b = self.config.train.batch_size;
        let width = self.model.cfg.n_ctx * 2;
        let batch = match &mut self.source {
            Source::Fixed { data, batches } => {
                Batch { inputs: &data.inputs, targets: &data.targets, rows: Some(batches.next_batch(b)), width }
            }
            Source::Fresh { rng, fresh } => {
                fresh.refill(&self.sampler, b, rng);
                Batch { inputs: &fresh.inputs, targets: &fresh.targets, rows: None, width }
            }
        };
        let loss = self.kernel.loss_and_grad(&self.model, &batch, &mut self.grads);
        if loss.is_finite() {
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
    /// The training set ([`training_set`]), to evaluate on without drawing it again.
    pub train: Dataset<F>,
    /// Validation set used for the metrics.
    pub valid: Dataset<F>,
    /// Wall time of the training loop in seconds.
    pub seconds: f64,
    /// The step training started from: 0 for a fresh run, the saved step
    /// for a resumed one (`train.steps` if it had already finished).
    pub start_step: u64,
    /// The step training ended at: `train.steps`, or the step of a stop at
    /// the floor.
    pub end_step: u64,
    /// The rounding floor of the validation MSE ([`floor_mse`]), computed once.
    pub floor_mse: f64,
    /// The stop at the floating-point floor, if training stopped there.
    pub floor_stop: Option<FloorStop>,
}

impl<F: Real> TrainOutcome<F> {
    /// Whether a resumed run had nothing left to train.
    pub fn was_complete(&self) -> bool {
        self.start_step == self.end_step
    }
}

/// A stop at the floating-point floor (`train.stop_at_floor`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloorStop {
    /// The step training stopped at.
    pub step: u64,
    /// The steps of the schedule (`train.steps`).
    pub steps: u64,
    /// Validation MSE at the stop.
    pub valid_mse: f64,
    /// The floor ([`floor_mse`]).
    pub floor_mse: f64,
    /// `train.floor_patience`.
    pub patience: u64,
}

impl std::fmt::Display for FloorStop {
    /// One line: where and why training stopped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "training stopped at the floor at step {} of {}: the validation MSE ({:.3e}) stayed at or below the \
             rounding floor ε²·mean‖s‖² = {:.3e} for train.floor_patience = {} steps",
            self.step, self.steps, self.valid_mse, self.floor_mse, self.patience
        )
    }
}

/// The rounding floor of the validation MSE for the dtype `F`:
/// `ε² · mean ‖s‖²` over the scored targets of `valid`, with `ε` the
/// dtype's machine epsilon (2⁻²³ for f32, 2⁻⁵² for f64). A model whose
/// predictions are each off by one relative rounding unit has this MSE.
pub fn floor_mse<F: Real>(cfg: &ModelConfig, valid: &Dataset<F>) -> f64 {
    let scored = cfg.scored_positions();
    let t = cfg.n_ctx;
    let (mut total, mut count) = (0.0, 0usize);
    for (i, y) in valid.targets.chunks_exact(2).enumerate() {
        if scored.contains(&(i % t)) {
            total += y[0].f64() * y[0].f64() + y[1].f64() * y[1].f64();
            count += 1;
        }
    }
    let eps = F::epsilon().f64();
    eps * eps * total / count.max(1) as f64
}

/// The fixed training set of a config; with `n_train = 0` (fresh samples
/// every step), the first `n_valid` samples the training stream would draw.
pub fn training_set<F: Real>(config: &Config) -> Dataset<F> {
    let n = match config.data.n_train {
        0 => config.data.n_valid,
        n => n,
    };
    let mut rng = Rng::new(config.train.seed, Stream::Train);
    Dataset::generate(&config.sampler(config.data.e_train_max), n, &mut rng)
}

/// The validation set of a config (its own random stream).
pub fn validation_set<F: Real>(config: &Config) -> Dataset<F> {
    let mut rng = Rng::new(config.train.seed, Stream::Valid);
    Dataset::generate(&config.sampler(config.data.e_valid_max), config.data.n_valid, &mut rng)
}

/// Bookkeeping of the training loop that is not the optimisation itself.
#[derive(Clone, Debug, Default)]
struct LoopLog {
    metrics: String,
    window: (f64, u64), // (sum of batch losses, count) since the last metrics row
    first_loss: Option<f64>,
    history: Vec<(u64, f64)>,
    elapsed_before: f64,
    floor_since: Option<u64>, // first metrics row of the current stretch of rows at the floor
}

/// Trains from scratch to the end of the schedule, writing into `dir`:
/// `config.toml` (first), `metrics.csv` (one row every `log_every` steps),
/// `model.safetensors` and the full state `train_state.safetensors` (every
/// `checkpoint_every` steps and at the end).
///
/// # Errors
/// [`Error::Diverged`] on a non-finite or exploding loss (the last periodic
/// checkpoint, all finite, is kept); [`Error::Interrupted`] once `cancel` is
/// cancelled, after the current step is done and the full state saved.
pub fn train<F: Real>(
    config: &Config,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainOutcome<F>> {
    write_text(&dir.join("config.toml"), &config.to_toml())?;
    let log = LoopLog { metrics: String::from("step,lr,train_loss,valid_mse,elapsed_s\n"), ..Default::default() };
    on_workers(|| train_loop(Trainer::<F>::new(config), log, dir, progress, cancel))
}

/// Continues the run in `dir` from its `train_state.safetensors`, with the
/// config saved there; the final weights are bit-identical to a run that was
/// never stopped.
///
/// # Errors
/// [`Error::Config`] when the run needs more memory than the machine has
/// (checked before the state is read); as [`train`] otherwise.
pub fn resume<F: Real>(dir: &Path, progress: &dyn Progress, cancel: &CancelToken) -> Result<TrainOutcome<F>> {
    let file = dir.join("config.toml");
    Config::from_file(&file)?.check_memory(Workload::Train, &file.display().to_string())?;
    resume_checked(dir, progress, cancel)
}

/// [`resume`] without the memory check: for the cases of a study, which
/// checked them all together before starting.
pub(crate) fn resume_checked<F: Real>(
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainOutcome<F>> {
    let config = Config::from_file(&dir.join("config.toml"))?;
    let path = dir.join(STATE_FILE);
    let state = TrainState::<F>::load(&path)?;
    let log = LoopLog {
        metrics: state.metrics.clone(),
        window: state.window,
        first_loss: state.first_loss,
        history: vec![],
        elapsed_before: state.elapsed,
        floor_since: state.floor_since,
    };
    let trainer = Trainer::<F>::restore(&config, state).map_err(|message| Error::Checkpoint { file: path, message })?;
    on_workers(|| train_loop(trainer, log, dir, progress, cancel))
}

fn train_loop<F: Real>(
    mut trainer: Trainer<F>,
    mut log: LoopLog,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<TrainOutcome<F>> {
    let config = trainer.config.clone();
    let t = &config.train;
    let valid = validation_set::<F>(&config);
    let floor = floor_mse(&trainer.model.cfg, &valid);
    let start = Instant::now();
    let start_step = trainer.step;
    let elapsed = |log: &LoopLog| log.elapsed_before + start.elapsed().as_secs_f64();
    while trainer.step < trainer.end_step() {
        if cancel.is_cancelled() {
            save_state(&trainer, &log, elapsed(&log), dir)?;
            return Err(Error::Interrupted(format!(
                "stopped after step {} of {}; the full state is in {}. Continue with `physlens train --resume {}`",
                trainer.step,
                t.steps,
                dir.join(STATE_FILE).display(),
                dir.display()
            )));
        }
        let lr = trainer.lr();
        let loss = trainer.step();
        let first = *log.first_loss.get_or_insert(loss);
        if !loss.is_finite() || loss > 1e6 * first.max(1e-12) {
            log.history.push((trainer.step, loss));
            return Err(Error::Diverged(diagnosis(
                &log.history,
                lr,
                &dir.join("model.safetensors"),
                t.checkpoint_every,
            )));
        }
        log.window = (log.window.0 + loss, log.window.1 + 1);
        let s = trainer.step;
        if s.is_multiple_of(t.log_every) || s == t.steps {
            let (train_loss, valid_mse) = (log.window.0 / log.window.1 as f64, mse(&trainer.model, &valid));
            let secs = elapsed(&log);
            writeln!(log.metrics, "{s},{lr:e},{train_loss:e},{valid_mse:e},{secs:.3}").expect("write to String");
            write_text(&dir.join("metrics.csv"), &log.metrics)?;
            progress.update(s, train_loss, valid_mse, secs);
            log.history.push((s, train_loss));
            log.window = (0.0, 0);
            if t.stop_at_floor && trainer.floor_reached.is_none() {
                log.floor_since = if valid_mse <= floor { log.floor_since.or(Some(s)) } else { None };
                if s < t.steps && log.floor_since.is_some_and(|since| s - since >= t.floor_patience) {
                    trainer.floor_reached = Some(s);
                }
            }
        }
        if s.is_multiple_of(t.checkpoint_every) || s == trainer.end_step() {
            save_state(&trainer, &log, elapsed(&log), dir)?;
        }
    }
    let seconds = elapsed(&log);
    let end_step = trainer.end_step();
    let floor_stop = trainer.floor_reached.map(|step| FloorStop {
        step,
        steps: t.steps,
        valid_mse: mse(&trainer.model, &valid),
        floor_mse: floor,
        patience: t.floor_patience,
    });
    let train = match trainer.source {
        Source::Fixed { data, .. } => data,
        Source::Fresh { .. } => training_set(&config),
    };
    Ok(TrainOutcome { seconds, model: trainer.model, train, valid, start_step, end_step, floor_mse: floor, floor_stop })
}

/// Writes `model.safetensors` and `train_state.safetensors` for the current step.
fn save_state<F: Real>(trainer: &Trainer<F>, log: &LoopLog, elapsed: f64, dir: &Path) -> Result<()> {
    let extra = [
        ("producer", format!("physlens {}", env!("CARGO_PKG_VERSION"))),
        ("step", trainer.step.to_string()),
        ("seed", trainer.config.train.seed.to_string()),
        ("config", trainer.config.to_toml()),
    ];
    let extra = extra.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    checkpoint::save(&dir.join("model.safetensors"), &trainer.model, trainer.config.system, &extra)?;
    trainer.snapshot(log, elapsed).save(&dir.join(STATE_FILE))
}

/// A human-readable account of a divergence with a hint; it names the last
/// checkpoint only if one was written before the divergence.
fn diagnosis(history: &[(u64, f64)], lr: f64, checkpoint: &Path, checkpoint_every: u64) -> String {
    let (step, loss) = history.last().copied().unwrap_or((0, f64::NAN));
    let recent: Vec<String> = history.iter().rev().take(6).rev().map(|(s, l)| format!("{s}: {l:.3e}")).collect();
    let kept = if checkpoint.is_file() {
        format!("The last periodic checkpoint (finite weights) is {}", checkpoint.display())
    } else {
        format!("No checkpoint was written before the divergence (one is written every {checkpoint_every} steps)")
    };
    format!(
        "loss became {loss:e} at step {step} (learning rate {lr:e}); recent losses [{}]. \
         Hint: the learning rate is probably too high — try a lower train.lr or a cosine schedule. {kept}",
        recent.join(", "),
    )
}
