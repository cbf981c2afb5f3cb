//! The integration tests, in one binary (one link instead of fifteen): each
//! module is one concern, named for what it checks. `common` and `handbuilt`
//! are shared helpers (models built by hand whose answer is known).

mod common;
mod handbuilt;

mod architecture;
mod checkpoint;
mod cli;
mod config;
mod context_probes;
mod export;
mod floor_stop;
mod fuzz;
mod gradcheck;
mod honest_numbers;
mod in_context;
mod in_context_interpret;
mod interpret;
mod interpret_cli;
mod memory;
mod patch;
mod physics;
mod readout;
mod reference;
mod regression;
mod reliability;
mod report;
mod rules;
mod run_folders;
mod study;
mod sweep;
mod verdicts;
