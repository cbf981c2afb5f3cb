//! The sequence kernel's projections, with their weights rearranged once per
//! step so that the innermost loop reads them in order and needs no index
//! arithmetic or bounds checks.
//!
//! A matrix `W [n_in, n_out]` used as `out = x W` is *packed* in blocks of
//! `B` outputs: `packed[(o / B)·n_in·B + i·B + o % B] = W[i, o]`. Each block
//! is then one pass over the inputs of two tokens with `2·B` sums in
//! registers: each loaded input lane serves `B` of them, each loaded weight
//! two ([`project`]).
//!
//! # Packed matrices per layer (`D` d_model, `E = H·K`, q/k/v concatenated, `M` d_mlp)
//! ```text
//! qkv    [D, 3E]   (q | k | v)[t] = r[t] · qkv        forward
//! o      [E, D]    r'[t] = r[t] + z[t] · o            forward
//! w_in   [D, M]    pre[t] = mid[t] · w_in + b_in      forward (MLP)
//! w_out  [M, D]    r'[t] = mid[t] + post[t] · w_out + b_out   forward (MLP)
//! w_out_t [D, M]   dpost[t] = dr[t] · w_out_t          backward (MLP)
//! w_in_t [M, D]    dr[t] += dpre[t] · w_in_t           backward (MLP)
//! o_t    [D, E]    dz[t] = dr[t] · o_t                backward
//! qkv_t  [3E, D]   dr[t] += (dq | dk | dv)[t] · qkv_t  backward
//! ```
//! The four MLP matrices are empty for attention-only models.

use rayon::prelude::*;

use crate::kernel::lanes::{LANES, Lane, Ops};
use crate::model::{BlockLayout, Model};
use crate::util::real::Real;

/// One layer's packed matrices (see the module documentation).
#[derive(Clone, Debug, Default)]
pub(crate) struct PackedLayer<F> {
    pub(crate) qkv: Vec<F>,
    pub(crate) o: Vec<F>,
    pub(crate) o_t: Vec<F>,
    pub(crate) qkv_t: Vec<F>,
    pub(crate) w_in: Vec<F>,
    pub(crate) w_out: Vec<F>,
    pub(crate) w_out_t: Vec<F>,
    pub(crate) w_in_t: Vec<F>,
}

/// Every layer's matrices packed in blocks of `block` outputs.
#[derive(Clone, Debug)]
pub(crate) struct Packed<F> {
    pub(crate) block: usize,
    pub(crate) layers: Vec<PackedLayer<F>>,
}

/// Outputs per block for a model: four when every projection width allows
/// it (d_model, d_head and d_mlp multiples of four), else one.
fn block_width<F: Real>(model: &Model<F>) -> usize {
    let c = &model.cfg;
    if [c.d_model, c.d_head, c.d_mlp].iter().all(|w| w.is_multiple_of(4)) { 4 } else { 1 }
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
        let (d, kd, m, b) = (cfg.d_model, cfg.d_head, cfg.d_mlp, self.block);
        let e = cfg.n_heads * kd;
        // A layer per parallel item (copies only: the same bits whatever the thread count).
        self.layers.par_iter_mut().zip(&model.layout.blocks).for_each(|(layer, bl)| {
            // W[i, o] = p[row(i) + col(o)] for each matrix
            let qkv_col = |c: usize| qkv_column(bl, (d, kd, e), c); // (q | k | v) [D, 3E]: entry dd at dd·K
            let o = bl.w_o.start; // W_O [H, K, D] = [E, D]
            pack(&mut layer.qkv, p, (d, 3 * e, b), |dd| dd * kd, qkv_col);
            pack(&mut layer.o, p, (e, d, b), |ee| o + ee * d, |j| j);
            pack(&mut layer.o_t, p, (d, e, b), |j| o + j, |ee| ee * d);
            pack(&mut layer.qkv_t, p, (3 * e, d, b), qkv_col, |dd| dd * kd);
            if let Some(mlp) = &bl.mlp {
                let (w_in, w_out) = (mlp.w_in.start, mlp.w_out.start); // [D, M], [M, D]
                pack(&mut layer.w_in, p, (d, m, b), |dd| w_in + dd * m, |u| u);
                pack(&mut layer.w_out, p, (m, d, b), |u| w_out + u * d, |dd| dd);
                pack(&mut layer.w_out_t, p, (d, m, b), |dd| w_out + dd, |u| u * d);
                pack(&mut layer.w_in_t, p, (m, d, b), |u| w_in + u, |dd| dd * m);
            }
        });
    }
}

