//! `physlens.train(config, out)` and `physlens.resume(out)`: train one model
//! and evaluate it into a run folder, as `physlens train` then `physlens eval`.
//!
//! Training runs on a background thread. The calling thread waits in short
//! slices without the GIL and, between them, takes it back to run Python's
//! signal handlers: on Ctrl-C (KeyboardInterrupt) it cancels the run, waits
//! for the training thread to save its full state, and raises
//! KeyboardInterrupt saying how to continue (`physlens.resume(out)`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use physlens::config::memory::Workload;
use physlens::run::study::run_case;
use physlens::run::{CaseSummary, RunDir, claim_output};
use physlens::train::progress::Progress;
use physlens::{CancelToken, Config, Error};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyUserWarning, PyValueError};
use pyo3::prelude::*;

use crate::convert::{config_from, to_py_object};
use crate::errors::to_py;
use crate::model::Model;

/// How long the waiting thread lets go of the GIL between two looks at Python's signals.
const SLICE: Duration = Duration::from_millis(50);
/// The shortest time between two progress lines.
const PRINT_EVERY: Duration = Duration::from_secs(1);

/// A trained and evaluated run folder.
#[pyclass(frozen, module = "physlens")]
pub struct Run {
    /// The run folder (`os.fspath(run)` gives it too).
    #[pyo3(get)]
    dir: String,
    /// The trained model, loaded from `dir/model.safetensors`.
    #[pyo3(get)]
    model: Py<Model>,
    /// The case summary (a `summary.json` case: `train_mse`, `valid_mse`,
    /// `rollout`, `learned`, `nearest_method`, …).
    #[pyo3(get)]
    summary: Py<PyAny>,
    /// The resolved config (every key; `dir/config.toml`).
    #[pyo3(get)]
    config: Py<PyAny>,
}

#[pymethods]
impl Run {
    fn __fspath__(&self) -> String {
        self.dir.clone()
    }

    fn __repr__(&self) -> String {
        format!("Run({:?})", self.dir)
    }
}

/// Trains one model on `config` and evaluates it into the folder `out`
/// (as `physlens train` then `physlens eval`; a `[run]` section is ignored).
///
/// `config` is a dict of sections (`{"model": {"d_model": 4}, "train":
/// {"steps": 500}}`, checked as a TOML file is) or the path of a TOML file.
/// A folder holding an earlier run is refused unless `force` (which removes
/// that run's files first). `quiet=False` prints progress lines to
/// `sys.stderr`. The GIL is released while training.
///
/// Ctrl-C stops training after the current step, saves its full state and
/// raises KeyboardInterrupt; `physlens.resume(out)` continues it.
///
/// Raises ValueError for a bad config key or value (naming it) or a folder
/// with an earlier run, FileNotFoundError for a missing config file,
/// physlens.DivergedError when training diverges.
#[pyfunction]
#[pyo3(signature = (config, out, *, force = false, quiet = true))]
pub fn train(py: Python<'_>, config: &Bound<'_, PyAny>, out: PathBuf, force: bool, quiet: bool) -> PyResult<Run> {
    let (config, source) = config_from(config)?;
    if config.sweep.is_some() {
        return Err(PyValueError::new_err(format!(
            "{source}: has a [sweep] section: it describes many models; physlens.train trains one \
             (run a sweep with `physlens sweep --config FILE`)"
        )));
    }
    check_memory(&config, &source)?;
    claim_output(&out, force).map_err(to_py)?;
    for warning in config.warnings() {
        let message = std::ffi::CString::new(warning).unwrap_or_default();
        PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)?;
    }
    run_in_background(py, config, out, quiet, false)
}

/// Continues the run in `out` that was interrupted (Ctrl-C) or crashed, from
/// its `train_state.safetensors` with its `config.toml`, then evaluates it.
/// The final weights are bit-identical to a run never stopped; a finished
/// run is evaluated again without training.
///
/// Raises FileNotFoundError when `out` does not exist, ValueError when it is
/// not a run folder.
#[pyfunction]
#[pyo3(signature = (out, *, quiet = true))]
pub fn resume(py: Python<'_>, out: PathBuf, quiet: bool) -> PyResult<Run> {
    let config = RunDir::config_of(&out).map_err(to_py)?;
    check_memory(&config, &out.join("config.toml").display().to_string())?;
    run_in_background(py, config, out, quiet, true)
}

/// Refuses a config whose training or evaluation needs more memory than the machine has.
fn check_memory(config: &Config, source: &str) -> PyResult<()> {
    for workload in [Workload::Train, Workload::Evaluate] {
        config.check_memory(workload, source).map_err(to_py)?;
    }
    Ok(())
}

/// What the training thread sends back: the case summary, or the library's
/// error, or the message of a panic.
type Outcome = Result<physlens::Result<CaseSummary>, String>;

