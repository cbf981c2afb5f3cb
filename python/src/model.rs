//! `physlens.load(path) -> Model`: a checkpoint, run on NumPy arrays.
//!
//! # Shapes
//! B batch, T context (= the model's `n_ctx`), 2 the state `(x, p)` of a
//! token; every array is row-major in the model's own dtype (float32 or
//! float64), batch first, as the dumps of `physlens interpret --dump` are.
//! The cache names are those of the dumps: `input` `[B, T, 2]`, `embed`
//! `[B, T, D]`, `blocks.{l}.attn.pattern` `[B, H, T, T]`, …, `pred` `[B, T, 2]`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use numpy::{Element, PyArray1, PyArrayDyn, PyArrayMethods};
use physlens::interpret::dump::{collect_activations, resolve_names};
use physlens::model::checkpoint::{self, AnyModel};
use physlens::model::{Activations, D_IN, ModelConfig};
use physlens::{Error, Real};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::convert::{json_to_py, to_py_object, type_name};
use crate::errors::{to_py, value_error};

/// The name of the input states in the cache (and of the dumps' `input.npy`).
const INPUT: &str = "input";
/// The name of the predictions in the cache.
const PRED: &str = "pred";

/// Arrays by name, in the order asked for.
type Named<'py> = Vec<(String, Bound<'py, PyAny>)>;

/// A trained model loaded from a `.safetensors` checkpoint
/// (docs/model-and-checkpoint.md), in the dtype it was stored in.
#[pyclass(frozen, module = "physlens")]
pub struct Model {
    /// Architecture and weights.
    model: AnyModel,
    /// The checkpoint's `__metadata__`.
    metadata: BTreeMap<String, String>,
    /// The file it was loaded from.
    path: PathBuf,
}

/// Loads a checkpoint: a `.safetensors` file in the physlens layout, or a run
/// folder holding `model.safetensors`.
///
/// Raises FileNotFoundError for a missing file, ValueError for a malformed
/// one (naming the tensor or metadata key at fault).
#[pyfunction]
pub fn load(path: PathBuf) -> PyResult<Model> {
    Model::open(&path)
}

/// `path`, or the `model.safetensors` in it when `path` is a run folder.
pub fn checkpoint_file(path: &Path) -> PathBuf {
    let in_folder = path.join("model.safetensors");
    if path.is_dir() && in_folder.is_file() { in_folder } else { path.to_path_buf() }
}

impl Model {
    /// Loads `path` (a checkpoint, or a run folder with `model.safetensors`).
    pub fn open(path: &Path) -> PyResult<Model> {
        let file = checkpoint_file(path);
        let ckpt = checkpoint::load(&file).map_err(to_py)?;
        Ok(Model { model: ckpt.model, metadata: ckpt.metadata, path: file })
    }

    fn cfg(&self) -> &ModelConfig {
        self.model.cfg()
    }

    /// Every cache name, in forward order: `input`, the activations, `pred`.
    fn all_names(&self) -> Vec<String> {
        std::iter::once(INPUT.to_string()).chain(Activations::<f64>::names(self.cfg())).collect()
    }

