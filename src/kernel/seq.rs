//! The fast path for models with context T > 1: the same lane layout as
//! [`crate::kernel`] (samples `LANES` at a time, structure of arrays, fixed
//! chunks reduced in order), here with the full attention of
//! [`crate::model`]. It computes the loss and gradient of
//! `Model::forward` + `mse_loss` + `Model::backward` (tested to rounding in
//! `src/kernel/tests.rs`). Each head's attention is [`crate::kernel::attention`].
//!
//! # Shapes (per group of `LANES` sequences, every entry a lane vector)
//! ```text
//! r  [(L+1), T, D]   residual before each layer and after the last
//! qkv [L, T, 3, H, K]  (q | k | v)   z [L, T, H, K]   pattern [L, H, T, T]
//! mid [L, T, D]   post [L, T, M]   dact [L, T, M]   (MLP blocks; empty without)
//! dr [T, D]   dqkv [T, 3, H, K]   dz [T, H, K]   ds [T, T]   dpre [T, M]   (reused across layers and heads)
//! ```

use std::ops::Range;

use crate::kernel::attention::{self, Head, Rows, RowsMut};
use crate::kernel::buffer::LaneVec;
use crate::kernel::chunks::{Batch, ChunkOutput, run_chunks};
use crate::kernel::lanes::{LANES, Lane, Ops, Simd, fold, lane_dispatch, lane_sums, lanewise, loss_sum, zip_lanes};
use crate::kernel::pack::{Packed, PackedLayer, project, qkv_column};
use crate::model::{D_IN, Model, ModelConfig};
use crate::util::memory::Bytes;
use crate::util::real::Real;

/// The most sequences per parallel work item.
pub const CHUNK_SEQ: usize = 64;

/// Sequences per parallel work item for batches of up to `batch`: at least
/// four items when the batch allows (so that small batches of large models
/// keep every core busy), in whole lane groups, at most [`CHUNK_SEQ`]. It
/// depends on the batch size alone, never on the thread count, so results
/// stay bit-identical whatever the number of threads.
pub fn chunk_seq(batch: usize) -> usize {
    batch.div_ceil(4).next_multiple_of(LANES).clamp(LANES, CHUNK_SEQ)
}

#[derive(Clone, Debug)]
struct Work<F> {
    r: LaneVec<F>,       // [(L+1)·T·D]
    qkv: LaneVec<F>,     // [L·T·3·H·K]  q | k | v per token
    z: LaneVec<F>,       // [L·T·H·K]
    pattern: LaneVec<F>, // [L·H·T·T]
    mid: LaneVec<F>,     // [L·T·D]  residual between attention and MLP
    post: LaneVec<F>,    // [L·T·M]  act(pre)
    dact: LaneVec<F>,    // [L·T·M]  act'(pre)
    dr: LaneVec<F>,      // [T·D]
    dqkv: LaneVec<F>,    // [T·3·H·K]  dq | dk | dv per token
    dz: LaneVec<F>,      // [T·H·K]
    ds: LaneVec<F>,      // [T·T]  d scores of one head
    dpre: LaneVec<F>,    // [T·M]  d pre of one layer's MLP
    dp: LaneVec<F>,      // [T·2]  d pred
    s: LaneVec<F>,       // [T·2]  one group's inputs
    y: LaneVec<F>,       // [T·2]  one group's targets
    grad: Vec<F>,        // [P]  the chunk's gradient, summed over lanes after each group
    loss: f64,
}

impl<F> ChunkOutput<F> for Work<F> {
    fn grad(&self) -> &[F] {
        &self.grad
    }
    fn loss(&self) -> f64 {
        self.loss
    }
}

