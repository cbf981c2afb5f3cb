//! The sequence kernel's projections, with their weights rearranged once per
//! step so that the innermost loop reads them in order and needs no index
//! arithmetic or bounds checks.
//!
//! A matrix `W [n_in, n_out]` used as `out = x W` is *packed* in blocks of
//! `B` outputs: `packed[(o / B)·n_in·B + i·B + o % B] = W[i, o]`. Each block
//! is then one pass over the inputs with `B` sums in registers, and each
//! loaded input lane serves `B` of them ([`project`]).
//!
//! # Packed matrices per layer (`D` d_model, `E = H·K`, q/k/v concatenated)
//! ```text
//! qkv    [D, 3E]   (q | k | v)[t] = r[t] · qkv        forward
//! o      [E, D]    r'[t] = r[t] + z[t] · o            forward
//! o_t    [D, E]    dz[t] = dr[t] · o_t                backward
//! qkv_t  [3E, D]   dr[t] += (dq | dk | dv)[t] · qkv_t  backward
//! ```

use crate::kernel::{Lane, Ops};
use crate::model::Model;
use crate::real::Real;

/// One layer's packed matrices (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedLayer<F> {
    pub(crate) qkv: Vec<F>,
    pub(crate) o: Vec<F>,
    pub(crate) o_t: Vec<F>,
    pub(crate) qkv_t: Vec<F>,
}

/// Every layer's matrices packed in blocks of `block` outputs.
#[derive(Clone, Debug)]
pub(crate) struct Packed<F> {
    pub(crate) block: usize,
    pub(crate) layers: Vec<PackedLayer<F>>,
}

/// Outputs per block for a model: four when every projection width allows
/// it (d_model and d_head multiples of four), else one.
pub(crate) fn block_width<F: Real>(model: &Model<F>) -> usize {
    if model.cfg.d_model.is_multiple_of(4) && model.cfg.d_head.is_multiple_of(4) { 4 } else { 1 }
}

impl<F: Real> Packed<F> {
    /// Buffers for `model`'s shapes, filled from its current weights.
    pub(crate) fn new(model: &Model<F>) -> Self {
        let mut packed = Packed { block: block_width(model), layers: vec![PackedLayer::default(); model.cfg.n_layers] };
        packed.fill(model);
        packed
    }

    /// Repacks `model`'s current weights (same shapes as at [`Packed::new`];
    /// no allocation).
    pub(crate) fn fill(&mut self, model: &Model<F>) {
        let (cfg, p) = (&model.cfg, &model.params[..]);
        let (d, kd, b) = (cfg.d_model, cfg.d_head, self.block);
        let e = cfg.n_heads * kd;
        for (layer, bl) in self.layers.iter_mut().zip(&model.layout.blocks) {
            // W_Q, W_K, W_V are [H, D, K]; column c of (q | k | v) is matrix c / E, head (c % E) / K, entry c % K.
            let qkv = |dd: usize, c: usize| {
                let w = [&bl.w_q, &bl.w_k, &bl.w_v][c / e].start;
                p[w + ((c % e) / kd * d + dd) * kd + c % kd]
            };
            let w_o = |ee: usize, j: usize| p[bl.w_o.start + ee * d + j]; // W_O [H, K, D] = [E, D]
            pack(&mut layer.qkv, d, 3 * e, b, qkv);
            pack(&mut layer.o, e, d, b, w_o);
            pack(&mut layer.o_t, d, e, b, |j, ee| w_o(ee, j));
            pack(&mut layer.qkv_t, 3 * e, d, b, |c, dd| qkv(dd, c));
        }
    }
}

/// Writes `w(i, o)` for an `[n_in, n_out]` matrix into `dst` in blocks of
/// `b` outputs.
fn pack<F>(dst: &mut Vec<F>, n_in: usize, n_out: usize, b: usize, w: impl Fn(usize, usize) -> F) {
    dst.clear();
    for o0 in (0..n_out).step_by(b) {
        for i in 0..n_in {
            dst.extend((o0..o0 + b).map(|o| w(i, o)));
        }
    }
}

/// `out[o] = Σ_i x[i] · W[i, o]` (or `+=` when `accumulate`) for a matrix
/// packed in blocks of `B` outputs; `out.len()` is a multiple of `B`.
#[inline(always)]
pub(crate) fn project<F: Real, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    x: &[Lane<F>],
    packed: &[F],
    out: &mut [Lane<F>],
    accumulate: bool,
) {
    let (blocks, _) = out.as_chunks_mut::<B>();
    for (o, w) in blocks.iter_mut().zip(packed.chunks_exact(x.len() * B)) {
        let mut sum = if accumulate { *o } else { [[F::zero(); crate::kernel::LANES]; B] };
        for (a, wb) in x.iter().zip(w.as_chunks::<B>().0) {
            for (s, wu) in sum.iter_mut().zip(wb) {
                ops.axpy(s, a, *wu);
            }
        }
        *o = sum;
    }
}