    /// The names `names` asks for (None: all; a str; a list of str; or a
    /// callable name → bool), checked, without repeats.
    fn requested(&self, names: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
        let all = self.all_names();
        let Some(names) = names.filter(|n| !n.is_none()) else { return Ok(all) };
        let list: Vec<String> = if names.is_instance_of::<PyString>() {
            vec![names.extract()?]
        } else if names.is_callable() {
            let mut kept = vec![];
            for name in &all {
                if names.call1((name,))?.is_truthy()? {
                    kept.push(name.clone());
                }
            }
            return Ok(kept);
        } else {
            let items = names.try_iter().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "names: expected None, a name, a list of names or a callable name -> bool, got {}",
                    type_name(names)
                ))
            })?;
            items.map(|n| n?.extract::<String>()).collect::<PyResult<_>>()?
        };
        let resolved = resolve_names(&all, &list).map_err(|e| match e {
            Error::Option { message, .. } => value_error(format!("names: {message}")),
            other => to_py(other),
        })?;
        let mut unique: Vec<String> = vec![];
        for name in resolved {
            if !unique.contains(&name) {
                unique.push(name);
            }
        }
        Ok(unique)
    }

    /// `states` as a flat row-major `[B, T, 2]` vector of `F`, and `B`.
    ///
    /// # Errors
    /// `ValueError` naming the expected shape for a wrong shape or a
    /// non-numeric dtype.
    fn states<F: Real + Element>(&self, states: &Bound<'_, PyAny>) -> PyResult<(Vec<F>, usize)> {
        let np = states.py().import("numpy")?;
        let t = self.cfg().n_ctx;
        let expected = format!(
            "expected an array of shape [B, T, 2] = [batch, {t}, 2]: T = n_ctx = {t} tokens (this model's context; \
             it runs on sequences of exactly n_ctx tokens), each the state (x, p)"
        );
        let array = np.call_method1("asarray", (states,))?;
        let dtype = array.getattr("dtype")?;
        let kind: String = dtype.getattr("kind")?.extract()?;
        if !matches!(kind.as_str(), "f" | "i" | "u") {
            return Err(value_error(format!("states: dtype {} is not a real number type; {expected}", dtype.str()?)));
        }
        let shape: Vec<usize> = array.getattr("shape")?.extract()?;
        if shape.len() != 3 || shape[1] != t || shape[2] != D_IN {
            return Err(value_error(format!("states: got shape {shape:?}; {expected}")));
        }
        let name = match F::DTYPE {
            physlens::Dtype::F32 => "float32",
            physlens::Dtype::F64 => "float64",
        };
        let contiguous = np.call_method1("ascontiguousarray", (array, name))?;
        let values = contiguous.cast::<PyArrayDyn<F>>()?.to_vec().map_err(|e| value_error(format!("states: {e}")))?;
        Ok((values, shape[0]))
    }

    /// Runs the model on `states` and returns `pred` and the `requested`
    /// arrays (already checked), by name.
    fn run<'py, F: Real + Element>(
        &self,
        model: &physlens::Model<F>,
        states: &Bound<'py, PyAny>,
        requested: &[String],
    ) -> PyResult<(Bound<'py, PyAny>, Named<'py>)> {
        let py = states.py();
        let (inputs, batch) = self.states::<F>(states)?;
        let mut wanted: Vec<String> = requested.iter().filter(|n| *n != INPUT && *n != PRED).cloned().collect();
        wanted.push(PRED.to_string());
        let collected = py.detach(|| collect_activations(model, &inputs, &wanted)).map_err(to_py)?;
        let mut arrays: HashMap<String, Bound<'py, PyAny>> = HashMap::new();
        for c in collected {
            let shape = Activations::<F>::shape(&model.cfg, &c.name, batch).unwrap_or(c.shape);
            arrays.insert(c.name, array(py, c.data, &shape)?);
        }
        let pred = arrays.get(PRED).cloned().ok_or_else(|| value_error("the model computed no `pred`"))?;
        let mut cache = vec![];
        for name in requested {
            let value = match name.as_str() {
                INPUT => array(py, inputs.clone(), &[batch, model.cfg.n_ctx, D_IN])?,
                _ => arrays.remove(name).ok_or_else(|| value_error(format!("the model computed no `{name}`")))?,
            };
            cache.push((name.clone(), value));
        }
        Ok((pred, cache))
    }
}

/// `data` as a NumPy array of `shape`.
fn array<'py, F: Element>(py: Python<'py>, data: Vec<F>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyArray1::from_vec(py, data).reshape(shape)?.into_any())
}

/// The parameter tensors of `model` by checkpoint name.
fn params_of<'py, F: Real + Element>(py: Python<'py>, model: &physlens::Model<F>) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for t in model.layout.tensors(&model.cfg) {
        let values = model.tensor(&t.name).map(<[F]>::to_vec).unwrap_or_default();
        dict.set_item(&t.name, array(py, values, &t.shape)?)?;
    }
    Ok(dict)
}

