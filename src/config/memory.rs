//! How much memory a config's workload needs (docs/config.md, "Memory"),
//! worked out from the sizes alone before anything is allocated, and the
//! check that refuses a config the machine cannot hold, naming the key to
//! lower. Every size saturates, so `d_head = 999999999999` is "too much",
//! never a wrapped small number.
//!
//! # Example
//! ```
//! use physlens::config::Config;
//! use physlens::config::memory::Workload;
//! use physlens::util::memory::{Available, Bytes};
//!
//! let mut config = Config::default();
//! config.model.d_head = 999_999_999_999;
//! let gib = Available { bytes: Bytes(1 << 30), source: "a test".into() };
//! let err = config.check_memory_within(Workload::Train, &gib, "big.toml").unwrap_err();
//! assert!(err.to_string().starts_with("big.toml: `model.d_head`: training needs an estimated"));
//! ```

use crate::config::Config;
use crate::kernel;
use crate::model::{Activations, D_IN, Scratch, chunk_sequences};
use crate::physics::baselines::{FIT_SEQUENCES, MAX_FILTER};
use crate::util::error::{Error, Result};
use crate::util::memory::{Available, Bytes, Estimate, available};

/// What a command does with a config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// `physlens train` (and `train --resume`): the training loop.
    Train,
    /// `physlens run`: every case of `[run] cases` trained and evaluated side by side.
    Study,
    /// `physlens eval`: the training and validation sets, MSE, rollouts, Jacobians.
    Evaluate,
    /// `physlens rollout --steps N`.
    Rollout {
        /// Autoregressive steps.
        steps: usize,
    },
}

impl Workload {
    /// What it is called in messages.
    fn name(self) -> &'static str {
        match self {
            Workload::Train => "training",
            Workload::Study => "the study (its cases side by side)",
            Workload::Evaluate => "the evaluation",
            Workload::Rollout { .. } => "the rollout",
        }
    }
}

/// The program itself: code, thread stacks, allocator slack (measured on
/// the seed config, docs/config.md "Memory").
const RUNTIME: Bytes = Bytes(8 << 20);

/// Text written per rollout step: a `rollout.csv` row and eight
/// `trajectories.csv` rows.
const CSV_BYTES_PER_STEP: usize = 1024;

/// The keys that set a size, with what lowering each means: the key
/// reported is the one whose default lowers the estimate most.
const SIZE_KEYS: [&str; 10] = [
    "model.d_model",
    "model.n_heads",
    "model.d_head",
    "model.n_layers",
    "data.context",
    "data.n_train",
    "data.n_valid",
    "train.batch_size",
    "eval.n_rollouts",
    "eval.rollout_steps",
];

impl Config {
    /// The memory `workload` needs at its peak, part by part.
    pub fn memory_estimate(&self, workload: Workload) -> Estimate {
        match workload {
            Workload::Train => with_runtime(self.training_estimate()),
            Workload::Study => {
                // Cases run on a thread pool that steals work: all of them may be in memory at once.
                let cases = self.case_configs().unwrap_or_else(|_| vec![self.clone(); self.run.cases.len().max(1)]);
                let mut total = Estimate::default();
                for (i, c) in cases.iter().enumerate() {
                    let (train, eval) = (c.training_estimate(), c.evaluation_estimate(c.eval.rollout_steps));
                    let peak = if train.total() >= eval.total() { train } else { eval };
                    total.add_all(&format!("case {}: ", self.run.cases.get(i).map_or("", |k| k.name.as_str())), &peak);
                }
                with_runtime(total)
            }
            Workload::Evaluate => with_runtime(self.evaluation_estimate(self.eval.rollout_steps)),
            Workload::Rollout { steps } => {
                let mut e = Estimate::default();
                e.add("the model", self.model_config().parameter_bytes(self.train.dtype.size()));
                e.add("the rollouts", self.rollout_bytes(steps));
                with_runtime(e)
            }
        }
    }

    /// Refuses `workload` when it needs more memory than the machine has
    /// available now ([`crate::util::memory::available`]).
    ///
    /// # Errors
    /// As [`Config::check_memory_within`].
    pub fn check_memory(&self, workload: Workload, file: &str) -> Result<()> {
        self.check_memory_within(workload, &available(), file)
    }

