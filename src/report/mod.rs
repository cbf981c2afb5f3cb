//! The report: figures, tables and pages made from a run folder alone.

pub mod build;
pub mod data;
pub mod figures;
pub mod plot;
pub(crate) mod sections;
pub mod tables;
