//! Values across the boundary: a Python dict of config sections becomes TOML
//! text for [`Config::parse`] (so a dict is checked exactly as a file is), and
//! the library's JSON becomes Python objects through `json.loads`.

use std::path::PathBuf;

use physlens::Config;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::{to_py, value_error};

/// What a dict config is called in error messages (in place of a file name).
pub const DICT_SOURCE: &str = "config";

/// The config `obj` describes: a dict of sections
/// (`{"model": {"d_model": 4}, "train": {"steps": 500}}`) or the path of a
/// TOML file (`str` or `os.PathLike`). Returns it with the name errors give it.
///
/// # Errors
/// `ValueError` naming the key for a bad key or value (as for a file),
/// `FileNotFoundError` for a missing file, `TypeError` for anything else.
pub fn config_from(obj: &Bound<'_, PyAny>) -> PyResult<(Config, String)> {
    if let Ok(dict) = obj.cast::<PyDict>() {
        let table = table_from(dict, "")?;
        let text =
            toml::to_string(&table).map_err(|e| value_error(format!("{DICT_SOURCE}: not expressible as TOML: {e}")))?;
        return Ok((Config::parse(&text, DICT_SOURCE).map_err(to_py)?, DICT_SOURCE.to_string()));
    }
    if obj.is_instance_of::<PyString>() || obj.hasattr("__fspath__")? {
        let path: PathBuf = obj.extract()?;
        let config = Config::from_file(&path).map_err(to_py)?;
        return Ok((config, path.display().to_string()));
    }
    Err(PyTypeError::new_err(format!(
        "config: expected a dict of sections such as {{\"train\": {{\"steps\": 500}}}} or the path of a TOML file, \
         got {}",
        type_name(obj)
    )))
}

/// The TOML table of a Python dict; `prefix` is the dotted path of `dict` for messages.
fn table_from(dict: &Bound<'_, PyDict>, prefix: &str) -> PyResult<toml::Table> {
    let mut table = toml::Table::new();
    for (key, value) in dict.iter() {
        let Ok(key) = key.extract::<String>() else {
            return Err(value_error(format!(
                "{DICT_SOURCE}: key {} in {}: config keys must be strings",
                key.repr()?,
                if prefix.is_empty() {
                    "the top level".to_string()
                } else {
                    format!("`{}`", &prefix[..prefix.len() - 1])
                }
            )));
        };
        let path = format!("{prefix}{key}");
        table.insert(key, value_from(&value, &path)?);
    }
    Ok(table)
}

/// The TOML value of a Python value at config key `path`.
fn value_from(value: &Bound<'_, PyAny>, path: &str) -> PyResult<toml::Value> {
    let bad = |what: String| value_error(format!("{DICT_SOURCE}: `{path}`: {what}"));
    if value.is_instance_of::<PyBool>() {
        return Ok(toml::Value::Boolean(value.extract()?));
    }
    if value.is_instance_of::<PyInt>() {
        return integer(value, path);
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(toml::Value::Float(value.extract()?));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(toml::Value::String(value.extract()?));
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        return Ok(toml::Value::Table(table_from(dict, &format!("{path}."))?));
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        let items = value.try_iter()?;
        let array = items
            .enumerate()
            .map(|(i, item)| value_from(&item?, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(toml::Value::Array(array));
    }
    if value.is_none() {
        return Err(bad("None has no TOML form; leave the key out to take its default".into()));
    }
    // NumPy scalars and other number types: booleans, then integers (`__index__`), then floats.
    if type_name(value) == "bool_" {
        return Ok(toml::Value::Boolean(value.is_truthy()?));
    }
    if value.hasattr("__index__")? {
        return integer(value, path);
    }
    if value.hasattr("__float__")? {
        return Ok(toml::Value::Float(value.extract()?));
    }
    Err(bad(format!(
        "a value of type {} has no TOML form; use a bool, int, float, str, list or dict",
        type_name(value)
    )))
}

/// The TOML integer of a Python integer at config key `path`.
fn integer(value: &Bound<'_, PyAny>, path: &str) -> PyResult<toml::Value> {
    match value.extract::<i64>() {
        Ok(n) => Ok(toml::Value::Integer(n)),
        Err(_) => Err(value_error(format!("{DICT_SOURCE}: `{path}`: {} does not fit a 64-bit integer", value.repr()?))),
    }
}

/// The Python type name of `obj`, for messages.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "?".into())
}

/// `json.loads(text)`.
pub fn json_to_py(py: Python<'_>, text: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// A serialisable library value as a Python object (through JSON: NaN and
/// infinities become `None`, as in the files the library writes).
pub fn to_py_object<T: serde::Serialize>(py: Python<'_>, value: &T, what: &str) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot encode the {what} as JSON: {e}")))?;
    json_to_py(py, &text)
}