    /// Refuses `workload` when its [`Config::memory_estimate`] exceeds
    /// `available`; `file` names the config in the error.
    ///
    /// # Errors
    /// [`Error::Config`] naming the key whose size dominates (e.g.
    /// `model.d_head`), with the estimated and the available bytes.
    pub fn check_memory_within(&self, workload: Workload, available: &Available, file: &str) -> Result<()> {
        let estimate = self.memory_estimate(workload);
        let key = self.dominant_key(workload, estimate.total());
        let advice = format!("Lower `{key}` (docs/config.md, \"Memory\", gives the estimate)");
        match estimate.refusal(workload.name(), available, &advice) {
            None => Ok(()),
            Some(message) => Err(Error::Config { file: file.into(), key: key.into(), message }),
        }
    }

    /// The size key whose default value lowers the estimate most (the
    /// largest value relative to its default when none does, e.g. when two
    /// keys are each too large alone).
    fn dominant_key(&self, workload: Workload, total: Bytes) -> &'static str {
        let defaults = Config::default();
        let lowered = |key: &str| -> Option<(Bytes, f64)> {
            let (mut c, mut w) = (self.clone(), workload);
            let (now, default) = match key {
                "model.d_model" => (std::mem::replace(&mut c.model.d_model, defaults.model.d_model), c.model.d_model),
                "model.n_heads" => (std::mem::replace(&mut c.model.n_heads, defaults.model.n_heads), c.model.n_heads),
                "model.d_head" => (std::mem::replace(&mut c.model.d_head, defaults.model.d_head), c.model.d_head),
                "model.n_layers" => {
                    (std::mem::replace(&mut c.model.n_layers, defaults.model.n_layers), c.model.n_layers)
                }
                "data.context" => (std::mem::replace(&mut c.data.context, defaults.data.context), c.data.context),
                "data.n_train" => (std::mem::replace(&mut c.data.n_train, defaults.data.n_train), c.data.n_train),
                "data.n_valid" => (std::mem::replace(&mut c.data.n_valid, defaults.data.n_valid), c.data.n_valid),
                "train.batch_size" => {
                    (std::mem::replace(&mut c.train.batch_size, defaults.train.batch_size), c.train.batch_size)
                }
                "eval.n_rollouts" => {
                    (std::mem::replace(&mut c.eval.n_rollouts, defaults.eval.n_rollouts), c.eval.n_rollouts)
                }
                _ => {
                    let default = defaults.eval.rollout_steps;
                    match &mut w {
                        Workload::Rollout { steps } => (std::mem::replace(steps, default), default),
                        _ => (std::mem::replace(&mut c.eval.rollout_steps, default), default),
                    }
                }
            };
            (now > default).then(|| (c.memory_estimate(w).total(), now as f64 / default.max(1) as f64))
        };
        let options: Vec<(&'static str, Bytes, f64)> =
            SIZE_KEYS.iter().filter_map(|&k| lowered(k).map(|(bytes, ratio)| (k, bytes, ratio))).collect();
        let best = options.iter().filter(|(_, bytes, _)| *bytes < total).min_by_key(|(_, bytes, _)| *bytes);
        let largest = || options.iter().max_by(|a, b| a.2.total_cmp(&b.2));
        best.or_else(largest).map_or("model.d_model", |(k, _, _)| k)
    }

    /// One training run at its peak: the step's state and kernel, the data,
    /// a validation pass, and a checkpoint being written.
    fn training_estimate(&self) -> Estimate {
        let (cfg, s) = (self.model_config(), self.train.dtype.size());
        let (t, b) = (self.data.context, self.train.batch_size);
        let p = cfg.parameter_bytes(s);
        let order = Bytes::of_values(&[self.data.n_train], 4);
        let mut e = Estimate::default();
        e.add("parameters, gradients and the two AdamW moments", p * 4);
        e.add("the training kernel (the activations kept for backward)", kernel::bytes(&cfg, b, s));
        let train = match self.data.n_train {
            0 => Bytes::of_values(&[b, t, 2 * D_IN], s),
            n => Bytes::of_values(&[n, t, 2 * D_IN], s) + order,
        };
        e.add("the training set", train + Bytes::of_values(&[n_or_batch(self.data.n_train, b), SEQUENCE_BYTES], 1));
        e.add(
            "the validation set",
            Bytes::of_values(&[self.data.n_valid, t, 2 * D_IN], s)
                + Bytes::of_values(&[self.data.n_valid, SEQUENCE_BYTES], 1),
        );
        e.add("a validation pass", Activations::<f32>::bytes(&cfg, chunk_sequences(&cfg, self.data.n_valid, s), s));
        // The saved state is copied, encoded and serialised before it is written.
        e.add("writing train_state.safetensors", (p * 3 + order) * 3);
        e
    }

