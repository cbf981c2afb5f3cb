//! `physlens`: train small attention-only transformers on a damped harmonic
//! oscillator and read back the physics they learned.
//!
//! A thin layer over the library: parse flags, call, print, choose the exit
//! code (0 success, 1 failed run, 2 bad input, 130 interrupted).

mod interrupt;
mod patch;
mod progress;
mod sweep;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use physlens::config::Config;
use physlens::config::memory::Workload;
use physlens::interpret::explain::margin_explanation;
use physlens::interpret::full::InterpretOptions;
use physlens::interpret::map::MapReport;
use physlens::physics::readout::RuleVerdict;
use physlens::run::interpret::{InterpretRequest, OutputRequest, run_interpret};
use physlens::run::{CaseSummary, RunDir, Summary, claim_output, resume_study, run_study};
use physlens::train::progress::Progress;
use physlens::train::{resume as resume_training, train};
use physlens::util::error::Error;
use physlens::util::real::Dtype;
use progress::ProgressGroup;

/// Train small transformers on physical systems and open them up.
#[derive(Parser, Debug)]
#[command(
    name = "physlens",
    version,
    about,
    after_help = "Reference (config keys, run-folder files, checkpoint layout, JSON keys, exit codes): docs/ in the repository."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole study: train every case, evaluate, roll out, interpret; writes summary.json.
    Run {
        /// TOML config (docs/config.md); without it, the seed experiment (ω0 = 2, Δt = 0.1, γ = 0 and 0.1).
        #[arg(long, conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Output folder [default: runs/<config name>, or runs/blog].
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Finish the study in this folder after Ctrl-C or a crash: every case continues from its saved state,
        /// then evaluation, interpretation and the report (the same files as a study never stopped).
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Remove an earlier run's outputs from the output folder first (without it, such a folder is refused).
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Train one model (the [system] of the config) into a run folder, or resume one.
    Train {
        /// TOML config (docs/config.md).
        #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
        config: Option<PathBuf>,
        /// Output folder [default: runs/<config name>].
        #[arg(long, conflicts_with = "resume")]
        out: Option<PathBuf>,
        /// Continue the run in this folder from its train_state.safetensors (after Ctrl-C or a crash).
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Remove an earlier run's outputs from the output folder first (without it, such a folder is refused).
        #[arg(long, conflicts_with = "resume")]
        force: bool,
        /// No progress output.
        #[arg(long)]
        quiet: bool,
    },
    /// Evaluate a trained run folder: MSE, rollouts, effective map; writes eval.json.
    Eval {
        /// A folder written by `train` (or one case folder of `run`).
        #[arg(long)]
        run: PathBuf,
    },
    /// Roll a trained model out autoregressively; writes rollout_<N>.csv and trajectories_<N>.csv (the
    /// evaluation's own rollout.csv, and the report made from it, stay as they are).
    Rollout {
        /// A folder written by `train` (or one case folder of `run`).
        #[arg(long)]
        run: PathBuf,
        /// Autoregressive steps, at least 1 [default: eval.rollout_steps of the run's config].
        #[arg(long)]
        steps: Option<usize>,
        /// Print the rollout summary as one JSON object (docs/outputs.md `rollout`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the report (figures, report.html, summary.md, summary.tex) from a run folder alone.
    Report {
        /// A folder written by `run` (or a folder of `train` evaluated with `eval`).
        #[arg(long)]
        run: PathBuf,
    },
    /// Steady-state training speed (docs/cli.md): configs blog and wide, batches 256, 1024, 16384.
    Bench {
        /// Print {"results": [...]} as JSON.
        #[arg(long)]
        json: bool,
        /// Seconds of timing per row (after a warm-up of a fifth of that).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Only these configs (comma-separated: blog, wide, deep, deep_mlp) [default: all].
        #[arg(long, value_delimiter = ',')]
        configs: Vec<String>,
        /// Only rows at these batch sizes (comma-separated) [default: each config's three].
        #[arg(long, value_delimiter = ',')]
        batches: Vec<usize>,
    },
    /// Many models: one case (train, evaluate, interpret) per point of a config's [sweep], each in
    /// DIR/points/<id>/; running again continues; shards for clusters (docs/sweeps.md).
    Sweep(sweep::SweepArgs),
    /// Read the physics back from any checkpoint in the docs/model-and-checkpoint.md layout: effective map, ω0/γ, rule,
    /// Jacobians, circuits, attention patterns, probes.
    Interpret {
        /// A .safetensors checkpoint; repeat for models trained at several Δt (fits the truncation order).
        #[arg(long, required = true)]
        model: Vec<PathBuf>,
        /// Print the JSON object (docs/outputs.md keys and more) instead of the readable summary.
        #[arg(long)]
        json: bool,
        /// Write these activations (comma-separated cache names, e.g. blocks.0.attn.pattern, or `all`) on the
        /// validation states into --out, with the inputs.
        #[arg(long, value_delimiter = ',', value_name = "NAMES", requires = "out")]
        dump: Vec<String>,
        /// Dump files: npy (one per activation), safetensors (activations.safetensors) or both.
        #[arg(long, default_value = "both", value_name = "FORMAT")]
        dump_format: physlens::interpret::dump::DumpFormat,
        /// Folder for interpret.json, patterns.csv, probes.csv, jacobians.csv and the dumps.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Activations to probe (comma-separated) [default: embed and each layer's attn.z, mlp.post (MLP blocks) and resid_post].
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        probe: Vec<String>,
        /// Validation states (Jacobians, probes, dumps).
        #[arg(long, default_value_t = 4096)]
        n_valid: usize,
        /// Largest validation energy [default: 4; for the in-context section of a checkpoint trained with
        /// parameter ranges, the energies it was validated on].
        #[arg(long)]
        e_max: Option<f64>,
        /// Seed of the validation states.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Start state X,P of the trajectory whose attention patterns are shown [default: energy 1, phase 0].
        #[arg(long, value_name = "X,P", allow_hyphen_values = true)]
        trajectory: Option<String>,
    },
    /// Activation patching and ablation: how far each activation, patched from a run with other
    /// parameters, moves the last prediction; zero- and mean-ablation of each head and MLP.
    Patch(patch::PatchArgs),
    /// Write a checkpoint in another tool's format. `--transformer-lens`: a TransformerLens state dict
    /// (safetensors, its TransformerBridgeConfig kwargs as JSON under the metadata key
    /// `transformer_lens_config`; docs/transformer-lens.md).
    Export {
        /// The format: a TransformerLens (4.x TransformerBridge) state dict; the only format so far, and required.
        #[arg(long)]
        transformer_lens: bool,
        /// A .safetensors checkpoint in the docs/model-and-checkpoint.md layout.
        #[arg(long)]
        model: PathBuf,
        /// The file to write (safetensors, the checkpoint's dtype).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let known = e.downcast_ref::<Error>();
            match known {
                Some(Error::Option { name, message }) => eprintln!("error: {}: {message}", flag_of(name)),
                _ => eprintln!("error: {e:#}"),
            }
            ExitCode::from(known.map_or(1, Error::exit_code) as u8)
        }
    }
}

