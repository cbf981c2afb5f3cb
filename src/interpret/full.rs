//! Everything `physlens interpret` reports for a checkpoint (issue 3): the
//! docs/outputs.md object (effective map, readouts, rule distances, verdict) plus
//! Jacobians, circuits, probes, attention patterns and the margin
//! explanation; and, across several checkpoints, the truncation order.
//!
//! All analysis runs on the f64 copy of the weights ([`AnyModel::to_f64`],
//! exact), so an f32 checkpoint is read without adding rounding of its own.
//! The validation states are drawn as in training (docs/physics.md: energies
//! uniform on `[0, e_valid_max]`, [`Stream::Valid`] of `seed`), `T = n_ctx`
//! consecutive exact states each.
//!
//! Conventions: 2×2 maps are in the COLUMN convention of physics
//! (`s' = M s + c`); `D×D` circuit matrices are in the model's row convention
//! (see [`crate::model::circuits`]).

use std::path::Path;

use serde::Serialize;

use crate::data::{Dataset, Sampler};
use crate::interpret::circuits::{Circuits, circuits};
use crate::interpret::explain::{MarginExplanation, OmegaIdentifiability, margin_explanation, omega_identifiability};
use crate::interpret::in_context::{InContextReport, interpret_ranges};
use crate::interpret::jacobian::{JacobianReport, last_prediction_jacobians, one_step_fit, summarize};
use crate::interpret::map::{MapReport, analyze_map, interpret_with_jacobians};
use crate::interpret::order::{OrderFit, OrderPoint, fit_order};
use crate::interpret::patterns::{TrajectoryPatterns, trajectory_patterns};
use crate::interpret::probe::{DEFAULT_LAMBDA, ProbeResult, default_probe_names, probe_table};
use crate::model::checkpoint::{AnyModel, Checkpoint};
use crate::model::{Activations, D_IN, ModelConfig, Scratch, chunk_sequences};
use crate::physics::SystemSpec;
use crate::physics::generator::{Generator, generator};
use crate::util::error::{Error, Result};
use crate::util::mat2::Vec2;
use crate::util::memory::{Available, Bytes, Estimate};
use crate::util::real::{Dtype, Real};
use crate::util::rng::{Rng, Stream};

/// Settings of [`interpret_checkpoint`]; the defaults are those of the config (docs/config.md).
#[derive(Clone, Debug, PartialEq)]
pub struct InterpretOptions {
    /// Validation sequences for Jacobians, probes and dumps (`data.n_valid`).
    pub n_valid: usize,
    /// Largest validation energy (`data.e_valid_max`).
    pub e_valid_max: f64,
    /// Largest energy of the in-context sequences; `None`: the energies the
    /// checkpoint was validated on (`data.e_valid_max` of the config it
    /// carries), else `e_valid_max`. A model trained on E ≤ 1 read at E ≤ 4
    /// would be read outside what it learned.
    pub in_context_e_max: Option<f64>,
    /// Seed of the validation stream (`train.seed`).
    pub seed: u64,
    /// Activations to probe; `None` = [`default_probe_names`].
    pub probe_names: Option<Vec<String>>,
    /// Start of the trajectory whose attention patterns are reported;
    /// `None` = energy 1 at phase 0, `(√2/ω0, 0)`.
    pub trajectory_start: Option<Vec2>,
    /// Ridge penalty of the probes.
    pub ridge_lambda: f64,
}

/// [`InterpretOptions::n_valid`] by default.
pub const DEFAULT_N_VALID: usize = 4096;

impl Default for InterpretOptions {
    fn default() -> Self {
        InterpretOptions {
            n_valid: DEFAULT_N_VALID,
            e_valid_max: 4.0,
            in_context_e_max: None,
            seed: 0,
            probe_names: None,
            trajectory_start: None,
            ridge_lambda: DEFAULT_LAMBDA,
        }
    }
}