/// Bytes of [`SeqKernel::new`] for `batch` sequences of `cfg` at `size` bytes
/// per value (saturating): the packed projections, and per chunk the
/// [`Work`] buffers (the activations of `LANES` sequences kept for backward).
pub(crate) fn bytes(cfg: &ModelConfig, batch: usize, size: usize) -> Bytes {
    let (t, d, h, l) = (cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.n_layers);
    let hk = h.saturating_mul(cfg.d_head);
    let lane = |dims: &[usize]| Bytes::of_values(&[&[LANES], dims].concat(), size);
    let m = cfg.d_mlp;
    let kept = lane(&[l.saturating_add(1), t, d]) + lane(&[l, t, 4, hk]) + lane(&[l, h, t, t]); // r, qkv and z, pattern
    let kept_mlp = lane(&[l, t, d]) + lane(&[l, t, 2, m]); // mid, post and dact
    let reused = lane(&[t, d]) + lane(&[t, 4, hk]) + lane(&[t, t]) + lane(&[t, 3 * D_IN]) + lane(&[t, m]); // dr, dqkv and dz, ds, dp s y, dpre
    let kept = kept + if cfg.has_mlp() { kept_mlp } else { Bytes::ZERO };
    let p = cfg.parameter_bytes(size);
    let packed = Bytes::of_values(&[l, 8, d, hk], size) + Bytes::of_values(&[l, 4, d, m], size);
    packed + (p + kept + reused) * batch.div_ceil(chunk_seq(batch)).max(1)
}

/// The lane kernel for context-T models with its buffers for one batch size.
#[derive(Clone, Debug)]
pub struct SeqKernel<F> {
    simd: Simd,
    packed: Packed<F>,  // the model's projections, repacked each step
    chunk: usize,       // sequences per chunk, `chunk_seq` of the batch capacity
    work: Vec<Work<F>>, // one per chunk
}

impl<F: Real> SeqKernel<F> {
    /// Buffers for batches of up to `batch` sequences of `model`, running on
    /// `simd` (see [`crate::kernel::Kernel::with_simd`]).
    pub fn new(model: &Model<F>, batch: usize, simd: Simd) -> Self {
        let c = &model.cfg;
        let (t, d, hk, l, m) = (c.n_ctx, c.d_model, c.n_heads * c.d_head, c.n_layers, c.d_mlp);
        let z = LaneVec::zeros;
        let mlp = |n: usize| z(if c.has_mlp() { n } else { 0 });
        let work = Work {
            r: z((l + 1) * t * d),
            qkv: z(l * t * 3 * hk),
            z: z(l * t * hk),
            pattern: z(l * c.n_heads * t * t),
            mid: mlp(l * t * d),
            post: z(l * t * m),
            dact: z(l * t * m),
            dr: z(t * d),
            dqkv: z(t * 3 * hk),
            dz: z(t * hk),
            ds: z(t * t),
            dpre: z(t * m),
            dp: z(t * D_IN),
            s: z(t * D_IN),
            y: z(t * D_IN),
            grad: vec![F::zero(); model.params.len()],
            loss: 0.0,
        };
        let chunk = chunk_seq(batch);
        SeqKernel { simd, packed: Packed::new(model), chunk, work: vec![work; batch.div_ceil(chunk).max(1)] }
    }

    /// Mean over scored tokens of `‖pred − target‖²` and its gradient in
    /// `grads` `[P]` (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        let n = batch.len();
        let count = n * model.cfg.scored_positions().len();
        let g = F::of(2.0 / count as f64);
        self.packed.fill(model);
        let (simd, packed, c) = (self.simd, &self.packed, self.chunk);
        let work = &mut self.work[..n.div_ceil(c)];
        let loss = run_chunks(work, grads, |i, w| chunk(simd, model, packed, batch, i * c..((i + 1) * c).min(n), g, w));
        loss / count as f64
    }
}

lane_dispatch! {
    /// One chunk on the widest vector unit the CPU has.
    fn chunk => chunk_lanes(model: &Model<F>, packed: &Packed<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>)
}

