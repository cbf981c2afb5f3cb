//! `physlens._native`: the Python bindings of physlens (docs: python/README.md).
//!
//! A thin layer over the library, as the `physlens` binary is: convert
//! Python values in, call the library, convert the results out. Nothing here
//! computes physics or model math.
//!
//! - [`model`]: `physlens.load(path) -> Model` (`forward`, `run_with_cache`, …);
//! - [`run`]: `physlens.train(config, out)`, `physlens.resume(out) -> Run`,
//!   training on a background thread so that Ctrl-C stops it cleanly;
//! - [`patching`]: `physlens.patch(path, …)`, activation patching and ablation;
//! - [`convert`]: Python dicts → TOML configs, JSON → Python objects;
//! - [`errors`]: library errors → Python exceptions.
//!
//! The Python package `physlens` (python/physlens/) re-exports everything.

use std::path::PathBuf;

use physlens::interpret::full::InterpretOptions;
use physlens::run::interpret::{InterpretRequest, run_interpret};
use pyo3::prelude::*;

mod convert;
mod errors;
mod model;
mod patching;
mod run;

pub use errors::DivergedError;
pub use model::{Model, load};
pub use patching::patch;
pub use run::{Run, resume, train};

/// The interpretation of a checkpoint (or of a run folder's
/// `model.safetensors`): the same object as `physlens interpret
/// --json --model PATH` prints (effective map, learned ω0 and γ, rule
/// distances, Jacobians, circuits, probes, attention patterns).
///
/// `n_valid`, `e_max` and `seed` are the CLI's `--n-valid`, `--e-max` and
/// `--seed` (the validation states of the Jacobians and probes; `e_max`
/// defaults to 4, and for the in-context section to the energies the
/// checkpoint was validated on). The GIL is
/// released while it runs.
///
/// Raises FileNotFoundError for a missing file, ValueError for a malformed one.
#[pyfunction]
#[pyo3(signature = (path, *, n_valid = 4096, e_max = None, seed = 0))]
pub fn interpret(py: Python<'_>, path: PathBuf, n_valid: usize, e_max: Option<f64>, seed: u64) -> PyResult<Py<PyAny>> {
    let options = InterpretOptions { n_valid, seed, ..InterpretOptions::default() }.with_e_max(e_max);
    let request = InterpretRequest { models: vec![model::checkpoint_file(&path)], json: true, out: None, options };
    let text = py.detach(|| run_interpret(&request)).map_err(|e| match e {
        // Name the keyword argument, as the CLI names its flag.
        physlens::Error::Option { name, message } => {
            let name = if name == "e_valid_max" { "e_max".to_string() } else { name };
            errors::value_error(format!("{name}: {message}"))
        }
        other => errors::to_py(other),
    })?;
    convert::json_to_py(py, &text)
}

/// physlens: train small transformers on a damped harmonic oscillator and read
/// the physics back out of them (the compiled core; import `physlens`).
#[pymodule]
mod _native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use super::{DivergedError, Model, Run, interpret, load, patch, resume, train};

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }
}