impl InterpretOptions {
    /// The options with energies up to `e_max` when given (`--e-max`), for
    /// the one-system analysis and the in-context section alike; `None`
    /// keeps the defaults (4, and the checkpoint's own validation energies
    /// for the in-context section).
    pub fn with_e_max(self, e_max: Option<f64>) -> Self {
        InterpretOptions { e_valid_max: e_max.unwrap_or(self.e_valid_max), in_context_e_max: e_max, ..self }
    }
}

/// Which checkpoint, and its architecture.
#[derive(Clone, Debug, Serialize)]
pub struct ModelInfo {
    /// The file as given.
    pub file: String,
    /// `f32` or `f64`.
    pub dtype: String,
    /// The `model` metadata.
    pub config: ModelConfig,
    /// Number of weights.
    pub n_params: usize,
}

/// The validation states used.
#[derive(Clone, Debug, Serialize)]
pub struct ValidationInfo {
    /// Sequences.
    pub n_states: usize,
    /// Energies uniform on `[0, e_max]`.
    pub e_max: f64,
    /// The energies of the in-context sequences, uniform on `[0, in_context_e_max]`
    /// (`null` for a checkpoint of one system).
    pub in_context_e_max: Option<f64>,
    /// Seed of the validation stream.
    pub seed: u64,
}

/// The least-squares one-step map `ŝ ≈ M s[T−1] + c` on validation
/// trajectories (context > 1), read like the effective map.
#[derive(Clone, Debug, Serialize)]
pub struct OneStepReport {
    /// RMS of the fit's residual: 0 when the model is one-step-linear along
    /// true trajectories.
    pub rms_residual: f64,
    /// The fitted map read as physics (docs/outputs.md keys).
    #[serde(flatten)]
    pub report: MapReport,
}

/// The full interpretation of one checkpoint (`physlens interpret --json`).
/// The docs/outputs.md keys are those of [`MapReport`], flattened to the top level.
#[derive(Clone, Debug, Serialize)]
pub struct FullReport {
    /// docs/outputs.md: `effective_map`, `offset`, `eigenvalues`, `learned`,
    /// `best_fit`, `truth`, `methods`, `nearest_method`, `margin`,
    /// `identifiable`, `error_vs_exact`, plus `map_kind`, `omega0_sq_ratio`, `errors`.
    #[serde(flatten)]
    pub map: MapReport,
    /// `"affine"` (exact map of a context-1 model) or `"jacobian"` (mean
    /// Jacobian w.r.t. the last token).
    pub effective_map_source: String,
    /// The checkpoint.
    pub model: ModelInfo,
    /// The validation states.
    pub validation: ValidationInfo,
    /// Whether ω can be read from the map, and why not.
    pub omega_identifiability: OmegaIdentifiability,
    /// The margin in words: which rules cannot be told apart and why.
    pub margin_explanation: MarginExplanation,
    /// `log(M)/Δt`, when `M` has a real logarithm.
    pub generator: Option<Generator>,
    /// Per-token Jacobians of the last prediction.
    pub jacobians: JacobianReport,
    /// Context > 1: the one-step map along validation trajectories.
    pub one_step: Option<OneStepReport>,
    /// OV/QK circuits and path maps.
    pub circuits: Circuits,
    /// Held-out R² of linear probes.
    pub probes: Vec<ProbeResult>,
    /// Attention along one trajectory.
    pub patterns: TrajectoryPatterns,
    /// Parameters drawn per sequence: the in-context interpretation
    /// (docs/in-context.md); absent for a checkpoint of one system, whose other keys are
    /// then read at the centre of the training ranges.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_context: Option<InContextReport>,
}

/// Several checkpoints at once, with the truncation-order fit.
#[derive(Clone, Debug, Serialize)]
pub struct MultiReport {
    /// One report per `--model`, in order.
    pub models: Vec<FullReport>,
    /// The fit of error vs Δt, when the models allow one.
    pub truncation_order: Option<OrderFit>,
    /// Why there is no fit, otherwise.
    pub truncation_order_unavailable: Option<String>,
}

