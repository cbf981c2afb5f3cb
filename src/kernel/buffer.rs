//! Lane buffers that start on a cache line. A lane vector is one 64-byte
//! line for f32 (two for f64), but the allocator aligns a `Vec<Lane<F>>` to
//! 16 bytes only, so without this every lane load and store would straddle
//! two lines and cost two cache accesses.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::{Pod, Zeroable};

use crate::kernel::lanes::Lane;
use crate::util::real::Real;

/// One cache line of zero bytes, the unit a [`LaneVec`] allocates in.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Lane vectors starting on a cache line; derefs to `[Lane<F>]` (a lane
/// vector is a whole number of lines, so the lines hold exactly the lanes).
#[derive(Clone)]
pub(crate) struct LaneVec<F> {
    lines: Vec<Line>,
    real: PhantomData<F>,
}

impl<F: Real> LaneVec<F> {
    /// `len` lane vectors of zeros.
    pub(crate) fn zeros(len: usize) -> Self {
        let lines = len * size_of::<Lane<F>>() / size_of::<Line>();
        LaneVec { lines: vec![Line([0; 64]); lines], real: PhantomData }
    }
}

impl<F> Default for LaneVec<F> {
    fn default() -> Self {
        LaneVec { lines: Vec::new(), real: PhantomData }
    }
}

impl<F: Real> Deref for LaneVec<F> {
    type Target = [Lane<F>];
    fn deref(&self) -> &[Lane<F>] {
        bytemuck::cast_slice(&self.lines)
    }
}

impl<F: Real> DerefMut for LaneVec<F> {
    fn deref_mut(&mut self) -> &mut [Lane<F>] {
        bytemuck::cast_slice_mut(&mut self.lines)
    }
}

impl<F> std::fmt::Debug for LaneVec<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneVec").field("lines", &self.lines.len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<F: Real>() {
        for len in [0, 1, 3, 40, 1000, 100_000] {
            let mut v = LaneVec::<F>::zeros(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0, "{len} lanes of {:?}", F::DTYPE);
            assert!(v.iter().flatten().all(|x| *x == F::zero()));
            v.iter_mut().for_each(|x| x[0] = F::one());
            assert_eq!(v.clone().as_ptr() as usize % 64, 0, "clone of {len}");
        }
    }

    #[test]
    fn lane_vectors_start_on_cache_lines() {
        check::<f32>();
        check::<f64>();
    }
}