fn execute(command: Command) -> Result<()> {
    match command {
        Command::Run { config, out, resume, force, quiet } => {
            let group = ProgressGroup::new(quiet);
            let lines = |name: &str, steps: u64| Box::new(group.add(name, steps)) as Box<dyn Progress>;
            let cancel = interrupt::cancel_on_ctrl_c();
            let (summary, out) = match resume {
                Some(dir) => (resume_study(&dir, &lines, &cancel)?, dir),
                None => {
                    let (config, name) = load_config(config.as_deref(), true)?;
                    let out = out.unwrap_or_else(|| Path::new("runs").join(name));
                    claim_output(&out, force)?;
                    (run_study(&config, &out, &lines, &cancel)?, out)
                }
            };
            print_summary(&summary, &out);
            print_report(&physlens::report::build::build_report(&out)?);
        }
        Command::Train { config, out, resume, force, quiet } => {
            let (config, out) = match &resume {
                Some(dir) => (RunDir::config_of(dir)?, dir.clone()),
                None => {
                    let (config, name) = load_config(config.as_deref(), false)?;
                    let out = out.unwrap_or_else(|| Path::new("runs").join(name));
                    claim_output(&out, force)?;
                    (config, out)
                }
            };
            let group = ProgressGroup::new(quiet);
            let progress = group.add("train", config.train.steps);
            let cancel = interrupt::cancel_on_ctrl_c();
            let (seconds, complete, floor_stop) = match (config.train.dtype, resume.is_some()) {
                (Dtype::F32, false) => outcome_of(train::<f32>(&config, &out, &progress, &cancel)?),
                (Dtype::F64, false) => outcome_of(train::<f64>(&config, &out, &progress, &cancel)?),
                (Dtype::F32, true) => outcome_of(resume_training::<f32>(&out, &progress, &cancel)?),
                (Dtype::F64, true) => outcome_of(resume_training::<f64>(&out, &progress, &cancel)?),
            };
            match (complete, floor_stop) {
                (true, Some(stop)) => progress.finish(&format!(
                    "already complete: stopped at the floor at step {} of {}, nothing to train",
                    stop.step, stop.steps
                )),
                (true, None) => {
                    let steps = config.train.steps;
                    progress.finish(&format!("already complete: step {steps} of {steps}, nothing to train"));
                }
                (false, Some(stop)) => progress.finish(&format!("trained in {seconds:.1}s; {stop}")),
                (false, None) => progress.finish(&format!("trained in {seconds:.1}s")),
            }
            println!("wrote {}", out.join("model.safetensors").display());
        }
        Command::Eval { run } => {
            let run = RunDir::open(&run)?;
            let eval = run.evaluate()?.evaluation;
            println!("train MSE {:.3e}   valid MSE {:.3e}", eval.train_mse, eval.valid_mse);
            print_rollout(&eval.rollout);
            if let Some(map) = &eval.interpretation {
                print_map_report(map);
            }
            if let Some(ic) = &eval.in_context {
                print_in_context(ic);
            }
            println!("wrote {}", run.dir.join("eval.json").display());
        }
        Command::Report { run } => print_report(&physlens::report::build::build_report(&run)?),
        Command::Rollout { run, steps, json } => {
            let run = RunDir::open(&run)?;
            let steps = steps.unwrap_or(run.config.eval.rollout_steps);
            let (rollout, files) = run.rollout(steps)?;
            if json {
                println!("{}", serde_json::to_string(&rollout.summary())?);
            } else {
                print_rollout(&rollout.summary());
                println!("wrote {} and {}", files[0].display(), files[1].display());
            }
        }
        Command::Bench { json, seconds, configs, batches } => {
            if !(seconds.is_finite() && seconds > 0.0) {
                let message = format!("must be a number > 0, got {seconds}");
                return Err(Error::Option { name: "seconds".into(), message }.into());
            }
            let rows =
                physlens::train::bench::run_bench(std::time::Duration::from_secs_f64(seconds), &configs, &batches)?;
            if json {
                println!("{}", serde_json::json!({ "results": rows }));
            } else {
                println!(
                    "{:<8} {:>6} {:>6} {:>8} {:>12} {:>14}",
                    "config", "batch", "dtype", "threads", "µs/step", "samples/s"
                );
                for r in &rows {
                    println!(
                        "{:<8} {:>6} {:>6} {:>8} {:>12.1} {:>14.3e}",
                        r.config, r.batch, r.dtype, r.threads, r.us_per_step, r.samples_per_sec
                    );
                }
            }
        }
        Command::Sweep(args) => sweep::execute(args)?,
        Command::Interpret { model, json, dump, dump_format, out, probe, n_valid, e_max, seed, trajectory } => {
            let options = InterpretOptions {
                n_valid,
                seed,
                probe_names: (!probe.is_empty()).then_some(probe),
                trajectory_start: trajectory.as_deref().map(parse_state).transpose()?,
                ..InterpretOptions::default()
            }
            .with_e_max(e_max);
            let out = out.map(|dir| OutputRequest { dir, dump, dump_format });
            print!("{}", run_interpret(&InterpretRequest { models: model, json, out, options })?);
        }
        Command::Patch(args) => patch::execute(args)?,
        Command::Export { transformer_lens, model, out } => {
            if !transformer_lens {
                let message = "no format chosen; the formats are: --transformer-lens (a TransformerLens state dict, \
                               docs/transformer-lens.md)";
                return Err(Error::Option { name: "--transformer-lens".into(), message: message.into() }.into());
            }
            let done = physlens::model::export::export_checkpoint(&model, &out)?;
            println!(
                "wrote {} (TransformerLens state dict: {} tensors, {}; config under `{}`)",
                out.display(),
                done.tensors,
                done.dtype.name(),
                physlens::model::export::TL_CONFIG_KEY
            );
        }
    }
    Ok(())
}