/// `n` validation sequences of `n_ctx` states of the systems of `system`
/// (each parameter fixed or drawn per sequence), stepped by its data
/// generator (exact unless the model was trained on a rule's data).
///
/// # Shapes
/// Returns `[n, n_ctx, 2]`, row-major `(x, p)` pairs.
pub fn validation_inputs<F: Real>(system: &SystemSpec, n_ctx: usize, opts: &InterpretOptions) -> Vec<F> {
    let sampler = Sampler::new(system, opts.e_valid_max, 0.0, n_ctx);
    Dataset::<F>::generate(&sampler, opts.n_valid, &mut Rng::new(opts.seed, Stream::Valid)).inputs
}

/// The memory interpreting a model of `cfg` stored in `dtype` needs at its
/// peak with `opts`, dumping the activations `dump` (names already resolved,
/// empty for none): the f64 model, the validation states, their Jacobians,
/// the probe features, the attention patterns, the dumps.
pub fn memory_estimate(cfg: &ModelConfig, dtype: Dtype, opts: &InterpretOptions, dump: &[String]) -> Estimate {
    let (n, t) = (opts.n_valid, cfg.n_ctx);
    let (l, h) = (cfg.n_layers, cfg.n_heads);
    let chunk = chunk_sequences(cfg, n, 8);
    let per_sequence = |name: &String| Activations::<f64>::shape(cfg, name, 1).map_or(0, |s| s.iter().product());
    let probe_names = opts.probe_names.clone().unwrap_or_else(|| default_probe_names(cfg));
    // A probe keeps one row per state of the activation at the last position.
    let probe_width: usize = probe_names.iter().map(|name| per_sequence(name) / t.max(1)).sum();
    let widest = probe_names.iter().map(|name| per_sequence(name) / t.max(1)).max().unwrap_or(0);
    let mut e = Estimate::default();
    e.add("the model and its f64 copy", cfg.parameter_bytes(dtype.size()) + cfg.parameter_bytes(8));
    e.add("the validation states", Bytes::of_values(&[n, t, 2 * D_IN], 8));
    e.add("their Jacobians", Bytes::of_values(&[n, t, D_IN * D_IN + D_IN], 8) + Bytes::of_values(&[n, 16], 8));
    e.add(
        "a forward and backward pass",
        Activations::<f64>::bytes(cfg, chunk, 8) + Scratch::<f64>::bytes(cfg, chunk, 8),
    );
    e.add(
        "the probes",
        Bytes::of_values(&[n, probe_width], 8)
            + Bytes::of_values(&[n, widest], 8)
            + Bytes::of_values(&[widest, widest], 8)
            + Bytes::of_values(&[n, PROBE_TARGETS], 8),
    );
    // Each weight of each row: the f64, its JSON and its text.
    e.add("the attention patterns", Bytes::of_values(&[l, h, t, t, 64], 1) + Activations::<f64>::bytes(cfg, 1, 8));
    if !dump.is_empty() {
        let values: usize = dump.iter().map(per_sequence).fold(t * D_IN, usize::saturating_add);
        // Gathered, then encoded into the file's bytes.
        e.add("the dumped activations", Bytes::of_values(&[n, values, 2], dtype.size()));
    }
    e.add("the program itself", Bytes(8 << 20));
    e
}

/// Targets a probe is fitted to (`x`, `p`, energy and the rule intermediates), at most.
const PROBE_TARGETS: usize = 32;

/// Refuses to interpret `ckpt` (read from `file`) with `opts` when it needs
/// more memory than `available`.
///
/// # Errors
/// [`Error::Option`] `n_valid` when the validation states are what needs
/// the memory; [`Error::Checkpoint`] naming `n_ctx` of the `model` metadata
/// when the checkpoint's context is.
pub fn check_memory(
    ckpt: &Checkpoint,
    file: &Path,
    opts: &InterpretOptions,
    dump: &[String],
    available: &Available,
) -> Result<()> {
    let (cfg, dtype) = (ckpt.model.cfg(), ckpt.model.dtype());
    let estimate = memory_estimate(cfg, dtype, opts, dump);
    let fewer_states = InterpretOptions { n_valid: opts.n_valid.min(DEFAULT_N_VALID), ..opts.clone() };
    let shorter = ModelConfig { n_ctx: 1, ..cfg.clone() };
    let context_matters =
        memory_estimate(&shorter, dtype, opts, dump).total() < memory_estimate(cfg, dtype, &fewer_states, dump).total();
    let advice = if context_matters {
        "The checkpoint's context n_ctx is more than this machine can interpret"
    } else {
        "Use fewer validation states"
    };
    let Some(message) = estimate.refusal("interpreting the model", available, advice) else { return Ok(()) };
    Err(if context_matters {
        let message = format!("`model` metadata: n_ctx = {}: {message}", cfg.n_ctx);
        Error::Checkpoint { file: file.into(), message }
    } else {
        Error::Option { name: "n_valid".into(), message: format!("{}: {message}", opts.n_valid) }
    })
}

