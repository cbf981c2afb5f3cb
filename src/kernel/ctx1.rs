//! The fast path for context-1 models: forward, loss and backward fused into
//! one pass, laid out for the vector units and split across cores.
//!
//! With one token the softmax is exactly 1, so each layer is
//! `r ← r + Σ_h (r W_V[h]) W_O[h]` and `W_Q`, `W_K` get zero gradient (as in
//! PyTorch). This file computes the same loss and gradient as
//! [`crate::model::Model::forward`] + [`crate::model::mse_loss`] +
//! [`crate::model::Model::backward`] (tested to rounding in
//! `tests/kernel.rs`), but:
//! - samples are processed `LANES` at a time in structure-of-arrays form
//!   (`[F; LANES]` per quantity), so each arithmetic line is one vector
//!   instruction across samples;
//! - the batch is cut into fixed chunks of `CHUNK` samples that run in
//!   parallel; per-chunk gradients are summed in chunk order, so the result
//!   is bit-identical whatever the number of threads;
//! - every buffer is allocated once ([`Ctx1Kernel::new`]), none in the step;
//! - the code is compiled for AVX-512 and for AVX2, both with fused
//!   multiply-add, and the CPU's best is chosen at run time (`lane_dispatch!`);
//!   a CPU without FMA takes the portable path. Results are identical on every
//!   CPU with FMA and may differ in the last bits on one without. A kernel can
//!   also be built for a lower level ([`Kernel::with_simd`]), which is how the
//!   tests check every level the CPU has.
//!
//! # Shapes
//! ```text
//! B batch   D d_model   H heads   K d_head   L layers   P parameters
//! batch rows  [2] inputs, [2] targets     grads  [P]
//! per lane group: r [(L+1)·D] lanes, v [L·H·K] lanes, dr [D], dv [H·K]
//! ```

use std::ops::Range;

use crate::kernel::buffer::LaneVec;
use crate::kernel::chunks::{Batch, CHUNK, ChunkOutput, run_chunks};
use crate::kernel::lanes::{LANES, Lane, Ops, Simd, lane_dispatch, sum_lanes};
use crate::model::{D_IN, Layout, Model, ModelConfig};
use crate::util::memory::Bytes;
use crate::util::real::Real;

/// Per-chunk work buffers.
#[derive(Clone, Debug)]
struct Work<F> {
    acc: LaneVec<F>, // [P]        per-lane gradient sums, zero between chunks (`sum_lanes`)
    r: LaneVec<F>,   // [(L+1)·D]  residual after each layer
    v: LaneVec<F>,   // [L·H·K]    values of each layer
    dr: LaneVec<F>,  // [D]        gradient w.r.t. the residual
    dv: LaneVec<F>,  // [H·K]      gradient w.r.t. one layer's values
    grad: Vec<F>,    // [P]        this chunk's gradient
    loss: f64,       //            this chunk's sum of squared errors
}

/// Bytes of [`Ctx1Kernel::new`] for `batch` samples of `cfg` at `size` bytes
/// per value (saturating): per chunk, the [`Work`] buffers.
pub(crate) fn bytes(cfg: &ModelConfig, batch: usize, size: usize) -> Bytes {
    let (d, hk, l) = (cfg.d_model, cfg.n_heads * cfg.d_head, cfg.n_layers);
    let p = cfg.parameter_bytes(size);
    let lanes = Bytes::of_values(&[LANES], size) * (l.saturating_add(1).saturating_mul(d)) // r
        + Bytes::of_values(&[LANES, l, hk], size) // v
        + Bytes::of_values(&[LANES], size) * d.saturating_add(hk); // dr, dv
    let work = p * LANES + p + lanes; // acc, grad, activations
    work * batch.div_ceil(CHUNK).max(1)
}

/// The fused context-1 kernel with its buffers for one batch size.
#[derive(Clone, Debug)]
pub struct Ctx1Kernel<F> {
    simd: Simd,
    work: Vec<Work<F>>, // one per chunk
}

impl<F: Real> Ctx1Kernel<F> {
    /// Buffers for batches of up to `batch` samples of `model` (which must
    /// have `n_ctx == 1`), running on `simd` (see [`Kernel::with_simd`]).
    pub fn new(model: &Model<F>, batch: usize, simd: Simd) -> Self {
        let c = &model.cfg;
        assert_eq!(c.n_ctx, 1, "the fused kernel is for context-1 models");
        let work = Work {
            acc: LaneVec::zeros(model.params.len()),
            r: LaneVec::zeros((c.n_layers + 1) * c.d_model),
            v: LaneVec::zeros(c.n_layers * c.n_heads * c.d_head),
            dr: LaneVec::zeros(c.d_model),
            dv: LaneVec::zeros(c.n_heads * c.d_head),
            grad: vec![F::zero(); model.params.len()],
            loss: 0.0,
        };
        Ctx1Kernel { simd, work: vec![work; batch.div_ceil(CHUNK).max(1)] }
    }

    /// Mean over samples of `‖pred − target‖²`, and its gradient in `grads` `[P]`
    /// (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        let n = batch.len();
        let g = F::of(2.0 / n as f64);
        let (simd, work) = (self.simd, &mut self.work[..n.div_ceil(CHUNK)]);
        let loss = run_chunks(work, grads, |i, w| chunk(simd, model, batch, i * CHUNK..((i + 1) * CHUNK).min(n), g, w));
        loss / n as f64
    }
}

impl<F> ChunkOutput<F> for Work<F> {
    fn grad(&self) -> &[F] {
        &self.grad
    }
    fn loss(&self) -> f64 {
        self.loss
    }
}