#[inline(always)]
fn chunk_lanes<F: Real, const FMA: bool>(
    model: &Model<F>,
    packed: &Packed<F>,
    batch: &Batch<F>,
    span: Range<usize>,
    g: F,
    w: &mut Work<F>,
) {
    let zero = [F::zero(); LANES];
    let mut loss = zero;
    let (mut s, mut y) = (std::mem::take(&mut w.s), std::mem::take(&mut w.y));
    w.grad.fill(F::zero());
    for start in span.clone().step_by(LANES) {
        let live = (span.end - start).min(LANES);
        // Padding lanes repeat the last sequence with zero weight.
        let gain: Lane<F> = std::array::from_fn(|i| if i < live { g } else { F::zero() });
        let rows: [(&[F], &[F]); LANES] = std::array::from_fn(|i| batch.get(start + i.min(live - 1)));
        // One lane vector per value, read across the group's sequences.
        let width = batch.width;
        let rows = rows.map(|(x, t)| (&x[..width], &t[..width]));
        for (e, (se, ye)) in s[..width].iter_mut().zip(&mut y[..width]).enumerate() {
            *se = std::array::from_fn(|i| rows[i].0[e]);
            *ye = std::array::from_fn(|i| rows[i].1[e]);
        }
        // Blocks of four outputs share each loaded operand when the widths allow.
        if packed.block == 4 {
            group::<F, FMA, 4>(model, &packed.layers, &s, &y, &gain, &mut loss, w);
        } else {
            group::<F, FMA, 1>(model, &packed.layers, &s, &y, &gain, &mut loss, w);
        }
    }
    (w.s, w.y) = (s, y);
    w.loss = loss_sum(&loss);
}

