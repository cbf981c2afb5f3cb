//! physlens: train small attention-only transformers on physical systems and
//! open them up to see how they solve the problem.
//!
//! The crate is a library with a thin binary (`src/bin/physlens/`: flags,
//! printing, progress bars, Ctrl-C, exit codes). The user reference (config
//! keys, run-folder files, checkpoint layout, JSON keys, command line) is in
//! `docs/` of the repository.
//!
//! # Layers
//! The folders are the path a number takes. Lowest first; a module uses only
//! modules of its own layer or of layers before it, and no two modules use
//! each other (`tests/suite/architecture.rs` reads the `crate::` paths and
//! fails otherwise):
//! 1. `util` — errors, atomic files, seeded random streams, floats, 2×2 algebra
//! 2. `physics` — the oscillator, its exact propagator, update rules, readouts
//! 3. `data` — training and validation sequences
//! 4. `model` — the transformer (forward, backward), its circuits, its checkpoint
//! 5. `kernel` — the fast fused training kernels (crate-private)
//! 6. `config` — the typed TOML configuration
//! 7. `train` — AdamW, the training loop, resumable state, the speed benchmark
//! 8. `eval` — MSE, rollouts and their statistics
//! 9. `interpret` — effective maps, Jacobians, circuits, probes, patterns, dumps
//! 10. `run` — the run folder (reads and writes its records), the study, the sweep
//! 11. `report` — figures and pages from a run or sweep folder alone (feature `report`)
//!
//! # Features
//! `report` (plots and pages, with plotters) and `cli` (the `physlens` binary,
//! with clap, indicatif and ctrlc) are on by default; `default-features =
//! false` builds the core alone, as language bindings want.
//!
//! # Conventions
//! - physics uses column vectors, `s' = M s + c` with `s = (x, p)`;
//! - the model uses row vectors (a token is a row), as in TransformerLens;
//! - the two meet in one function, [`model::circuits::to_physics`].

#![deny(missing_docs)]

pub mod config;
pub mod data;
pub mod eval;
pub mod interpret;
pub(crate) mod kernel;
pub mod model;
pub mod physics;
#[cfg(feature = "report")]
pub mod report;
pub mod run;
pub mod train;
pub mod util;

pub use config::Config;
pub use interpret::full::{FullReport, InterpretOptions, interpret_checkpoint};
pub use model::checkpoint::{AnyModel, Checkpoint};
pub use model::{Activations, Model, ModelConfig};
pub use physics::{Oscillator, System};
#[cfg(feature = "report")]
pub use report::build::{ReportOutcome, build_report};
pub use run::{CaseSummary, Evaluation, RunDir, Summary, evaluate, run_study};
pub use train::progress::{Progress, Silent};
pub use train::{TrainOutcome, Trainer, resume, train};
pub use util::cancel::CancelToken;
pub use util::error::{Error, Result};
pub use util::real::{Dtype, Real};
