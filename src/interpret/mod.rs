//! Interpretation: what a trained model computes, read as physics — the
//! effective map and its readouts, Jacobians, circuits, probes (per state,
//! and across sequences for in-context models), attention patterns,
//! activation dumps, and the truncation order across models.

pub mod circuits;
pub mod context_probes;
pub mod dump;
pub mod explain;
pub mod full;
pub mod in_context;
pub mod jacobian;
pub mod map;
pub mod order;
pub mod patch;
pub mod patterns;
pub mod probe;
pub mod text;
