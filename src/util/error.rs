//! The library's error type. The binary maps each kind to an exit code
//! (docs/cli.md: 2 bad input, 1 failed run, 130 interrupted).

use std::path::PathBuf;

/// Everything that can go wrong in physlens.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file or flag value is invalid.
    #[error("{file}: `{key}`: {message}")]
    Config {
        /// The file the value came from.
        file: String,
        /// The offending key, e.g. `train.lr`.
        key: String,
        /// What was wrong and what is accepted.
        message: String,
    },
    /// An option of a library call is invalid (the binary names the flag it came from).
    #[error("option `{name}`: {message}")]
    Option {
        /// The option, as the field of the options struct names it (e.g. `n_valid`).
        name: String,
        /// What was wrong and what is accepted.
        message: String,
    },
    /// A checkpoint file is unreadable or not in the docs/model-and-checkpoint.md layout.
    #[error("{}: {message}", file.display())]
    Checkpoint {
        /// The checkpoint file.
        file: PathBuf,
        /// What was wrong, naming the tensor or metadata key.
        message: String,
    },
    /// Any other input file or folder is missing or malformed.
    #[error("{}: {message}", file.display())]
    Input {
        /// The file or folder.
        file: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Training diverged; the last finite checkpoint was kept.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// Interrupted (Ctrl-C) after saving a checkpoint.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    /// The process exit code for this error (docs/cli.md).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } | Error::Option { .. } | Error::Checkpoint { .. } | Error::Input { .. } => 2,
            Error::Io { .. } | Error::Diverged(_) => 1,
            Error::Interrupted(_) => 130,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// Result with the physlens [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