/// Interprets one checkpoint read from `file` (the name is only reported).
/// A checkpoint whose parameters are drawn per sequence is read at the centre
/// of its ranges, and [`FullReport::in_context`] reads it across sequences.
///
/// # Errors
/// [`crate::util::error::Error::Option`] for an unknown probe name, a validation
/// set of fewer than 4 states or a largest energy that is not positive.
pub fn interpret_checkpoint(ckpt: &Checkpoint, file: &str, opts: &InterpretOptions) -> Result<FullReport> {
    if opts.n_valid < 4 {
        return Err(crate::util::error::Error::Option {
            name: "n_valid".into(),
            message: format!(
                "{} states are too few; at least 4 are needed (the probes hold a quarter out)",
                opts.n_valid
            ),
        });
    }
    if !(opts.e_valid_max.is_finite() && opts.e_valid_max > 0.0) {
        return Err(crate::util::error::Error::Option {
            name: "e_valid_max".into(),
            message: format!(
                "{} is not accepted; the largest validation energy must be finite and > 0",
                opts.e_valid_max
            ),
        });
    }
    // ── In-context checkpoints (docs/in-context.md) ──
    // Parameters drawn per sequence: the map, probes and patterns are read at
    // the centre of the training ranges, and `in_context` reads the model
    // across sequences drawn from the ranges.
    let system = &ckpt.system.fixed().unwrap_or_else(|| range_centre(&ckpt.system));
    let in_context_spec = ckpt.system.fixed().is_none().then_some(ckpt.system);
    // ── end in-context ──
    let model = ckpt.model.to_f64();
    let (osc, dt) = (system.oscillator(), system.dt);
    let inputs = validation_inputs::<f64>(&SystemSpec::from(*system), model.cfg.n_ctx, opts);
    let jac = last_prediction_jacobians(&model, &inputs);
    let jacobians = summarize(&jac, &inputs);
    let map = interpret_with_jacobians(&model, system, &jacobians);
    let affine = model.cfg.is_affine();
    let source = if affine { "affine" } else { "jacobian" };
    let one_step = (!affine).then(|| one_step_fit(&inputs, &jac)).flatten().map(|fit| OneStepReport {
        rms_residual: fit.rms_residual,
        report: analyze_map(
            fit.map,
            fit.offset,
            system,
            "least-squares one-step map ŝ ≈ M s[T−1] + c on the validation trajectories",
        ),
    });
    let probe_names = opts.probe_names.clone().unwrap_or_else(|| default_probe_names(&model.cfg));
    let probes = probe_table(&model, &inputs, &osc, dt, &probe_names, opts.ridge_lambda)?;
    let start = opts.trajectory_start.unwrap_or_else(|| osc.state_from_energy_phase(1.0, 0.0));
    let patterns = trajectory_patterns(&model, &osc, dt, start, Some(&inputs));
    let in_context_e_max = in_context_spec.map(|_| checkpoint_e_max(ckpt, opts.in_context_e_max, opts.e_valid_max));
    let init_seed = training_seed(ckpt).unwrap_or(opts.seed);
    let in_context = in_context_spec
        .zip(in_context_e_max)
        .map(|(spec, e)| interpret_ranges(&model, &spec, (opts.n_valid, e), opts.seed, init_seed));
    Ok(FullReport {
        in_context,
        effective_map_source: source.into(),
        model: model_info(&ckpt.model, file),
        validation: ValidationInfo {
            n_states: opts.n_valid,
            e_max: opts.e_valid_max,
            in_context_e_max,
            seed: opts.seed,
        },
        omega_identifiability: omega_identifiability(&map),
        margin_explanation: margin_explanation(&map),
        generator: generator(&map.effective_map, dt),
        jacobians,
        one_step,
        circuits: circuits(&model, dt),
        probes,
        patterns,
        map,
    })
}