/// Forward, loss and backward for one group of `LANES` sequences.
#[inline(always)]
fn group<F: Real, const FMA: bool, const B: usize>(
    model: &Model<F>,
    packed: &[PackedLayer<F>],
    s: &[Lane<F>],
    y: &[Lane<F>],
    gain: &Lane<F>,
    loss: &mut Lane<F>,
    w: &mut Work<F>,
) {
    let (cfg, p, lay) = (&model.cfg, &model.params[..], &model.layout);
    let (t, d, h, kd) = (cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head);
    let (hk, w3) = (h * kd, 3 * h * kd); // width of z, and of q | k | v
    let head = Head { t, k: kd, causal: cfg.causal, scale: F::of(cfg.scale()) };
    let zero = [F::zero(); LANES];
    let m = cfg.d_mlp;
    let Work { grad, r, qkv, z, pattern, mid, post, dact, dr, dqkv, dz, ds, dpre, dp, .. } = w;
    // Slices, not vectors: their data pointers and lengths stay in registers
    // across the stores below instead of being reloaded through the `Vec`s.
    let (grad, r, qkv, z, pattern) = (&mut grad[..], &mut r[..], &mut qkv[..], &mut z[..], &mut pattern[..]);
    let (mid, post, dact) = (&mut mid[..], &mut post[..], &mut dact[..]);
    let (dr, dqkv, dz, ds, dpre, dp) =
        (&mut dr[..], &mut dqkv[..], &mut dz[..], &mut ds[..], &mut dpre[..], &mut dp[..]);
    let ops = Ops::<FMA>;

    // ---- forward: embedding
    for tt in 0..t {
        for j in 0..d {
            let bias = p[lay.b_e.start + j] + lay.w_pos.as_ref().map_or(F::zero(), |wp| p[wp.start + tt * d + j]);
            let mut x = [bias; LANES];
            for c in 0..D_IN {
                ops.axpy(&mut x, &s[tt * D_IN + c], p[lay.w_e.start + c * d + j]);
            }
            r[tt * d + j] = x;
        }
    }
    // ---- forward: layers
    for ((l, pl), bl) in packed.iter().enumerate().zip(&lay.blocks) {
        let (r_in, r_out) = r[l * t * d..(l + 2) * t * d].split_at_mut(t * d);
        let (o, o3) = (l * t * hk, l * t * w3);
        // q | k | v = r W
        project::<F, FMA, B>(ops, r_in, d, &pl.qkv, &mut qkv[o3..o3 + t * w3], false);
        let (qkv, layer_z) = (&*qkv, &mut z[o..o + t * hk]);
        for hh in 0..h {
            // q (m = 0), k (1) or v (2) of head hh
            let rows = |m: usize| Rows { data: &qkv[o3..o3 + t * w3], start: m * hk + hh * kd, stride: w3 };
            let pattern = &mut pattern[(l * h + hh) * t * t..][..t * t];
            let mut z_head = RowsMut { data: &mut *layer_z, start: hh * kd, stride: hk };
            attention::forward::<F, FMA, B>(ops, head, (rows(0), rows(1), rows(2)), pattern, &mut z_head);
        }
        let Some(mlp) = &bl.mlp else {
            // r' = r + z W_O
            r_out.copy_from_slice(r_in);
            project::<F, FMA, B>(ops, &z[o..o + t * hk], hk, &pl.o, r_out, true);
            continue;
        };
        // mid = r + z W_O
        let (mid, post, dact) =
            (&mut mid[l * t * d..][..t * d], &mut post[l * t * m..][..t * m], &mut dact[l * t * m..][..t * m]);
        mid.copy_from_slice(r_in);
        project::<F, FMA, B>(ops, &z[o..o + t * hk], hk, &pl.o, mid, true);
        // pre = mid W_in + b_in (in `post`, then replaced by act(pre); act'(pre) in `dact`),
        // the bias added in the activation's pass: one pass less over memory seen for the first time
        project::<F, FMA, B>(ops, mid, d, &pl.w_in, post, false);
        for (row, d_row) in post.chunks_exact_mut(m).zip(dact.chunks_exact_mut(m)) {
            for ((x, dx), b) in row.iter_mut().zip(d_row).zip(&p[mlp.b_in.clone()]) {
                (*x, *dx) = ops.activation(cfg.act, &lanewise(*x, |v| v + *b));
            }
        }
        // r' = mid + post W_out + b_out
        for (row, mid_row) in r_out.chunks_exact_mut(d).zip(mid.chunks_exact(d)) {
            for ((x, a), b) in row.iter_mut().zip(mid_row).zip(&p[mlp.b_out.clone()]) {
                *x = lanewise(*a, |v| v + *b);
            }
        }
        project::<F, FMA, B>(ops, post, m, &pl.w_out, r_out, true);
    }
    // ---- unembed, loss and its gradient d pred (kept per token in `dp`)
    let r_last = &r[cfg.n_layers * t * d..];
    let scored = cfg.scored_positions();
    for tt in 0..t {
        for c in 0..D_IN {
            let mut e = zero;
            if scored.contains(&tt) {
                let mut pred = [p[lay.b_u.start + c]; LANES];
                for j in 0..d {
                    ops.axpy(&mut pred, &r_last[tt * d + j], p[lay.w_u.start + j * D_IN + c]);
                }
                for lane in 0..LANES {
                    let err = pred[lane] - y[tt * D_IN + c][lane];
                    loss[lane] += if gain[lane] == F::zero() { F::zero() } else { err * err };
                    e[lane] = gain[lane] * err;
                }
            }
            dp[tt * D_IN + c] = e;
        }
    }
    // Gradient sums run over tokens in registers, then over lanes, one store per weight.
    column_sums(grad, lay.b_u.start, dp, D_IN);
    for c in 0..D_IN {
        for j in 0..d {
            let x = ops.dot_ll(zero, t, |tt| (&r_last[tt * d + j], &dp[tt * D_IN + c]));
            add_lane_sum(grad, lay.w_u.start + j * D_IN + c, x);
        }
    }
    for tt in 0..t {
        for j in 0..d {
            let mut x = zero;
            for c in 0..D_IN {
                ops.axpy(&mut x, &dp[tt * D_IN + c], p[lay.w_u.start + j * D_IN + c]);
            }
            dr[tt * d + j] = x;
        }
    }
    // ---- backward through the layers, last first
    for ((l, bl), pl) in lay.blocks.iter().enumerate().zip(packed).rev() {
        let r_in = &r[l * t * d..(l + 1) * t * d];
        let (o, o3) = (l * t * hk, l * t * w3);
        if let Some(mlp) = &bl.mlp {
            // dr enters as d r', leaves as d mid (the residual passes it, the MLP adds to it)
            let (mid, post, dact) =
                (&mid[l * t * d..][..t * d], &post[l * t * m..][..t * m], &dact[l * t * m..][..t * m]);
            column_sums(grad, mlp.b_out.start, dr, d);
            // dW_out[u, j] += Σ_t post[t, u] dr[t, j]
            outer_sum::<F, FMA, B>(ops, grad, (post, m), (dr, d), (d, |j| mlp.w_out.start + j));
            // dpre = (dr W_outᵀ) ⊙ act'(pre)
            project::<F, FMA, B>(ops, dr, d, &pl.w_out_t, dpre, false);
            for (x, s) in dpre.iter_mut().zip(dact) {
                *x = zip_lanes(*x, *s, |a, b| a * b);
            }
            column_sums(grad, mlp.b_in.start, dpre, m);
            // dW_in[j, u] += Σ_t mid[t, j] dpre[t, u]
            outer_sum::<F, FMA, B>(ops, grad, (mid, d), (dpre, m), (m, |u| mlp.w_in.start + u));
            // dr += dpre W_inᵀ
            project::<F, FMA, B>(ops, dpre, m, &pl.w_in_t, dr, true);
        }
        // W_O: dW_O[e, j] += Σ_t z[t, e] dr[t, j];  dz[t, e] = Σ_j dr[t, j] W_O[e, j]
        outer_sum::<F, FMA, B>(ops, grad, (&z[o..o + t * hk], hk), (dr, d), (d, |j| bl.w_o.start + j));
        project::<F, FMA, B>(ops, dr, d, &pl.o_t, dz, false);
        let layer_qkv = &qkv[o3..o3 + t * w3];
        for hh in 0..h {
            // q (m = 0), k (1), v (2) of head hh, and the gradients of its output
            let rows = |m: usize| Rows { data: layer_qkv, start: m * hk + hh * kd, stride: w3 };
            let dz_head = Rows { data: &*dz, start: hh * kd, stride: hk };
            let pattern = &pattern[(l * h + hh) * t * t..][..t * t];
            // dq, dk, dv of head hh (overwritten): entries 0, E and 2E of its rows
            let mut grads = RowsMut { data: &mut *dqkv, start: hh * kd, stride: w3 };
            let inputs = (rows(0), rows(1), rows(2), dz_head);
            attention::backward::<F, FMA, B>(ops, head, inputs, pattern, ds, (&mut grads, [0, hk, 2 * hk]));
        }
        // W_Q, W_K, W_V: dW[h, d, k] += Σ_t r[t, d] dx[t, h, k], rows K apart
        let col = |c: usize| qkv_column(bl, (d, kd, hk), c);
        outer_sum::<F, FMA, B>(ops, grad, (r_in, d), (dqkv, w3), (kd, col));
        // dr += (dq | dk | dv) (W_Q | W_K | W_V)ᵀ
        project::<F, FMA, B>(ops, dqkv, w3, &pl.qkv_t, dr, true);
    }
    // ---- backward through the embedding
    column_sums(grad, lay.b_e.start, dr, d);
    if let Some(wp) = &lay.w_pos {
        for (i, x) in wp.clone().zip(&*dr) {
            add_lane_sum(grad, i, *x); // W_pos [T, D] as dr
        }
    }
    for j in 0..d {
        for c in 0..D_IN {
            let x = ops.dot_ll(zero, t, |tt| (&s[tt * D_IN + c], &dr[tt * d + j]));
            add_lane_sum(grad, lay.w_e.start + c * d + j, x);
        }
    }
}

