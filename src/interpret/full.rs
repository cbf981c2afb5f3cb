//! Everything `physlens interpret` reports for a checkpoint (issue 3): the
//! SPEC §4 object (effective map, readouts, rule distances, verdict) plus
//! Jacobians, circuits, probes, attention patterns and the margin
//! explanation; and, across several checkpoints, the truncation order.
//!
//! All analysis runs on the f64 copy of the weights ([`AnyModel::to_f64`],
//! exact), so an f32 checkpoint is read without adding rounding of its own.
//! The validation states are drawn as in training (SPEC §2.1: energies
//! uniform on `[0, e_valid_max]`, [`Stream::Valid`] of `seed`), `T = n_ctx`
//! consecutive exact states each.
//!
//! Conventions: 2×2 maps are in the COLUMN convention of physics
//! (`s' = M s + c`); `D×D` circuit matrices are in the model's row convention
//! (see [`crate::model::circuits`]).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::checkpoint::{AnyModel, Checkpoint};
use crate::physics::System;
use crate::model::circuits::{Circuits, circuits};
use crate::data::Dataset;
use crate::interpret::dump::{DumpFormat, dump_activations};
use crate::util::error::Result;
use crate::interpret::explain::{MarginExplanation, OmegaIdentifiability, margin_explanation, omega_identifiability};
use crate::physics::generator::{Generator, generator};
use crate::interpret::map::{MapReport, analyze_map, interpret_with_jacobians};
use crate::interpret::jacobian::{JacobianReport, last_prediction_jacobians, one_step_fit, summarize};
use crate::util::mat2::Vec2;
use crate::model::{Model, ModelConfig};
use crate::interpret::order::{OrderFit, OrderPoint, fit_order};
use crate::interpret::patterns::{TrajectoryPatterns, trajectory_patterns};
use crate::interpret::probe::{DEFAULT_LAMBDA, ProbeResult, default_probe_names, probe_table};
use crate::util::real::Real;
use crate::util::rng::{Rng, Stream};

