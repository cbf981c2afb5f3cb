//! `physlens interpret` as a whole: load checkpoints, interpret them, write
//! the report files and activation dumps into a folder, and return the text
//! for the terminal. The analysis itself is [`crate::interpret::full`]; this
//! module only loads and writes.

use std::path::{Path, PathBuf};

use crate::interpret::context_probes::context_probes_csv;
use crate::interpret::dump::{DumpFormat, dump_activations};
use crate::interpret::full::{FullReport, InterpretOptions, interpret_many, validation_inputs};
use crate::interpret::jacobian::jacobians_csv;
use crate::model::Model;
use crate::model::checkpoint::{AnyModel, Checkpoint};
use crate::physics::SystemSpec;
use crate::util::error::Result;
use crate::util::real::Real;

/// What `physlens interpret` was asked to do.
#[derive(Clone, Debug)]
pub struct InterpretRequest {
    /// One or more checkpoints.
    pub models: Vec<PathBuf>,
    /// Return JSON instead of the readable summary.
    pub json: bool,
    /// Where to write the report files and dumps, if anywhere.
    pub out: Option<OutputRequest>,
    /// Validation set, probes, trajectory.
    pub options: InterpretOptions,
}

/// The files `physlens interpret` writes.
#[derive(Clone, Debug)]
pub struct OutputRequest {
    /// Folder for `interpret.json`, `patterns.csv`, `probes.csv`,
    /// `jacobians.csv` and the dumps (one subfolder per model when there are several).
    pub dir: PathBuf,
    /// Activation names to dump, empty for none.
    pub dump: Vec<String>,
    /// Files for the dumps.
    pub dump_format: DumpFormat,
}

/// Runs `physlens interpret`: loads every checkpoint, interprets it, writes
/// the files into `out` (one subfolder per model when there are several) and
/// returns the text for stdout (JSON or the readable summary, with a list of
/// the files written).
///
/// With one model the JSON is that model's [`FullReport`] (docs/outputs.md keys at
/// the top level); with several it is a [`MultiReport`](crate::interpret::full::MultiReport).
///
/// # Errors
/// [`crate::util::error::Error::Checkpoint`] for a bad checkpoint,
/// [`crate::util::error::Error::Option`] for a bad option (dump or probe
/// name), [`crate::util::error::Error::Io`] when writing fails.
pub fn run_interpret(req: &InterpretRequest) -> Result<String> {
    let ckpts = req.models.iter().map(|p| crate::model::checkpoint::load(p)).collect::<Result<Vec<_>>>()?;
    // Refuse unknown names, and work the machine cannot hold, before anything is computed or written.
    let available = crate::util::memory::available();
    for (ckpt, path) in ckpts.iter().zip(&req.models) {
        let dump = match req.out.as_ref().filter(|o| !o.dump.is_empty()) {
            Some(out) => crate::interpret::dump::resolve_names(
                &crate::model::Activations::<f64>::names(ckpt.model.cfg()),
                &out.dump,
            )?,
            None => vec![],
        };
        crate::interpret::full::check_memory(ckpt, path, &req.options, &dump, &available)?;
    }
    let files: Vec<String> = req.models.iter().map(|p| p.display().to_string()).collect();
    let multi = interpret_many(&ckpts, &files, &req.options)?;
    let mut written = Vec::new();
    if let Some(out) = &req.out {
        for (i, (ckpt, report)) in ckpts.iter().zip(&multi.models).enumerate() {
            let dir = if ckpts.len() == 1 { out.dir.clone() } else { out.dir.join(model_folder(i, &req.models[i])) };
            written.extend(write_report_files(&dir, report)?);
            if !out.dump.is_empty() {
                written.extend(dump_checkpoint(ckpt, &out.dump, &dir, out.dump_format, &req.options)?);
            }
        }
        if ckpts.len() > 1 {
            let path = out.dir.join("interpret.json");
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
        crate::interpret::text::render(&multi.models[0])
    } else {
        crate::interpret::text::render_many(&multi)
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

/// `interpret.json`, `patterns.csv`, `probes.csv` and `jacobians.csv` of one
/// report, and `context_probes.csv` when it has an in-context section.
fn write_report_files(dir: &Path, r: &FullReport) -> Result<Vec<PathBuf>> {
    let files = [
        ("interpret.json", None),
        ("patterns.csv", Some(crate::interpret::patterns::patterns_csv(&r.patterns))),
        ("probes.csv", Some(crate::interpret::probe::probes_csv(&r.probes))),
        ("jacobians.csv", Some(jacobians_csv(&r.jacobians))),
    ];
    let in_context = r.in_context.as_ref().map(|ic| ("context_probes.csv", Some(context_probes_csv(&ic.probes))));
    let mut written = Vec::new();
    for (name, text) in files.into_iter().chain(in_context) {
        let path = dir.join(name);
        match text {
            None => crate::util::io::write_json(&path, r)?,
            Some(t) => crate::util::io::write_text(&path, &t)?,
        }
        written.push(path);
    }
    Ok(written)
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
        s: &SystemSpec,
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