/// `grad[col(j) + i·stride] += Σ_t Σ_lanes a[t, i] · b[t, j]` for every column `i`
/// of `a` and `j` of `b`, two row-major token tables whose rows are `a_width`
/// and `b_width` lanes wide: a weight gradient whose row `i` starts `stride`
/// after row `i − 1` and whose column `j` sits at `col(j)` (for `[n_a, n_b]`
/// at `start`: `stride = n_b`, `col(j) = start + j`; `col` is called once
/// per block and must be contiguous within it), in `B × B` blocks
/// ([`block_outer`]). Each block of `a`'s columns is read once for every
/// block of `b`'s (at this model's widths from L2, not L1: rows a multiple
/// of 2 KiB apart share a few L1 sets; BENCHMARKS.md).
#[inline(always)]
fn outer_sum<F: Real, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    grad: &mut [F],
    (a, a_width): (&[Lane<F>], usize),
    (b, b_width): (&[Lane<F>], usize),
    (stride, col): (usize, impl Fn(usize) -> usize),
) {
    for i0 in (0..a_width).step_by(B) {
        for j0 in (0..b_width).step_by(B) {
            let first = col(j0) + i0 * stride;
            let at = |u: usize, v: usize| first + u * stride + v;
            block_outer::<F, FMA, B>(
                ops,
                grad,
                at,
                a.chunks_exact(a_width).map(|row| &row[i0..i0 + B]),
                b.chunks_exact(b_width).map(|row| &row[j0..j0 + B]),
            );
        }
    }
}