#[pymethods]
impl Model {
    /// The predictions `[B, T, 2]` (the next state after each token) for
    /// `states` `[B, T, 2]`, T = n_ctx, in the model's dtype. Input of any
    /// real dtype is converted to it. The GIL is released while it runs.
    ///
    /// Raises ValueError naming the expected shape for a wrong one.
    fn forward<'py>(&self, states: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match &self.model {
            AnyModel::F32(m) => self.run(m, states, &[])?.0,
            AnyModel::F64(m) => self.run(m, states, &[])?.0,
        })
    }

    /// `(pred, cache)`: the predictions and a dict of the named activations
    /// of the same forward pass, under the names of the dumps (`input`,
    /// `embed`, `blocks.0.attn.pattern`, …, `pred`; see `names`), each
    /// batch first in the model's dtype.
    ///
    /// `names` filters the cache: None for all, a name, a list of names
    /// (`"all"` allowed), or a callable name → bool. An unknown name raises
    /// ValueError listing the valid ones.
    #[pyo3(signature = (states, names = None))]
    fn run_with_cache<'py>(
        &self,
        states: &Bound<'py, PyAny>,
        names: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyDict>)> {
        let requested = self.requested(names)?;
        let (pred, arrays) = match &self.model {
            AnyModel::F32(m) => self.run(m, states, &requested)?,
            AnyModel::F64(m) => self.run(m, states, &requested)?,
        };
        let cache = PyDict::new(states.py());
        for (name, value) in arrays {
            cache.set_item(name, value)?;
        }
        Ok((pred, cache))
    }

    /// Every cache name of this model, in forward order (`input` first, `pred` last).
    #[getter]
    fn names(&self) -> Vec<String> {
        self.all_names()
    }

    /// The architecture: the checkpoint's `model` metadata (`d_model`,
    /// `n_heads`, `d_head`, `n_layers`, `n_ctx`, `attn_scale`, `causal`, `positional`, …).
    #[getter]
    fn config(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.metadata.get("model") {
            Some(text) => json_to_py(py, text),
            None => to_py_object(py, self.cfg(), "model config"),
        }
    }

    /// The physical system: the checkpoint's `system` metadata (`kind`,
    /// `omega0`, `gamma`, `dt`, each a number or a `[lo, hi]` range).
    #[getter]
    fn system(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        match self.metadata.get("system") {
            Some(text) => json_to_py(py, text),
            None => Ok(py.None()),
        }
    }

    /// The checkpoint's whole `__metadata__` (string → string).
    #[getter]
    fn metadata(&self) -> BTreeMap<String, String> {
        self.metadata.clone()
    }

    /// `"float32"` or `"float64"`: the dtype of the weights and of every array returned.
    #[getter]
    fn dtype(&self) -> &'static str {
        match self.model {
            AnyModel::F32(_) => "float32",
            AnyModel::F64(_) => "float64",
        }
    }

    /// The context length T every input must have.
    #[getter]
    fn n_ctx(&self) -> usize {
        self.cfg().n_ctx
    }

    /// The weights by checkpoint name (`embed.W_E` `[2, D]`, …), as new arrays.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        match &self.model {
            AnyModel::F32(m) => params_of(py, m),
            AnyModel::F64(m) => params_of(py, m),
        }
    }

    /// The checkpoint file.
    #[getter]
    fn path(&self) -> String {
        self.path.display().to_string()
    }

    fn __repr__(&self) -> String {
        let c = self.cfg();
        format!(
            "Model({:?}, dtype={}, d_model={}, n_heads={}, d_head={}, n_layers={}, d_mlp={}, n_ctx={})",
            self.path.display().to_string(),
            self.dtype(),
            c.d_model,
            c.n_heads,
            c.d_head,
            c.n_layers,
            c.d_mlp,
            c.n_ctx
        )
    }
}