/// Training wall time, whether the run was already complete, and its stop at the floor.
fn outcome_of<F: physlens::Real>(o: physlens::TrainOutcome<F>) -> (f64, bool, Option<physlens::train::FloorStop>) {
    (o.seconds, o.was_complete(), o.floor_stop)
}

/// The config at `path` (or the defaults) and the name of the run folder;
/// prints its warnings and notes (`study`: for `physlens run`).
fn load_config(path: Option<&Path>, study: bool) -> Result<(Config, String)> {
    let (config, name, notes) = match path {
        Some(p) => {
            let config = Config::from_file(p)?;
            let notes = std::fs::read_to_string(p).map(|text| Config::notes(&text, study)).unwrap_or_default();
            (config, p.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned()), notes)
        }
        None => (Config::default(), "blog".to_string(), vec![]),
    };
    if let (Some(p), Some(_)) = (path, &config.sweep) {
        let message = "has a [sweep] section: it is a sweep file, run it with `physlens sweep --config FILE`";
        return Err(Error::Input { file: p.into(), message: message.into() }.into());
    }
    let (workload, file) = (if study { Workload::Study } else { Workload::Train }, path.map(Path::display));
    config.check_memory(workload, &file.map_or("(defaults)".into(), |f| f.to_string()))?;
    for warning in config.warnings() {
        eprintln!("warning: {warning}");
    }
    for note in notes {
        eprintln!("note: {note}");
    }
    Ok((config, name))
}

