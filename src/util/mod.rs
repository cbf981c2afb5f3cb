//! The bottom layer: what every other layer uses and that knows nothing of
//! physics or models — errors, atomic file output, the seeded random
//! streams, the float trait, 2×2 linear algebra, memory sizes.

pub mod cancel;
pub mod error;
pub(crate) mod io;
pub(crate) mod json;
pub mod mat2;
pub mod memory;
pub mod real;
pub mod rng;
