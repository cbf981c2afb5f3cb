//! `physlens.patch(path, …)`: activation patching and ablation of a
//! checkpoint, the same object as `physlens patch --json` prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use physlens::interpret::patch::{PairOptions, ParamSet, PatchOptions, patch_file};
use pyo3::prelude::*;

use crate::convert::json_to_py;
use crate::errors::{to_py, value_error};
use crate::model::checkpoint_file;

/// `{"omega0": 2.0, "gamma": 0.1}` as the CLI's `--a omega0=2,gamma=0.1`,
/// checked as the CLI checks it (errors name `option`).
fn param_set(values: Option<BTreeMap<String, f64>>, option: &str) -> PyResult<Option<ParamSet>> {
    let Some(values) = values else { return Ok(None) };
    let text: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
    ParamSet::parse(&text.join(","), option).map(Some).map_err(|e| value_error(format!("{option}: {e}")))
}

/// Activation patching and ablation of the checkpoint at `path` (or a run
/// folder's `model.safetensors`): the same object as `physlens patch --json`
/// prints (`effects` with `prediction_shift`, `delta_norm`, `omega0_shift`
/// per position; `heatmaps`; `pairs`; `ablation`).
///
/// `pairs` drawn from the checkpoint's training ranges (default 64), or
/// fixed with `a` and `b` (dicts with keys `omega0`, `gamma`, `dt`);
/// `activations` filters the sites (`resid_pre`, `resid_post`, `attn.result`,
/// `mlp_out` or full names); `n_valid` validation sequences for the
/// ablations (0: none); `e_max` their largest energy (default: the energies
/// the checkpoint was validated on, else 4). The GIL is released while it runs.
///
/// Raises FileNotFoundError for a missing file, ValueError for a malformed
/// one or a bad argument (named).
#[pyfunction]
#[pyo3(signature = (path, *, pairs = None, a = None, b = None, activations = None, n_valid = 1024, e_max = None, seed = 0))]
#[allow(clippy::too_many_arguments)] // the keyword arguments of one Python function
pub fn patch(
    py: Python<'_>,
    path: PathBuf,
    pairs: Option<usize>,
    a: Option<BTreeMap<String, f64>>,
    b: Option<BTreeMap<String, f64>>,
    activations: Option<Vec<String>>,
    n_valid: usize,
    e_max: Option<f64>,
    seed: u64,
) -> PyResult<Py<PyAny>> {
    let options = PatchOptions {
        pairs: PairOptions { pairs, a: param_set(a, "a")?, b: param_set(b, "b")?, seed, ..PairOptions::default() },
        activations: activations.unwrap_or_default(),
        n_valid,
    };
    let file = checkpoint_file(&path);
    let report = py.detach(|| patch_file(&file, &options, e_max)).map_err(|e| match e {
        physlens::Error::Option { name, message } => value_error(format!("{name}: {message}")),
        other => to_py(other),
    })?;
    let text = serde_json::to_string(&report).map_err(|e| value_error(e.to_string()))?;
    json_to_py(py, &text)
}