    /// Evaluating one trained model: both data sets, the rollouts, and for
    /// context > 1 or MLP blocks the Jacobians on the validation set (in f64).
    fn evaluation_estimate(&self, steps: usize) -> Estimate {
        let (cfg, s) = (self.model_config(), self.train.dtype.size());
        let (t, n_valid) = (self.data.context, self.data.n_valid);
        let n_train = if self.data.n_train == 0 { n_valid } else { self.data.n_train };
        let mut e = Estimate::default();
        e.add("the model", cfg.parameter_bytes(s));
        e.add("the training set", Bytes::of_values(&[n_train, t, 2 * D_IN], s));
        e.add("the validation set", Bytes::of_values(&[n_valid, t, 2 * D_IN], s));
        e.add("an evaluation pass", Activations::<f32>::bytes(&cfg, chunk_sequences(&cfg, n_train, s), s));
        e.add("the rollouts", self.rollout_bytes(steps));
        e.add("error_vs_energy.csv", Bytes::of_values(&[n_valid, 64], 1));
        if t > 1 || self.system.fixed().is_none() {
            // A second set from the wider ranges, the predictions and the
            // per-sequence errors of the model and the 13 baselines (f64) for
            // both sets, the clean training sequences and the filters' least
            // squares, and sequences.csv.
            let windows = FIT_SEQUENCES.min(n_train).saturating_mul(t + 1);
            e.add(
                "the in-context evaluation",
                Bytes::of_values(&[n_valid, t, 2 * D_IN], s)
                    + Bytes::of_values(&[2, n_valid, t, D_IN + 14], 8)
                    + Bytes::of_values(&[FIT_SEQUENCES.min(n_train), t + 1, D_IN], 8)
                    + Bytes::of_values(&[2, windows, 2 * MAX_FILTER + D_IN], 8)
                    + Bytes::of_values(&[2, n_valid, 400], 1),
            );
        }
        if !cfg.is_affine() {
            let chunk = chunk_sequences(&cfg, n_valid, 8);
            let passes = Activations::<f64>::bytes(&cfg, chunk, 8) + Scratch::<f64>::bytes(&cfg, chunk, 8);
            let (l, h) = (cfg.n_layers, cfg.n_heads);
            e.add(
                "the Jacobians on the validation set (f64)",
                cfg.parameter_bytes(8) * 2
                    + Bytes::of_values(&[n_valid, t, D_IN], 8) // inputs
                    + Bytes::of_values(&[n_valid, t, D_IN * D_IN + D_IN], 8) // values and their summary
                    + Bytes::of_values(&[n_valid, 16], 8)
                    + passes,
            );
            // attention.csv: one row per layer, head, query and key.
            e.add("the attention along one trajectory", Bytes::of_values(&[l, h, t, t, 96], 1));
        }
        e
    }

    /// `n_rollouts` rollouts (and the zero-state one) of `steps` steps: the
    /// forward passes, model and reference states, statistics and CSV text.
    fn rollout_bytes(&self, steps: usize) -> Bytes {
        let (cfg, s) = (self.model_config(), self.train.dtype.size());
        let (t, r) = (self.data.context, self.eval.n_rollouts.saturating_add(1));
        let states = steps.saturating_add(1);
        Activations::<f32>::bytes(&cfg, chunk_sequences(&cfg, r, s), s)
            + Bytes::of_values(&[r, t, D_IN], s) // the sliding windows
            + Bytes::of_values(&[r, 3, states, D_IN], 8) // model, reference and exact states
            + Bytes::of_values(&[r, t, D_IN], 8)
            + Bytes::of_values(&[states, CSV_BYTES_PER_STEP + 160], 1) // stats and CSV
    }
}

/// Bytes a data set keeps per sequence besides its states: the sequence's
/// system and clean first state.
const SEQUENCE_BYTES: usize = size_of::<crate::physics::System>() + 2 * 8;

/// Sequences drawn at once: the fixed training set, or one batch.
fn n_or_batch(n_train: usize, batch: usize) -> usize {
    if n_train == 0 { batch } else { n_train }
}

/// `e` with the program's own [`RUNTIME`].
fn with_runtime(mut e: Estimate) -> Estimate {
    e.add("the program itself", RUNTIME);
    e
}