/// Interprets several checkpoints and fits the truncation order across them
/// (`files[i]` names `ckpts[i]`).
///
/// # Errors
/// As [`interpret_checkpoint`].
pub fn interpret_many(ckpts: &[Checkpoint], files: &[String], opts: &InterpretOptions) -> Result<MultiReport> {
    let models = ckpts.iter().zip(files).map(|(c, f)| interpret_checkpoint(c, f, opts)).collect::<Result<Vec<_>>>()?;
    let points = models
        .iter()
        .map(|r| {
            let system = &r.map.truth.system;
            let generator = system.generator.name();
            let distance_to =
                |name: &str| r.map.methods.iter().find(|m| m.name == name).map_or(f64::NAN, |m| m.distance);
            let eps = if r.model.dtype == "f32" { f64::from(f32::EPSILON) } else { f64::EPSILON };
            OrderPoint {
                model: r.model.file.clone(),
                dt: system.dt,
                error_vs_exact: r.map.error_vs_exact,
                omega0: system.omega0,
                gamma: system.gamma,
                nearest_method: r.map.nearest_method.clone(),
                identifiable: r.map.identifiable,
                generator: generator.into(),
                distance_to_generator: if system.generator.is_exact() { f64::NAN } else { distance_to(generator) },
                rounding_floor: 10.0 * eps * crate::util::mat2::frobenius(&r.map.exact_map),
            }
        })
        .collect();
    let (truncation_order, truncation_order_unavailable) = match fit_order(points) {
        Ok(fit) => (Some(fit), None),
        Err(why) => (None, Some(why)),
    };
    Ok(MultiReport { models, truncation_order, truncation_order_unavailable })
}

// ── In-context checkpoints (docs/in-context.md) ──

/// The system at the centre of every range of `spec` (a fixed value stays).
fn range_centre(spec: &SystemSpec) -> crate::physics::System {
    let mid = |p: crate::physics::Param| {
        let [lo, hi] = p.range();
        0.5 * (lo + hi)
    };
    crate::physics::System {
        omega0: mid(spec.omega0),
        gamma: mid(spec.gamma),
        dt: mid(spec.dt),
        generator: spec.generator,
    }
}

/// The largest energy to read `ckpt` at: `given`, else the largest it was
/// validated on (`data.e_valid_max` of the config it carries), else
/// `fallback` (no config, or one that does not parse). A model trained on
/// E ≤ 1 read at E ≤ 4 would be read outside what it learned.
pub fn checkpoint_e_max(ckpt: &Checkpoint, given: Option<f64>, fallback: f64) -> f64 {
    let validated = || {
        let text = ckpt.metadata.get("config")?;
        let config = crate::config::Config::parse(text, "the checkpoint's config").ok()?;
        Some(config.data.e_valid_max)
    };
    given.or_else(validated).unwrap_or(fallback)
}

/// The seed the checkpoint was trained with (its metadata `seed`), if it
/// says: the probes' untrained control starts from that seed's initial
/// weights, as its training did.
fn training_seed(ckpt: &Checkpoint) -> Option<u64> {
    ckpt.metadata.get("seed")?.parse().ok()
}

// ── end in-context ──

/// The [`ModelInfo`] of a loaded model.
fn model_info(model: &AnyModel, file: &str) -> ModelInfo {
    let n_params = match model {
        AnyModel::F32(m) => m.params.len(),
        AnyModel::F64(m) => m.params.len(),
    };
    ModelInfo { file: file.into(), dtype: model.dtype().name().into(), config: model.cfg().clone(), n_params }
}