/// `grad[start + j] += Σ_t Σ_lanes x[t, j]` for every column `j` of the
/// row-major token table `x` (rows of `width` lanes): a bias gradient.
fn column_sums<F: Real>(grad: &mut [F], start: usize, x: &[Lane<F>], width: usize) {
    for j in 0..width {
        let mut sum = [F::zero(); LANES];
        for row in x.chunks_exact(width) {
            sum = zip_lanes(sum, row[j], |a, b| a + b);
        }
        add_lane_sum(grad, start + j, sum);
    }
}

/// `grad[i] += Σ_lanes x`.
#[inline(always)]
fn add_lane_sum<F: Real>(grad: &mut [F], i: usize, mut x: Lane<F>) {
    grad[i] += fold(&mut x);
}

/// `grad[at(u, v)] += Σ_t Σ_lanes a_t[u] · b_t[v]` for a `B × B` block of
/// weights, over the token rows `a_t`, `b_t` (`B` lanes each): the `B²` sums
/// stay in registers, each loaded lane serves `B` of them, and their lanes
/// are summed together at the end ([`lane_sums`]).
#[inline(always)]
fn block_outer<'a, F: Real + 'a, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    grad: &mut [F],
    at: impl Fn(usize, usize) -> usize,
    a: impl Iterator<Item = &'a [Lane<F>]>,
    b: impl Iterator<Item = &'a [Lane<F>]>,
) {
    let mut x = [[[F::zero(); LANES]; B]; B];
    for (a_t, b_t) in a.zip(b) {
        let av: [Lane<F>; B] = std::array::from_fn(|u| a_t[u]);
        let bv: [Lane<F>; B] = std::array::from_fn(|v| b_t[v]);
        for (u, row) in x.iter_mut().enumerate() {
            for (v, xv) in row.iter_mut().enumerate() {
                ops.fma(xv, &av[u], &bv[v]);
            }
        }
    }
    let mut sums = [[F::zero(); B]; B];
    lane_sums(x.as_flattened(), sums.as_flattened_mut());
    for (u, row) in sums.iter().enumerate() {
        for (v, s) in row.iter().enumerate() {
            grad[at(u, v)] += *s;
        }
    }
}
