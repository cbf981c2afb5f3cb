//! The fast path for models with context T > 1: the same lane layout as
//! [`crate::kernel`] (samples `LANES` at a time, structure of arrays, fixed
//! chunks reduced in order), here with the full attention of
//! [`crate::model`]. It computes the loss and gradient of
//! `Model::forward` + `mse_loss` + `Model::backward` (tested to rounding in
//! `tests/kernel.rs`).
//!
//! # Shapes (per group of `LANES` sequences, every entry a lane vector)
//! ```text
//! r  [(L+1), T, D]   residual before each layer and after the last
//! q, k, v, z  [L, T, H, K]      pattern  [L, H, T, T]
//! dr [T, D]   dq, dk, dv, dz [T, H, K]   ds [T, T]   (reused across layers and heads)
//! ```

use std::ops::Range;

use crate::kernel::{Batch, ChunkOutput, LANES, Lane, Ops, lane_dispatch, run_chunks, sum_lanes};
use crate::model::{D_IN, Model};
use crate::real::Real;

/// Sequences per parallel work item (fixed, so results do not depend on threads).
pub const CHUNK_SEQ: usize = 64;

#[derive(Clone, Debug)]
struct Work<F> {
    acc: Vec<Lane<F>>,     // [P]
    r: Vec<Lane<F>>,       // [(L+1)·T·D]
    q: Vec<Lane<F>>,       // [L·T·H·K]
    k: Vec<Lane<F>>,       // [L·T·H·K]
    v: Vec<Lane<F>>,       // [L·T·H·K]
    z: Vec<Lane<F>>,       // [L·T·H·K]
    pattern: Vec<Lane<F>>, // [L·H·T·T]
    dr: Vec<Lane<F>>,      // [T·D]
    dq: Vec<Lane<F>>,      // [T·H·K]
    dk: Vec<Lane<F>>,      // [T·H·K]
    dv: Vec<Lane<F>>,      // [T·H·K]
    dz: Vec<Lane<F>>,      // [T·H·K]
    ds: Vec<Lane<F>>,      // [T·T]  d scores of one head
    dp: Vec<Lane<F>>,      // [T·2]  d pred
    s: Vec<Lane<F>>,       // [T·2]  one group's inputs
    y: Vec<Lane<F>>,       // [T·2]  one group's targets
    grad: Vec<F>,          // [P]
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

/// The lane kernel for context-T models with its buffers for one batch size.
#[derive(Clone, Debug)]
pub struct SeqKernel<F> {
    work: Vec<Work<F>>, // one per chunk
}

impl<F: Real> SeqKernel<F> {
    /// Buffers for batches of up to `batch` sequences of `model`.
    pub fn new(model: &Model<F>, batch: usize) -> Self {
        let c = &model.cfg;
        let (t, d, hk, l) = (c.n_ctx, c.d_model, c.n_heads * c.d_head, c.n_layers);
        let z = |n: usize| vec![[F::zero(); LANES]; n];
        let work = Work {
            acc: z(model.params.len()),
            r: z((l + 1) * t * d),
            q: z(l * t * hk),
            k: z(l * t * hk),
            v: z(l * t * hk),
            z: z(l * t * hk),
            pattern: z(l * c.n_heads * t * t),
            dr: z(t * d),
            dq: z(t * hk),
            dk: z(t * hk),
            dv: z(t * hk),
            dz: z(t * hk),
            ds: z(t * t),
            dp: z(t * D_IN),
            s: z(t * D_IN),
            y: z(t * D_IN),
            grad: vec![F::zero(); model.params.len()],
            loss: 0.0,
        };
        SeqKernel { work: vec![work; batch.div_ceil(CHUNK_SEQ).max(1)] }
    }