lane_dispatch! {
    /// One chunk on the widest vector unit the CPU has.
    fn chunk => chunk_lanes(model: &Model<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>)
}

#[inline(always)]
fn chunk_lanes<F: Real, const FMA: bool>(
    model: &Model<F>,
    batch: &Batch<F>,
    span: Range<usize>,
    g: F,
    w: &mut Work<F>,
) {
    let zero = [F::zero(); LANES];
    let mut loss = zero;
    for start in span.clone().step_by(LANES) {
        let live = (span.end - start).min(LANES);
        let (mut s, mut y) = ([zero; D_IN], [zero; D_IN]);
        let mut gain = zero; // g for real samples, 0 for padding lanes
        for i in 0..live {
            let (input, target) = batch.get(start + i);
            for c in 0..D_IN {
                s[c][i] = input[c];
                y[c][i] = target[c];
            }
            gain[i] = g;
        }
        group::<F, FMA>(model, &s, &y, &gain, &mut loss, w);
    }
    w.loss = sum_lanes(&loss, &mut w.acc, &mut w.grad);
}

/// Forward, loss and backward for one group of `LANES` samples, accumulating
/// per-lane gradients into `w.acc` and squared errors into `loss`.
#[inline(always)]
fn group<F: Real, const FMA: bool>(
    model: &Model<F>,
    s: &[Lane<F>; D_IN],
    y: &[Lane<F>; D_IN],
    gain: &Lane<F>,
    loss: &mut Lane<F>,
    w: &mut Work<F>,
) {
    let (cfg, p, lay): (_, &[F], &Layout) = (&model.cfg, &model.params, &model.layout);
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    let Work { acc, r, v, dr, dv, .. } = w;
    // Slices, so that indexing does not go through `LaneVec`'s deref each time.
    let (acc, r, v, dr, dv) = (&mut acc[..], &mut r[..], &mut v[..], &mut dr[..], &mut dv[..]);
    let ops = Ops::<FMA>;

    // forward: embedding (positional row 0 acts as a second bias)
    for j in 0..d {
        let bias = p[lay.b_e.start + j] + lay.w_pos.as_ref().map_or(F::zero(), |wp| p[wp.start + j]);
        let mut x = [bias; LANES];
        for c in 0..D_IN {
            ops.axpy(&mut x, &s[c], p[lay.w_e.start + c * d + j]);
        }
        r[j] = x;
    }
    // forward: each layer, r ← r + Σ_h (r W_V[h]) W_O[h]
    for (l, bl) in lay.blocks.iter().enumerate() {
        let (r_in, r_out) = r[l * d..(l + 2) * d].split_at_mut(d);
        let vl = &mut v[l * h * k..(l + 1) * h * k];
        for (hk, out) in vl.iter_mut().enumerate() {
            let (hh, kk) = (hk / k, hk % k);
            let mut x = [F::zero(); LANES];
            for dd in 0..d {
                ops.axpy(&mut x, &r_in[dd], p[bl.w_v.start + (hh * d + dd) * k + kk]);
            }
            *out = x;
        }
        for j in 0..d {
            let mut x = r_in[j];
            for hk in 0..h * k {
                ops.axpy(&mut x, &vl[hk], p[bl.w_o.start + hk * d + j]);
            }
            r_out[j] = x;
        }
    }
    // unembed and loss: e = pred − y, d pred = g e
    let r_last = &r[cfg.n_layers * d..];
    let mut dp = [[F::zero(); LANES]; D_IN];
    for c in 0..D_IN {
        let mut pred = [p[lay.b_u.start + c]; LANES];
        for j in 0..d {
            ops.axpy(&mut pred, &r_last[j], p[lay.w_u.start + j * D_IN + c]);
        }
        for i in 0..LANES {
            let e = pred[i] - y[c][i];
            loss[i] += if gain[i] == F::zero() { F::zero() } else { e * e };
            dp[c][i] = gain[i] * e;
        }
        for i in 0..LANES {
            acc[lay.b_u.start + c][i] += dp[c][i];
        }
        for j in 0..d {
            ops.fma(&mut acc[lay.w_u.start + j * D_IN + c], &r_last[j], &dp[c]);
        }
    }
    for j in 0..d {
        let mut x = [F::zero(); LANES];
        for c in 0..D_IN {
            ops.axpy(&mut x, &dp[c], p[lay.w_u.start + j * D_IN + c]);
        }
        dr[j] = x;
    }
    // backward through each layer, last first
    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        let r_in = &r[l * d..(l + 1) * d];
        let vl = &v[l * h * k..(l + 1) * h * k];
        for hk in 0..h * k {
            let mut x = [F::zero(); LANES];
            for j in 0..d {
                ops.fma(&mut acc[bl.w_o.start + hk * d + j], &vl[hk], &dr[j]);
                ops.axpy(&mut x, &dr[j], p[bl.w_o.start + hk * d + j]);
            }
            dv[hk] = x;
        }
        for hh in 0..h {
            for dd in 0..d {
                let row = bl.w_v.start + (hh * d + dd) * k;
                for kk in 0..k {
                    ops.fma(&mut acc[row + kk], &r_in[dd], &dv[hh * k + kk]);
                    ops.axpy(&mut dr[dd], &dv[hh * k + kk], p[row + kk]);
                }
            }
        }
    }
    // backward through the embedding
    for j in 0..d {
        for i in 0..LANES {
            acc[lay.b_e.start + j][i] += dr[j][i];
        }
        if let Some(wp) = &lay.w_pos {
            for i in 0..LANES {
                acc[wp.start + j][i] += dr[j][i];
            }
        }
        for c in 0..D_IN {
            ops.fma(&mut acc[lay.w_e.start + c * d + j], &s[c], &dr[j]);
        }
    }
}