/// Where column `c` of the concatenated `(W_Q | W_K | W_V)` (`[D, 3E]`,
/// shapes `(D, K, E)` with `E = H·K`) starts in the flat parameters, at
/// residual entry 0; entry `dd` sits `dd·K` further. `W_Q`, `W_K`, `W_V` are
/// `[H, D, K]`, so column `c` is matrix `c / E`, head `(c % E) / K`, entry
/// `c % K`.
#[inline(always)]
pub(crate) fn qkv_column(bl: &BlockLayout, (d, kd, e): (usize, usize, usize), c: usize) -> usize {
    [&bl.w_q, &bl.w_k, &bl.w_v][c / e].start + (c % e) / kd * d * kd + c % kd
}

/// Writes the `[n_in, n_out]` matrix `W[i, o] = p[row(i) + col(o)]` into
/// `dst` in blocks of `b ≤ 4` outputs. `row` is called once per input and
/// block, `col` once per output: index arithmetic with divisions (as
/// [`qkv_column`]'s) stays out of the per-value loop.
fn pack<F: Copy>(
    dst: &mut Vec<F>,
    p: &[F],
    (n_in, n_out, b): (usize, usize, usize),
    row: impl Fn(usize) -> usize,
    col: impl Fn(usize) -> usize,
) {
    dst.clear();
    for o0 in (0..n_out).step_by(b) {
        let cols: [usize; 4] = std::array::from_fn(|k| if k < b { col(o0 + k) } else { 0 });
        for i in 0..n_in {
            let r = row(i);
            dst.extend(cols[..b].iter().map(|c| p[r + c]));
        }
    }
}

/// `out[t, o] = Σ_i x[t, i] · W[i, o]` (or `+=` when `accumulate`) for
/// every token `t`, with `W [n_in, n_out]` packed in blocks of `B` outputs
/// (`n_out` a multiple of `B`). Tokens go two at a time: each loaded weight
/// serves both, and the `2·B` independent sums hide the multiply-add latency.
#[inline(always)]
pub(crate) fn project<F: Real, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    x: &[Lane<F>],
    n_in: usize,
    packed: &[F],
    out: &mut [Lane<F>],
    accumulate: bool,
) {
    let n_out = packed.len() / n_in;
    let zero = [[F::zero(); LANES]; B];
    let (mut x_pairs, mut out_pairs) = (x.chunks_exact(2 * n_in), out.chunks_exact_mut(2 * n_out));
    for (xx, oo) in (&mut x_pairs).zip(&mut out_pairs) {
        let ((x0, x1), (o0, o1)) = (xx.split_at(n_in), oo.split_at_mut(n_out));
        let blocks = o0.as_chunks_mut::<B>().0.iter_mut().zip(o1.as_chunks_mut::<B>().0);
        for ((b0, b1), w) in blocks.zip(packed.chunks_exact(n_in * B)) {
            let (mut s0, mut s1) = if accumulate { (*b0, *b1) } else { (zero, zero) };
            for ((a0, a1), wb) in x0.iter().zip(x1).zip(w.as_chunks::<B>().0) {
                for u in 0..B {
                    ops.axpy(&mut s0[u], a0, wb[u]);
                    ops.axpy(&mut s1[u], a1, wb[u]);
                }
            }
            (*b0, *b1) = (s0, s1);
        }
    }
    let last = x_pairs.remainder().chunks_exact(n_in).zip(out_pairs.into_remainder().chunks_exact_mut(n_out));
    for (x0, o0) in last {
        for (b0, w) in o0.as_chunks_mut::<B>().0.iter_mut().zip(packed.chunks_exact(n_in * B)) {
            let mut s0 = if accumulate { *b0 } else { zero };
            for (a0, wb) in x0.iter().zip(w.as_chunks::<B>().0) {
                for (s, wu) in s0.iter_mut().zip(wb) {
                    ops.axpy(s, a0, *wu);
                }
            }
            *b0 = s0;
        }
    }
}