/// The rule verdict of a case, short; for an in-context case, its error at
/// the last position and nearest baseline.
fn rule_words(c: &CaseSummary) -> String {
    let nearest = c.nearest_method.as_deref().unwrap_or("");
    let words = match c.rule_verdict {
        Some(RuleVerdict::Runs) => format!("{nearest} (margin {:.1})", c.margin),
        Some(RuleVerdict::CannotTellApart) => format!("{nearest} or the runner-up (margin {:.2} < 10)", c.margin),
        Some(RuleVerdict::NoneOfThem) => format!("none: its error is too large (nearest {nearest})"),
        None => "none read: parameters drawn per sequence".into(),
    };
    match &c.in_context {
        Some(ic) => format!(
            "{words}; in context: {} at the last position, nearest baseline {}",
            sci(ic.median_rel_err_last),
            ic.resembled().unwrap_or("none")
        ),
        None => words,
    }
}

/// The in-context evaluation, short: the model and the best baselines at
/// the last position, and outside the training ranges.
fn print_in_context(ic: &physlens::eval::in_context::InContext) {
    let t = ic.positions.len();
    println!(
        "in context (median relative one-step error): position 1 {}, position {t} {}; nearest baseline {} (distance {}{})",
        sci(ic.model.median_rel_err.first().copied().unwrap_or(f64::NAN)),
        sci(ic.median_rel_err_last),
        ic.nearest_baseline,
        sci(ic.nearest_baseline_distance),
        if ic.resembles_nearest { "" } else { ": no closer to it than to the truth, so it resembles none" }
    );
    let mut baselines: Vec<(&String, f64)> =
        ic.baselines.iter().map(|(name, c)| (name, c.median_rel_err[t - 1])).filter(|(_, e)| !e.is_nan()).collect();
    baselines.sort_by(|a, b| a.1.total_cmp(&b.1));
    let shown: Vec<String> = baselines.iter().take(4).map(|(n, e)| format!("{n} {}", sci(*e))).collect();
    println!("  best baselines at position {t}: {}", shown.join(", "));
    if let Some(out) = &ic.outside {
        println!(
            "  outside the training ranges ({}; {} sequences): model {}",
            out.system,
            out.n_sequences,
            sci(out.median_rel_err_last)
        );
    }
}

fn print_summary(summary: &Summary, out: &Path) {
    println!(
        "{:<10} {:>11} {:>11} {:>13} {:>13} {:>11} {:>11}  update rule",
        "case", "train MSE", "valid MSE", "rollout rel.", "rollout /‖s₀‖", "ω0 learned", "γ learned"
    );
    for c in &summary.cases {
        println!(
            "{:<10} {:>11.3e} {:>11.3e} {:>13} {:>13} {:>11} {:>11}  {}",
            c.name,
            c.train_mse,
            c.valid_mse,
            sci(c.rollout.median_rel_err_final),
            sci(c.rollout.median_err_vs_initial_final),
            c.learned.as_ref().map_or("n/a".into(), |l| format!("{:.7}", l.omega0)),
            c.learned.as_ref().map_or("n/a".into(), |l| sci(l.gamma)),
            rule_words(c)
        );
    }
    println!(
        "(rollout: median at the last of {} steps, relative to the current and to the initial state; whole study {:.1}s)",
        summary.cases.first().map_or(0, |c| c.rollout.steps),
        summary.seconds
    );
    for c in &summary.cases {
        if let Some(n) = c.rollout.diverged_at {
            println!("{}: the rollout diverged at step {n}", c.name);
        }
        if let Some(n) = c.rollout.fixed_point_dominated_from {
            println!("{}: from step {n} the relative error measures the model's fixed point, not its dynamics", c.name);
        }
    }
    println!("wrote {}", out.join("summary.json").display());
}

