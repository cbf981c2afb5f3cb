//! The report: figures, tables and pages made from a run folder alone.

pub mod build;
pub(crate) mod data;
pub(crate) mod figures;
pub(crate) mod plot;
pub(crate) mod sections;
pub mod sweep;
pub(crate) mod tables;
