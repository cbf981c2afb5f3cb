//! `physlens sweep collect DIR`: every point of a sweep folder in one table
//! (`sweep.csv`) and one self-contained page (`sweep.html`) with the figures
//! that answer the standing questions, and the failed and missing points.

pub mod collect;
pub(crate) mod figures;
pub(crate) mod page;
pub mod table;

pub use collect::{CollectOutcome, collect};
pub use table::SweepTable;
