//! The run folder and the whole study of `physlens run`: evaluating a trained
//! model (computation only), the records of the folder (one type per file,
//! written and read back), the folder itself (the one writer of evaluation
//! files), the study that trains every case, and the sweep that trains one
//! case per point.

pub mod evaluate;
pub mod folder;
pub mod interpret;
pub mod output;
pub mod records;
pub mod study;
pub mod sweep;

pub use evaluate::{CaseResults, evaluate};
pub use folder::RunDir;
pub use output::claim_output;
pub use records::{CaseSummary, Evaluation, Summary};
pub use study::{resume_study, run_study};