    /// Mean over scored tokens of `‖pred − target‖²` and its gradient in
    /// `grads` `[P]` (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        let n = batch.len();
        let count = n * model.cfg.scored_positions().len();
        let g = F::of(2.0 / count as f64);
        let work = &mut self.work[..n.div_ceil(CHUNK_SEQ)];
        let loss =
            run_chunks(work, grads, |i, w| chunk(model, batch, i * CHUNK_SEQ..((i + 1) * CHUNK_SEQ).min(n), g, w));
        loss / count as f64
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
    w.acc.iter_mut().for_each(|a| *a = zero);
    let mut loss = zero;
    let (mut s, mut y) = (std::mem::take(&mut w.s), std::mem::take(&mut w.y));
    for start in span.clone().step_by(LANES) {
        let live = (span.end - start).min(LANES);
        let mut gain = zero;
        for i in 0..LANES {
            // Padding lanes repeat the last sequence with zero weight.
            let (input, target) = batch.get(start + i.min(live - 1));
            for (e, (x, t)) in input.iter().zip(target).enumerate() {
                s[e][i] = *x;
                y[e][i] = *t;
            }
            gain[i] = if i < live { g } else { F::zero() };
        }
        // Blocks of four outputs share each loaded operand when the widths allow.
        if model.cfg.d_model.is_multiple_of(4) && model.cfg.d_head.is_multiple_of(4) {
            group::<F, FMA, 4>(model, &s, &y, &gain, &mut loss, w);
        } else {
            group::<F, FMA, 1>(model, &s, &y, &gain, &mut loss, w);
        }
    }
    (w.s, w.y) = (s, y);
    w.loss = sum_lanes(&loss, &w.acc, &mut w.grad);
}

/// Forward, loss and backward for one group of `LANES` sequences.
#[inline(always)]
fn group<F: Real, const FMA: bool, const B: usize>(
    model: &Model<F>,
    s: &[Lane<F>],
    y: &[Lane<F>],
    gain: &Lane<F>,
    loss: &mut Lane<F>,
    w: &mut Work<F>,
) {
    let (cfg, p, lay) = (&model.cfg, &model.params[..], &model.layout);
    let (t, d, h, kd) = (cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head);
    let hk = h * kd;
    let scale = F::of(cfg.scale());
    let zero = [F::zero(); LANES];
    let keys = |i: usize| if cfg.causal { i + 1 } else { t };
    let Work { acc, r, q, k, v, z, pattern, dr, dq, dk, dv, dz, ds, dp, .. } = w;
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
    // ---- forward: attention layers
    for (l, bl) in lay.blocks.iter().enumerate() {
        let (r_in, r_out) = r[l * t * d..(l + 2) * t * d].split_at_mut(t * d);
        let o = l * t * hk;
        // q, k, v = r W: B outputs at a time share each loaded residual lane.
        for tt in 0..t {
            for (w_range, out) in [(&bl.w_q, &mut *q), (&bl.w_k, &mut *k), (&bl.w_v, &mut *v)] {
                for e0 in (0..hk).step_by(B) {
                    let (hh, kk0) = (e0 / kd, e0 % kd);
                    let mut x = [zero; B];
                    for dd in 0..d {
                        let (a, row) = (r_in[tt * d + dd], w_range.start + (hh * d + dd) * kd + kk0);
                        for (u, xu) in x.iter_mut().enumerate() {
                            ops.axpy(xu, &a, p[row + u]);
                        }
                    }
                    out[o + tt * hk + e0..][..B].copy_from_slice(&x);
                }
            }
        }
        for hh in 0..h {
            for i in 0..t {
                let row = ((l * h + hh) * t + i) * t;
                let mut max = [F::neg_infinity(); LANES];
                for j in 0..keys(i) {
                    let (qi, kj) = (o + i * hk + hh * kd, o + j * hk + hh * kd);
                    let mut sc = ops.dot_ll(zero, kd, |kk| (&q[qi + kk], &k[kj + kk]));
                    for x in &mut sc {
                        *x *= scale;
                    }
                    for lane in 0..LANES {
                        max[lane] = max[lane].max(sc[lane]);
                    }
                    pattern[row + j] = sc;
                }
                let mut total = zero;
                for j in 0..keys(i) {
                    let mut shifted = pattern[row + j];
                    for lane in 0..LANES {
                        shifted[lane] -= max[lane];
                    }
                    let e = ops.exp_nonpositive(&shifted);
                    for lane in 0..LANES {
                        total[lane] += e[lane];
                    }
                    pattern[row + j] = e;
                }
                for j in 0..keys(i) {
                    for lane in 0..LANES {
                        pattern[row + j][lane] /= total[lane];
                    }
                }
                for kk in 0..kd {
                    let vk = o + hh * kd + kk;
                    z[o + i * hk + hh * kd + kk] = ops.dot_ll(zero, keys(i), |j| (&pattern[row + j], &v[vk + j * hk]));
                }
            }
        }
        for tt in 0..t {
            for j0 in (0..d).step_by(B) {
                let mut x = [zero; B];
                x.copy_from_slice(&r_in[tt * d + j0..][..B]);
                for e in 0..hk {
                    let (a, row) = (z[o + tt * hk + e], bl.w_o.start + e * d + j0);
                    for (u, xu) in x.iter_mut().enumerate() {
                        ops.axpy(xu, &a, p[row + u]);
                    }
                }
                r_out[tt * d + j0..][..B].copy_from_slice(&x);
            }
        }
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
    // Gradient sums run over tokens in registers, one store per weight.
    for c in 0..D_IN {
        let mut x = acc[lay.b_u.start + c];
        for tt in 0..t {
            for lane in 0..LANES {
                x[lane] += dp[tt * D_IN + c][lane];
            }
        }
        acc[lay.b_u.start + c] = x;
        for j in 0..d {
            let a = lay.w_u.start + j * D_IN + c;
            acc[a] = ops.dot_ll(acc[a], t, |tt| (&r_last[tt * d + j], &dp[tt * D_IN + c]));
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
    // ---- backward through the attention layers, last first
    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        let r_in = &r[l * t * d..(l + 1) * t * d];
        let o = l * t * hk;
        // W_O: dW_O[e, j] += Σ_t z[t, e] dr[t, j];  dz[t, e] = Σ_j dr[t, j] W_O[e, j]
        for e0 in (0..hk).step_by(B) {
            for j0 in (0..d).step_by(B) {
                block_outer::<F, FMA, B>(
                    ops,
                    acc,
                    |u, v| bl.w_o.start + (e0 + u) * d + j0 + v,
                    t,
                    |tt, u| &z[o + tt * hk + e0 + u],
                    |tt, v| &dr[tt * d + j0 + v],
                );
            }
        }
        for tt in 0..t {
            for e0 in (0..hk).step_by(B) {
                let mut x = [zero; B];
                for j in 0..d {
                    let a = dr[tt * d + j];
                    for (u, xu) in x.iter_mut().enumerate() {
                        ops.axpy(xu, &a, p[bl.w_o.start + (e0 + u) * d + j]);
                    }
                }
                dz[tt * hk + e0..][..B].copy_from_slice(&x);
            }
        }
        for hh in 0..h {
            let at = |tok: usize, kk: usize| tok * hk + hh * kd + kk;
            let prow = |i: usize| ((l * h + hh) * t + i) * t;
            // d scores[i, j] = P[i, j] (dz[i]·v[j] − Σ_m P[i, m] dz[i]·v[m]) · scale
            for i in 0..t {
                let mut dot = zero;
                for j in 0..keys(i) {
                    let x = ops.dot_ll(zero, kd, |kk| (&dz[at(i, kk)], &v[o + at(j, kk)]));
                    ds[i * t + j] = x;
                    ops.fma(&mut dot, &pattern[prow(i) + j], &x);
                }
                for j in 0..keys(i) {
                    let pij = pattern[prow(i) + j];
                    let dpij = ds[i * t + j];
                    for lane in 0..LANES {
                        ds[i * t + j][lane] = pij[lane] * (dpij[lane] - dot[lane]) * scale;
                    }
                }
            }
            let queries = |j: usize| if cfg.causal { j..t } else { 0..t };
            for kk in 0..kd {
                for i in 0..t {
                    // dq[i] = Σ_j ds[i, j] k[j]
                    dq[at(i, kk)] = ops.dot_ll(zero, keys(i), |j| (&ds[i * t + j], &k[o + at(j, kk)]));
                }
                for j in 0..t {
                    // dk[j] = Σ_i ds[i, j] q[i];  dv[j] = Σ_i P[i, j] dz[i]
                    let first = queries(j).start;
                    let n = t - first;
                    dk[at(j, kk)] = ops.dot_ll(zero, n, |u| (&ds[(first + u) * t + j], &q[o + at(first + u, kk)]));
                    dv[at(j, kk)] = ops.dot_ll(zero, n, |u| (&pattern[prow(first + u) + j], &dz[at(first + u, kk)]));
                }
            }
        }
        // W_Q, W_K, W_V: dW[h, d, k] += Σ_t r[t, d] dx[t, h, k]
        for (w_range, dx) in [(&bl.w_q, &*dq), (&bl.w_k, &*dk), (&bl.w_v, &*dv)] {
            for hh in 0..h {
                for dd0 in (0..d).step_by(B) {
                    for kk0 in (0..kd).step_by(B) {
                        let at = |u: usize, v: usize| w_range.start + (hh * d + dd0 + u) * kd + kk0 + v;
                        let g = hh * kd + kk0;
                        block_outer::<F, FMA, B>(
                            ops,
                            acc,
                            at,
                            t,
                            |tt, u| &r_in[tt * d + dd0 + u],
                            |tt, v| &dx[tt * hk + g + v],
                        );
                    }
                }
            }
        }
        // dr[t, d] += Σ_{h,k} (dq W_Q + dk W_K + dv W_V)[t, h, k, d]
        for tt in 0..t {
            for dd0 in (0..d).step_by(B) {
                let mut x = [zero; B];
                x.copy_from_slice(&dr[tt * d + dd0..][..B]);
                for (w_range, dx) in [(&bl.w_q, &*dq), (&bl.w_k, &*dk), (&bl.w_v, &*dv)] {
                    for hh in 0..h {
                        let row = w_range.start + (hh * d + dd0) * kd;
                        for kk in 0..kd {
                            let a = dx[tt * hk + hh * kd + kk];
                            for (u, xu) in x.iter_mut().enumerate() {
                                ops.axpy(xu, &a, p[row + u * kd + kk]);
                            }
                        }
                    }
                }
                dr[tt * d + dd0..][..B].copy_from_slice(&x);
            }
        }
    }
    // ---- backward through the embedding
    for j in 0..d {
        let mut xb = acc[lay.b_e.start + j];
        for tt in 0..t {
            let g = dr[tt * d + j];
            for lane in 0..LANES {
                xb[lane] += g[lane];
            }
            if let Some(wp) = &lay.w_pos {
                for lane in 0..LANES {
                    acc[wp.start + tt * d + j][lane] += g[lane];
                }
            }
        }
        acc[lay.b_e.start + j] = xb;
        for c in 0..D_IN {
            let a = lay.w_e.start + c * d + j;
            acc[a] = ops.dot_ll(acc[a], t, |tt| (&s[tt * D_IN + c], &dr[tt * d + j]));
        }
    }
}

/// `acc[at(u, v)] += Σ_{i<n} a(i, u) · b(i, v)` for a `B × B` block of
/// weights: the `B²` sums stay in registers and each loaded lane serves `B`
/// of them.
#[inline(always)]
fn block_outer<'a, F: Real + 'a, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    acc: &mut [Lane<F>],
    at: impl Fn(usize, usize) -> usize,
    n: usize,
    a: impl Fn(usize, usize) -> &'a Lane<F>,
    b: impl Fn(usize, usize) -> &'a Lane<F>,
) {
    let mut x = [[[F::zero(); LANES]; B]; B];
    for (u, row) in x.iter_mut().enumerate() {
        for (v, xv) in row.iter_mut().enumerate() {
            *xv = acc[at(u, v)];
        }
    }
    for i in 0..n {
        let av: [Lane<F>; B] = std::array::from_fn(|u| *a(i, u));
        let bv: [Lane<F>; B] = std::array::from_fn(|v| *b(i, v));
        for (u, row) in x.iter_mut().enumerate() {
            for (v, xv) in row.iter_mut().enumerate() {
                ops.fma(xv, &av[u], &bv[v]);
            }
        }
    }
    for (u, row) in x.iter().enumerate() {
        for (v, xv) in row.iter().enumerate() {
            acc[at(u, v)] = *xv;
        }
    }
}