fn print_rollout(r: &physlens::eval::RolloutSummary) {
    println!(
        "rollout ({} steps): relative error ‖ŝ−s‖/‖s‖ at the end: median {}, max {}; max over all steps {}",
        r.steps,
        sci(r.median_rel_err_final),
        sci(r.max_rel_err_final),
        sci(r.max_rel_err)
    );
    println!(
        "  error vs initial state ‖ŝ−s‖/‖s₀‖ at the end: median {}, max {}; max over all steps {}",
        sci(r.median_err_vs_initial_final),
        sci(r.max_err_vs_initial_final),
        sci(r.max_err_vs_initial)
    );
    if let Some(n) = r.diverged_at {
        println!("  the rollout diverged: model states are not finite from step {n} on");
    }
    if let Some(n) = r.fixed_point_dominated_from {
        println!(
            "  from step {n} on, the exact state has decayed so far that the relative error measures the model's own \
             fixed point, not its dynamics: read the error vs the initial state"
        );
    }
}

/// `x` in short scientific form, or "n/a" where it is not a finite number.
fn sci(x: f64) -> String {
    if x.is_finite() { format!("{x:.3e}") } else { "n/a".into() }
}

fn print_map_report(r: &MapReport) {
    let m = &r.effective_map;
    println!("effective map ({}), column convention s' = M s + c:", r.map_kind);
    println!("  M = [[{:+.9}, {:+.9}],", m[0][0], m[0][1]);
    println!("       [{:+.9}, {:+.9}]]   c = [{:+.3e}, {:+.3e}]", m[1][0], m[1][1], r.offset[0], r.offset[1]);
    let t = &r.truth;
    println!(
        "  learned ω0 = {:.9} (truth {}, rel. err. {:.2e})   γ = {:.9} (truth {}, err. {:.2e})",
        r.learned.omega0, t.system.omega0, r.errors.omega0_rel, r.learned.gamma, t.system.gamma, r.errors.gamma_abs
    );
    println!(
        "  best fit ω0 = {:.9}, γ = {:.9}, residual {:.2e}",
        r.best_fit.omega0, r.best_fit.gamma, r.best_fit.residual
    );
    if !r.learned.omega_identifiable {
        println!("  note: ω is not identifiable from the eigenvalues at this Δt (real eigenvalues or ωΔt ≥ π)");
    }
    println!("  distance to each rule (Frobenius):");
    for d in &r.methods {
        println!("    {:<17} {:.3e}", d.name, d.distance);
    }
    println!("  verdict: {}", margin_explanation(r).statement);
}

fn print_report(r: &physlens::report::build::ReportOutcome) {
    for skipped in &r.skipped {
        println!("figure left out: {skipped}");
    }
    println!("wrote {} ({} figures), {} and {}", r.html.display(), r.figures, r.markdown.display(), r.latex.display());
}

/// The command-line flag each library option comes from.
fn flag_of(option: &str) -> &str {
    match option {
        "n_valid" => "--n-valid",
        "e_valid_max" => "--e-max",
        "dump" => "--dump",
        "probe_names" => "--probe",
        "trajectory_start" => "--trajectory",
        "seconds" => "--seconds",
        "steps" => "--steps",
        "shard" => "--shard",
        "config" => "--config",
        other => other,
    }
}

/// Parses `--trajectory X,P`.
///
/// # Errors
/// [`Error::Option`] `trajectory_start` unless the value is two finite numbers.
fn parse_state(text: &str) -> Result<[f64; 2], Error> {
    let parts: Vec<Option<f64>> =
        text.split(',').map(|v| v.trim().parse::<f64>().ok().filter(|x| x.is_finite())).collect();
    match parts.as_slice() {
        [Some(x), Some(p)] => Ok([*x, *p]),
        _ => Err(Error::Option {
            name: "trajectory_start".into(),
            message: format!("`{text}`: expected two finite numbers X,P (the start state x, p)"),
        }),
    }
}
