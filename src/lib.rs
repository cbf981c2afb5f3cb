//! physlens: train small attention-only transformers on physical systems and
//! open them up to see how they solve the problem.
//!
//! The crate is a library with a thin binary (`physlens`, in `main.rs`).
//! Conventions used throughout:
//! - physics uses column vectors, `s' = M s` with `s = (x, p)`;
//! - the model uses row vectors (a token is a row), as in TransformerLens;
//! - the two meet in exactly one place, [`model::Model::affine_map`].

pub mod config;
pub mod data;
pub mod eval;
pub mod interpret;
pub mod kernel;
pub mod model;
pub mod physics;
pub mod report;
pub mod run;
pub mod train;
pub mod util;

pub use util::cancel::CancelToken;
