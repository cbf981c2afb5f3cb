//! The training kernels: loss and gradient of one batch, fused, laid out for
//! the vector units and split across cores. They compute what
//! [`crate::model::Model::forward`], [`crate::model::mse_loss`] and
//! [`crate::model::Model::backward`] compute (tested to rounding), only
//! faster: [`ctx1`] for attention-only context-1 models, [`seq`] with full
//! attention and MLP blocks for everything else. Results are bit-identical whatever the thread count.
//!
//! Files, lowest first: `lanes` (lane vectors, instruction sets), `buffer`
//! (lane buffers aligned to cache lines),
//! `denormal` (subnormal numbers flushed while a kernel runs), `chunks`
//! (batches, fixed chunks reduced in order), `pack` (packed projection
//! weights), `attention` (one head in register tiles, for `seq`), `ctx1` and
//! `seq` (the two kernels); this file picks one.

pub(crate) mod attention;
pub(crate) mod buffer;
pub(crate) mod chunks;
pub(crate) mod ctx1;
pub(crate) mod denormal;
pub(crate) mod lanes;
pub(crate) mod pack;
pub(crate) mod seq;
#[cfg(test)]
mod tests;

pub(crate) use chunks::{Batch, on_workers};
pub(crate) use lanes::Simd;

use ctx1::Ctx1Kernel;
use seq::SeqKernel;

use crate::model::{Model, ModelConfig};
use crate::util::memory::Bytes;
use crate::util::real::Real;

/// The training step's loss-and-gradient kernel: the fused context-1 path
/// (attention only), or the lane kernel with full attention and MLP blocks.
#[derive(Clone, Debug)]
pub enum Kernel<F> {
    /// `n_ctx == 1`, no MLP blocks.
    Ctx1(Ctx1Kernel<F>),
    /// Every other model.
    Seq(SeqKernel<F>),
}

/// Bytes a kernel for batches of `batch` sequences of `cfg` allocates, at
/// `size` bytes per value (saturating; nothing is allocated to find out).
pub(crate) fn bytes(cfg: &ModelConfig, batch: usize, size: usize) -> Bytes {
    if uses_ctx1(cfg) { ctx1::bytes(cfg, batch, size) } else { seq::bytes(cfg, batch, size) }
}

/// True if `cfg` runs on the fused context-1 kernel.
fn uses_ctx1(cfg: &ModelConfig) -> bool {
    cfg.is_affine()
}

impl<F: Real> Kernel<F> {
    /// The right kernel for `model`, with buffers for `batch` sequences, on
    /// the widest vector unit the CPU has.
    pub fn new(model: &Model<F>, batch: usize) -> Self {
        Self::with_simd(model, batch, Simd::best())
    }

    /// As [`Kernel::new`], compiled for `simd` (or the widest level below it
    /// that the CPU has).
    pub fn with_simd(model: &Model<F>, batch: usize, simd: Simd) -> Self {
        if uses_ctx1(&model.cfg) {
            Kernel::Ctx1(Ctx1Kernel::new(model, batch, simd))
        } else {
            Kernel::Seq(SeqKernel::new(model, batch, simd))
        }
    }

    /// Mean loss over scored tokens of `batch` and its gradient in `grads` (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        match self {
            Kernel::Ctx1(k) => k.loss_and_grad(model, batch, grads),
            Kernel::Seq(k) => k.loss_and_grad(model, batch, grads),
        }
    }
}