/// Runs [`run_case`] on a background thread while this one waits, watches
/// Python's signals and prints progress.
fn run_in_background(py: Python<'_>, config: Config, dir: PathBuf, quiet: bool, resume: bool) -> PyResult<Run> {
    let cancel = CancelToken::new();
    let lines = Arc::new(Lines::new(quiet, config.train.steps));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let worker = {
        let (config, dir, cancel, lines) = (config.clone(), dir.clone(), cancel.clone(), lines.clone());
        std::thread::Builder::new().name("physlens-train".into()).spawn(move || {
            let run = || run_case(&config, &dir, lines.as_ref(), &cancel, resume);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|panic| {
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "(no message)".into())
            });
            let _ = tx.send(outcome);
        })
    }
    .map_err(|e| PyRuntimeError::new_err(format!("cannot start the training thread: {e}")))?;

    let mut interrupt: Option<PyErr> = None;
    let mut rx = rx;
    let outcome = loop {
        // The receiver is not Sync: it goes into the GIL-free closure and comes back.
        let (back, received) = py.detach(move || {
            let received = rx.recv_timeout(SLICE);
            (rx, received)
        });
        rx = back;
        lines.print(py, false);
        match received {
            Ok(outcome) => break outcome,
            Err(mpsc::RecvTimeoutError::Disconnected) => break Err("the training thread ended without a result".into()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if interrupt.is_none()
                    && let Err(e) = py.check_signals()
                {
                    // Stop after the current step; the thread saves the full state, then returns.
                    cancel.cancel();
                    interrupt = Some(e);
                }
            }
        }
    };
    let _ = worker.join();
    lines.print(py, true);

    let summary = match (outcome, interrupt) {
        (Err(panic), _) => {
            return Err(PyRuntimeError::new_err(format!("internal error: training panicked: {panic}")));
        }
        (Ok(result), Some(signal)) if signal.is_instance_of::<PyKeyboardInterrupt>(py) => {
            return Err(interrupted(result, &dir));
        }
        // Another exception from a signal handler (e.g. SystemExit) stopped it: raise that one.
        (Ok(Err(Error::Interrupted(_))) | Ok(Ok(_)), Some(signal)) => return Err(signal),
        (Ok(Err(e)), _) => return Err(to_py(e)),
        (Ok(Ok(summary)), None) => summary,
    };
    if !quiet {
        lines.say(
            py,
            &format!(
                "done in {:.1}s: valid MSE {:.3e}, rollout median rel. err. {:.2e} at step {}; wrote {}",
                summary.train_seconds,
                summary.valid_mse,
                summary.rollout.median_rel_err_final,
                summary.rollout.steps,
                dir.display()
            ),
        );
    }
    finished_run(py, &dir, &config, &summary)
}

/// The KeyboardInterrupt raised after Ctrl-C stopped the run in `dir`.
fn interrupted(result: physlens::Result<CaseSummary>, dir: &Path) -> PyErr {
    let hint = format!("physlens.resume({:?})", dir.display().to_string());
    match result {
        Err(Error::Interrupted(message)) => {
            // The library's message ends with the command line's way to continue; give Python's.
            let head = message.split(" Continue with").next().unwrap_or(&message).trim_end();
            PyKeyboardInterrupt::new_err(format!("training interrupted: {head} The run is resumable with {hint}."))
        }
        Ok(_) => PyKeyboardInterrupt::new_err(format!(
            "interrupted, but the run in {} had already finished training and evaluation; {hint} reloads it",
            dir.display()
        )),
        Err(other) => to_py(other),
    }
}

/// The [`Run`] of a finished run folder.
fn finished_run(py: Python<'_>, dir: &Path, config: &Config, summary: &CaseSummary) -> PyResult<Run> {
    let model = Model::open(&dir.join("model.safetensors"))?;
    Ok(Run {
        dir: dir.display().to_string(),
        model: Py::new(py, model)?,
        summary: to_py_object(py, summary, "case summary")?,
        config: to_py_object(py, config, "config")?,
    })
}

// ---------------------------------------------------------------- progress

/// Progress lines for `sys.stderr`: the training thread records, the waiting
/// thread (which holds the GIL between slices) prints, at most one line per
/// [`PRINT_EVERY`]. Nothing when quiet.
struct Lines {
    quiet: bool,
    steps: u64,
    /// The latest update not yet printed.
    pending: Mutex<Option<String>>,
    /// When the last line was printed.
    printed: Mutex<Option<Instant>>,
}

impl Lines {
    fn new(quiet: bool, steps: u64) -> Lines {
        Lines { quiet, steps, pending: Mutex::new(None), printed: Mutex::new(None) }
    }

    /// Prints the pending update if one is due (`last`: whatever the time).
    fn print(&self, py: Python<'_>, last: bool) {
        if self.quiet {
            return;
        }
        let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
        if !last && printed.is_some_and(|t| t.elapsed() < PRINT_EVERY) {
            return;
        }
        let line = self.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(line) = line {
            self.say(py, &line);
            *printed = Some(Instant::now());
        }
    }

    /// Writes `line` to Python's `sys.stderr` (so that notebooks show it).
    fn say(&self, py: Python<'_>, line: &str) {
        let write = || -> PyResult<()> {
            let stderr = py.import("sys")?.getattr("stderr")?;
            stderr.call_method1("write", (format!("physlens: {line}\n"),))?;
            stderr.call_method0("flush")?;
            Ok(())
        };
        // A closed or replaced stderr must not fail the run.
        let _ = write();
    }
}

impl Progress for Lines {
    fn update(&self, step: u64, train_loss: f64, valid_mse: f64, elapsed: f64) {
        if self.quiet {
            return;
        }
        let line = format!(
            "step {step}/{}  train loss {train_loss:.3e}  valid MSE {valid_mse:.3e}  {elapsed:.1}s",
            self.steps
        );
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
    }

    fn finish(&self, message: &str) {
        if !self.quiet {
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.to_string());
        }
    }
}
