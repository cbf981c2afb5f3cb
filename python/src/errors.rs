//! Library errors as Python exceptions, by kind (docs/python.md):
//!
//! | physlens `Error`                      | Python                                       |
//! | ------------------------------------- | -------------------------------------------- |
//! | `Config`, `Option`                    | `ValueError`                                 |
//! | `Checkpoint`, `Input`                 | `FileNotFoundError` if the file or folder does not exist, else `ValueError` |
//! | `Io`                                  | `OSError` (`FileNotFoundError`, `PermissionError` by kind) |
//! | `Diverged`                            | `physlens.DivergedError` (a `RuntimeError`)  |
//! | `Interrupted`                         | `KeyboardInterrupt`                          |
//!
//! The message is the library's own, which names the file, key or tensor at fault.

use std::io::ErrorKind;

use physlens::Error;
use pyo3::create_exception;
use pyo3::exceptions::{
    PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError, PyValueError,
};
use pyo3::prelude::*;

create_exception!(
    physlens,
    DivergedError,
    PyRuntimeError,
    "Training diverged (a non-finite or exploding loss); the last finite checkpoint was kept."
);

/// The Python exception for a library error.
pub fn to_py(e: Error) -> PyErr {
    let text = e.to_string();
    match &e {
        Error::Config { .. } | Error::Option { .. } => PyValueError::new_err(text),
        Error::Checkpoint { file, .. } | Error::Input { file, .. } => {
            if file.exists() {
                PyValueError::new_err(text)
            } else {
                PyFileNotFoundError::new_err(text)
            }
        }
        Error::Io { source, .. } => match source.kind() {
            ErrorKind::NotFound => PyFileNotFoundError::new_err(text),
            ErrorKind::PermissionDenied => PyPermissionError::new_err(text),
            _ => PyOSError::new_err(text),
        },
        Error::Diverged(_) => DivergedError::new_err(text),
        Error::Interrupted(_) => PyKeyboardInterrupt::new_err(text),
    }
}

/// A `ValueError` with `message`.
pub fn value_error(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