/// Settings of [`interpret_checkpoint`]; the defaults are SPEC §2.1/§5's.
#[derive(Clone, Debug, PartialEq)]
pub struct InterpretOptions {
    /// Validation sequences for Jacobians, probes and dumps (`data.n_valid`).
    pub n_valid: usize,
    /// Largest validation energy (`data.e_valid_max`).
    pub e_valid_max: f64,
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

impl Default for InterpretOptions {
    fn default() -> Self {
        InterpretOptions {
            n_valid: 4096,
            e_valid_max: 4.0,
            seed: 0,
            probe_names: None,
            trajectory_start: None,
            ridge_lambda: DEFAULT_LAMBDA,
        }
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
    /// The fitted map read as physics (SPEC §4 keys).
    #[serde(flatten)]
    pub report: MapReport,
}

/// The full interpretation of one checkpoint (`physlens interpret --json`).
/// The SPEC §4 keys are those of [`MapReport`], flattened to the top level.
#[derive(Clone, Debug, Serialize)]
pub struct FullReport {
    /// SPEC §4: `effective_map`, `offset`, `eigenvalues`, `learned`,
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

/// `n` validation sequences of `n_ctx` exact states of `system`.
///
/// # Shapes
/// Returns `[n, n_ctx, 2]`, row-major `(x, p)` pairs.
pub fn validation_inputs<F: Real>(system: &System, n_ctx: usize, opts: &InterpretOptions) -> Vec<F> {
    let osc = system.oscillator();
    let mut rng = Rng::new(opts.seed, Stream::Valid);
    Dataset::<F>::generate(&osc, &osc.propagator(system.dt), opts.e_valid_max, opts.n_valid, n_ctx, &mut rng).inputs
}

/// Interprets one checkpoint read from `file` (the name is only reported).
///
/// # Errors
/// [`crate::util::error::Error::Config`] for an unknown probe name, a validation
/// set of fewer than 4 states or a largest energy that is not positive.
pub fn interpret_checkpoint(ckpt: &Checkpoint, file: &str, opts: &InterpretOptions) -> Result<FullReport> {
    if opts.n_valid < 4 {
        return Err(crate::util::error::Error::Config {
            file: "--n-valid".into(),
            key: "n_valid".into(),
            message: format!(
                "{} states are too few; at least 4 are needed (the probes hold a quarter out)",
                opts.n_valid
            ),
        });
    }
    if !(opts.e_valid_max.is_finite() && opts.e_valid_max > 0.0) {
        return Err(crate::util::error::Error::Config {
            file: "--e-max".into(),
            key: "e_valid_max".into(),
            message: format!(
                "{} is not accepted; the largest validation energy must be finite and > 0",
                opts.e_valid_max
            ),
        });
    }
    let model = ckpt.model.to_f64();
    let system = &ckpt.system;
    let (osc, dt) = (system.oscillator(), system.dt);
    let inputs = validation_inputs::<f64>(system, model.cfg.n_ctx, opts);
    let jac = last_prediction_jacobians(&model, &inputs);
    let jacobians = summarize(&jac, &inputs);
    let map = interpret_with_jacobians(&model, system, &jacobians);
    let source = if model.cfg.n_ctx == 1 { "affine" } else { "jacobian" };
    let one_step = (model.cfg.n_ctx > 1).then(|| one_step_fit(&inputs, &jac)).flatten().map(|fit| OneStepReport {
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
    Ok(FullReport {
        effective_map_source: source.into(),
        model: model_info(&ckpt.model, file),
        validation: ValidationInfo { n_states: opts.n_valid, e_max: opts.e_valid_max, seed: opts.seed },
        omega_identifiability: omega_identifiability(&map),
        margin_explanation: margin_explanation(&map, &osc, dt),
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
        .map(|r| OrderPoint {
            model: r.model.file.clone(),
            dt: r.map.truth.system.dt,
            error_vs_exact: r.map.error_vs_exact,
            omega0: r.map.truth.system.omega0,
            gamma: r.map.truth.system.gamma,
        })
        .collect();
    let (truncation_order, truncation_order_unavailable) = match fit_order(points) {
        Ok(fit) => (Some(fit), None),
        Err(why) => (None, Some(why)),
    };
    Ok(MultiReport { models, truncation_order, truncation_order_unavailable })
}

/// Writes the named activations of `ckpt` on its validation states into
/// `dir`, in the checkpoint's own dtype (see [`crate::interpret::dump`]).
///
/// # Errors
/// As [`dump_activations`].
pub fn dump_checkpoint(
    ckpt: &Checkpoint,
    names: &[String],
    dir: &Path,
    format: DumpFormat,
    opts: &InterpretOptions,
) -> Result<Vec<PathBuf>> {
    fn run<F: Real>(
        m: &Model<F>,
        s: &System,
        n: &[String],
        d: &Path,
        f: DumpFormat,
        o: &InterpretOptions,
    ) -> Result<Vec<PathBuf>> {
        dump_activations(m, &validation_inputs::<F>(s, m.cfg.n_ctx, o), n, d, f)
    }
    match &ckpt.model {
        AnyModel::F32(m) => run(m, &ckpt.system, names, dir, format, opts),
        AnyModel::F64(m) => run(m, &ckpt.system, names, dir, format, opts),
    }
}

/// The [`ModelInfo`] of a loaded model.
fn model_info(model: &AnyModel, file: &str) -> ModelInfo {
    let n_params = match model {
        AnyModel::F32(m) => m.params.len(),
        AnyModel::F64(m) => m.params.len(),
    };
    ModelInfo { file: file.into(), dtype: model.dtype().name().into(), config: model.cfg().clone(), n_params }
}

// ---------------------------------------------------------------- the command

/// What `physlens interpret` was asked to do.
#[derive(Clone, Debug)]
pub struct InterpretRequest {
    /// One or more checkpoints (`--model`, repeatable).
    pub models: Vec<PathBuf>,
    /// Print JSON instead of the readable summary.
    pub json: bool,
    /// Activation names to dump (`--dump`), empty for none.
    pub dump: Vec<String>,
    /// Files for the dumps.
    pub dump_format: DumpFormat,
    /// Folder for `interpret.json`, `patterns.csv`, `probes.csv`,
    /// `jacobians.csv` and the dumps (`--out`).
    pub out: Option<PathBuf>,
    /// Validation set, probes, trajectory.
    pub options: InterpretOptions,
}

/// Runs `physlens interpret`: loads every checkpoint, interprets it, writes
/// the files into `out` (one subfolder per model when there are several) and
/// returns the text for stdout (JSON or the readable summary, with a list of
/// the files written).
///
/// With one model the JSON is that model's [`FullReport`] (SPEC §4 keys at
/// the top level); with several it is a [`MultiReport`].
///
/// # Errors
/// [`crate::util::error::Error::Checkpoint`] for a bad checkpoint,
/// [`crate::util::error::Error::Config`] for a bad flag value (dump or probe name,
/// `--dump` without `--out`), [`crate::util::error::Error::Io`] when writing fails.
pub fn run_interpret(req: &InterpretRequest) -> Result<String> {
    if !req.dump.is_empty() && req.out.is_none() {
        return Err(crate::util::error::Error::Config {
            file: "--dump".into(),
            key: "out".into(),
            message: "--dump needs --out DIR to write the arrays into".into(),
        });
    }
    let ckpts = req.models.iter().map(|p| crate::model::checkpoint::load(p)).collect::<Result<Vec<_>>>()?;
    if !req.dump.is_empty() {
        // Refuse unknown names before anything is written.
        for ckpt in &ckpts {
            crate::interpret::dump::resolve_names(&crate::model::Activations::<f64>::names(ckpt.model.cfg()), &req.dump)?;
        }
    }
    let files: Vec<String> = req.models.iter().map(|p| p.display().to_string()).collect();
    let multi = interpret_many(&ckpts, &files, &req.options)?;
    let mut written = Vec::new();
    if let Some(out) = &req.out {
        for (i, (ckpt, report)) in ckpts.iter().zip(&multi.models).enumerate() {
            let dir = if ckpts.len() == 1 { out.clone() } else { out.join(model_folder(i, &req.models[i])) };
            written.extend(write_report_files(&dir, report)?);
            if !req.dump.is_empty() {
                written.extend(dump_checkpoint(ckpt, &req.dump, &dir, req.dump_format, &req.options)?);
            }
        }
        if ckpts.len() > 1 {
            let path = out.join("interpret.json");
            crate::util::io::write_json(&path, &multi)?;
            written.push(path);
        }
    }
    let mut text = if req.json {
        let json = if multi.models.len() == 1 {
            serde_json::to_string_pretty(&multi.models[0])
        } else {
            serde_json::to_string_pretty(&multi)
        };
        json.expect("serialising plain data cannot fail") + "\n"
    } else if multi.models.len() == 1 {
        crate::interpret::explain::render(&multi.models[0])
    } else {
        crate::interpret::explain::render_many(&multi)
    };
    if !req.json && !written.is_empty() {
        text.push('\n');
        for path in &written {
            text.push_str(&format!("wrote {}\n", path.display()));
        }
    }
    Ok(text)
}

/// `"{i}-{file stem}"`, the subfolder of model `i` when several are given.
fn model_folder(i: usize, path: &Path) -> String {
    let stem = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let parent =
        path.parent().and_then(Path::file_name).map(|p| format!("{}-", p.to_string_lossy())).unwrap_or_default();
    format!("{i}-{parent}{stem}")
}

/// `interpret.json`, `patterns.csv`, `probes.csv` and `jacobians.csv` of one report.
fn write_report_files(dir: &Path, r: &FullReport) -> Result<Vec<PathBuf>> {
    let files = [
        ("interpret.json", None),
        ("patterns.csv", Some(crate::interpret::patterns::patterns_csv(&r.patterns))),
        ("probes.csv", Some(crate::interpret::probe::probes_csv(&r.probes))),
        ("jacobians.csv", Some(jacobians_csv(&r.jacobians))),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        match text {
            None => crate::util::io::write_json(&path, r)?,
            Some(t) => crate::util::io::write_text(&path, &t)?,
        }
        written.push(path);
    }
    Ok(written)
}

/// Per-token Jacobians as CSV (column convention, `j_ij = ∂ŝ_i/∂s_j`).
pub fn jacobians_csv(j: &JacobianReport) -> String {
    let mut s = String::from("token,lag,j11,j12,j21,j22,std11,std12,std21,std22,norm,max_dev\n");
    for t in &j.tokens {
        let (m, d) = (t.mean, t.std);
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            t.token, t.lag, m[0][0], m[0][1], m[1][0], m[1][1], d[0][0], d[0][1], d[1][0], d[1][1], t.norm, t.max_dev
        ));
    }
    s
}

/// Parses `--trajectory X,P`.
///
/// # Errors
/// [`crate::util::error::Error::Config`] unless the value is two finite numbers.
pub fn parse_state(text: &str) -> Result<Vec2> {
    let parts: Vec<Option<f64>> =
        text.split(',').map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite())).collect();
    match parts.as_slice() {
        [Some(x), Some(p)] => Ok([*x, *p]),
        _ => Err(crate::util::error::Error::Config {
            file: "--trajectory".into(),
            key: text.into(),
            message: "expected two finite numbers X,P (the start state x, p)".into(),
        }),
    }
}
