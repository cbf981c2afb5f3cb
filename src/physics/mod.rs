//! The physics: the damped harmonic oscillator and its exact propagator, the
//! candidate update rules, and reading (ω0, γ) back from a 2×2 map.
//! Everything here is in the COLUMN convention, `s' = M s` with `s = (x, p)`.

pub mod baselines;
pub mod generator;
pub mod oscillator;
pub mod readout;
pub mod rules;
pub mod spec;
pub mod system;

pub use oscillator::{Oscillator, Regime};
pub use spec::{Param, SystemSpec};
pub use system::System;
