//! physlens: train small attention-only transformers on physical systems and
//! open them up to see how they solve the problem.
//!
//! The crate is a library with a thin binary (`physlens`, in `main.rs`).
//! Conventions used throughout:
//! - physics uses column vectors, `s' = M s` with `s = (x, p)`;
//! - the model uses row vectors (a token is a row), as in TransformerLens;
//! - the two meet in exactly one place, [`model::Model::affine_map`].

pub mod bench;
pub mod checkpoint;
pub mod circuits;
pub mod config;
pub mod data;
pub mod dump;
pub mod error;
pub mod eval;
pub mod explain;
pub mod generator;
pub mod inspect;
pub mod interpret;
pub mod interrupt;
pub mod io;
pub mod jacobian;
pub mod kernel;
mod kernel_pack;
pub mod kernel_seq;
pub mod mat2;
pub mod model;
pub mod optim;
pub mod order;
pub mod patterns;
pub mod physics;
pub mod plot;
pub mod plots;
pub mod probe;
pub mod progress;
pub mod readout;
pub mod real;
pub mod report;
pub mod report_data;
pub mod report_tables;
pub mod resume;
pub mod rng;
pub mod rules;
pub mod study;
pub mod train;
