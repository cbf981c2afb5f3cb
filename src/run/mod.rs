//! The run folder and the whole study of `physlens run`.

pub mod study;
