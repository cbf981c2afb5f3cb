//! Output folders never hold the outputs of two runs: before `train` or
//! `run` writes into a folder, [`claim_output`] refuses one that holds an
//! earlier run's files, or (forced) removes those files first.

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::error::{Error, Result};

/// Files and folders physlens writes into a run folder or a case folder
/// (docs/outputs.md); `rollout_<N>.csv` and `trajectories_<N>.csv` too.
const OUTPUTS: [&str; 17] = [
    "config.toml",
    "study.toml",
    "metrics.csv",
    "model.safetensors",
    "train_state.safetensors",
    "eval.json",
    "interpret.json",
    "rollout.csv",
    "trajectories.csv",
    "error_vs_energy.csv",
    "attention.csv",
    "sequences.csv",
    "summary.json",
    "report.html",
    "summary.md",
    "summary.tex",
    "figures",
];

/// Whether `name` is a file or folder physlens writes.
fn is_output(name: &str) -> bool {
    let numbered = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".csv"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    OUTPUTS.contains(&name) || numbered("rollout_") || numbered("trajectories_")
}

/// The earlier outputs in `dir`: its own output files, and every subfolder
/// that is itself a run folder (a case of `physlens run`), recursively.
fn earlier_outputs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = vec![];
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_output(&name) {
            found.push(path);
        } else if path.is_dir() && path.join("config.toml").is_file() {
            found.extend(earlier_outputs(&path)?);
        }
    }
    found.sort();
    Ok(found)
}

/// Makes `dir` ready for a new run. A folder that does not exist, or holds
/// no physlens outputs, is fine. One that holds an earlier run's outputs is
/// refused, naming what is there, unless `force`: then those outputs (and
/// only those: other files stay) are removed first.
///
/// # Errors
/// [`Error::Input`] naming the folder and its earlier outputs (exit 2);
/// [`Error::Io`] if an output cannot be removed.
pub fn claim_output(dir: &Path, force: bool) -> Result<()> {
    let found = earlier_outputs(dir)?;
    if found.is_empty() {
        return Ok(());
    }
    if !force {
        // Name what is there by its top-level entry: `damped/` for a case folder.
        let mut top: Vec<String> = found
            .iter()
            .filter_map(|p| p.strip_prefix(dir).ok()?.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .map(|name| if dir.join(&name).is_dir() { format!("{name}/") } else { name })
            .collect();
        top.dedup();
        let shown = top.iter().take(8).cloned().collect::<Vec<_>>();
        let more =
            if top.len() > shown.len() { format!(" and {} more", top.len() - shown.len()) } else { String::new() };
        return Err(Error::Input {
            file: dir.into(),
            message: format!(
                "holds the outputs of an earlier run ({}{more}); a folder never holds outputs of two runs: \
                 choose another --out, continue the earlier run with --resume, or pass --force to remove its \
                 outputs first",
                shown.join(", ")
            ),
        });
    }
    for path in &found {
        let removed = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
        removed.map_err(|e| Error::io(path, e))?;
    }
    // Case folders emptied by the removal go too.
    for path in found.iter().filter_map(|p| p.parent()).filter(|p| *p != dir) {
        let _ = fs::remove_dir(path); // fails (and stays) if it still holds other files
    }
    Ok(())
}
