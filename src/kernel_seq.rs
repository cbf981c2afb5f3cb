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
//! dr [T, D]   dq, dk, dv, dz [T, H, K]   (reused across layers)
//! ```

use std::ops::Range;

use crate::kernel::{Batch, ChunkOutput, LANES, Lane, axpy, fma_lanes, run_chunks};
use crate::model::{D_IN, Model};
use crate::real::Real;

/// Sequences per parallel work item (fixed, so results do not depend on threads).
pub const CHUNK_SEQ: usize = 32;

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
    dpat: Vec<Lane<F>>,    // [T]
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
            dpat: z(t),
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

/// One chunk, dispatched to the widest vector unit the CPU has.
fn chunk<F: Real>(model: &Model<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { chunk_avx2(model, batch, span, g, w) };
    }
    chunk_portable(model, batch, span, g, w);
}

/// [`chunk_portable`] compiled for AVX2 (no FMA: bit-identical results).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn chunk_avx2<F: Real>(model: &Model<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>) {
    chunk_portable(model, batch, span, g, w);
}

#[inline(always)]
fn chunk_portable<F: Real>(model: &Model<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>) {
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
        group(model, &s, &y, &gain, &mut loss, w);
    }
    (w.s, w.y) = (s, y);
    w.loss = loss.iter().map(|l| l.f64()).sum();
    for (gr, a) in w.grad.iter_mut().zip(&w.acc) {
        *gr = a.iter().fold(F::zero(), |x, y| x + *y);
    }
}

/// Forward, loss and backward for one group of `LANES` sequences.
#[inline(always)]
fn group<F: Real>(model: &Model<F>, s: &[Lane<F>], y: &[Lane<F>], gain: &Lane<F>, loss: &mut Lane<F>, w: &mut Work<F>) {
    let (cfg, p, lay) = (&model.cfg, &model.params[..], &model.layout);
    let (t, d, h, kd) = (cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head);
    let hk = h * kd;
    let scale = F::of(cfg.scale());
    let zero = [F::zero(); LANES];
    let keys = |i: usize| if cfg.causal { i + 1 } else { t };
    let Work { acc, r, q, k, v, z, pattern, dr, dq, dk, dv, dz, dpat, .. } = w;

    // ---- forward: embedding
    for tt in 0..t {
        for j in 0..d {
            let bias = p[lay.b_e.start + j] + lay.w_pos.as_ref().map_or(F::zero(), |wp| p[wp.start + tt * d + j]);
            let mut x = [bias; LANES];
            for c in 0..D_IN {
                axpy(&mut x, &s[tt * D_IN + c], p[lay.w_e.start + c * d + j]);
            }
            r[tt * d + j] = x;
        }
    }
    // ---- forward: attention layers
    for (l, bl) in lay.blocks.iter().enumerate() {
        let (r_in, r_out) = r[l * t * d..(l + 2) * t * d].split_at_mut(t * d);
        let o = l * t * hk;
        for tt in 0..t {
            for (w_range, out) in [(&bl.w_q, &mut *q), (&bl.w_k, &mut *k), (&bl.w_v, &mut *v)] {
                for e in 0..hk {
                    let (hh, kk) = (e / kd, e % kd);
                    let mut x = zero;
                    for dd in 0..d {
                        axpy(&mut x, &r_in[tt * d + dd], p[w_range.start + (hh * d + dd) * kd + kk]);
                    }
                    out[o + tt * hk + e] = x;
                }
            }
        }
        for hh in 0..h {
            for i in 0..t {
                let row = ((l * h + hh) * t + i) * t;
                let mut max = [F::neg_infinity(); LANES];
                for j in 0..keys(i) {
                    let mut sc = zero;
                    for kk in 0..kd {
                        fma_lanes(&mut sc, &q[o + i * hk + hh * kd + kk], &k[o + j * hk + hh * kd + kk]);
                    }
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
                    for lane in 0..LANES {
                        let e = (pattern[row + j][lane] - max[lane]).exp();
                        pattern[row + j][lane] = e;
                        total[lane] += e;
                    }
                }
                for j in 0..keys(i) {
                    for lane in 0..LANES {
                        pattern[row + j][lane] /= total[lane];
                    }
                }
                for kk in 0..kd {
                    let mut x = zero;
                    for j in 0..keys(i) {
                        fma_lanes(&mut x, &pattern[row + j], &v[o + j * hk + hh * kd + kk]);
                    }
                    z[o + i * hk + hh * kd + kk] = x;
                }
            }
        }
        for tt in 0..t {
            for j in 0..d {
                let mut x = r_in[tt * d + j];
                for e in 0..hk {
                    axpy(&mut x, &z[o + tt * hk + e], p[bl.w_o.start + e * d + j]);
                }
                r_out[tt * d + j] = x;
            }
        }
    }
    // ---- unembed, loss and its gradient
    let r_last = &r[cfg.n_layers * t * d..];
    let scored = cfg.scored_positions();
    for tt in 0..t {
        let mut dp = [zero; D_IN];
        if scored.contains(&tt) {
            for c in 0..D_IN {
                let mut pred = [p[lay.b_u.start + c]; LANES];
                for j in 0..d {
                    axpy(&mut pred, &r_last[tt * d + j], p[lay.w_u.start + j * D_IN + c]);
                }
                for lane in 0..LANES {
                    let e = pred[lane] - y[tt * D_IN + c][lane];
                    loss[lane] += if gain[lane] == F::zero() { F::zero() } else { e * e };
                    dp[c][lane] = gain[lane] * e;
                }
                for lane in 0..LANES {
                    acc[lay.b_u.start + c][lane] += dp[c][lane];
                }
                for j in 0..d {
                    fma_lanes(&mut acc[lay.w_u.start + j * D_IN + c], &r_last[tt * d + j], &dp[c]);
                }
            }
        }
        for j in 0..d {
            let mut x = zero;
            for c in 0..D_IN {
                axpy(&mut x, &dp[c], p[lay.w_u.start + j * D_IN + c]);
            }
            dr[tt * d + j] = x;
        }
    }
    // ---- backward through the attention layers, last first
    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        let r_in = &r[l * t * d..(l + 1) * t * d];
        let o = l * t * hk;
        for tt in 0..t {
            for e in 0..hk {
                let mut x = zero;
                for j in 0..d {
                    fma_lanes(&mut acc[bl.w_o.start + e * d + j], &z[o + tt * hk + e], &dr[tt * d + j]);
                    axpy(&mut x, &dr[tt * d + j], p[bl.w_o.start + e * d + j]);
                }
                dz[tt * hk + e] = x;
            }
        }
        for buf in [&mut *dq, &mut *dk, &mut *dv] {
            buf.iter_mut().for_each(|x| *x = zero);
        }
        for hh in 0..h {
            for i in 0..t {
                let row = ((l * h + hh) * t + i) * t;
                let mut dot = zero;
                for j in 0..keys(i) {
                    let mut x = zero;
                    for kk in 0..kd {
                        let (zi, vj) = (i * hk + hh * kd + kk, j * hk + hh * kd + kk);
                        fma_lanes(&mut x, &dz[zi], &v[o + vj]);
                        fma_lanes(&mut dv[vj], &pattern[row + j], &dz[zi]);
                    }
                    dpat[j] = x;
                    fma_lanes(&mut dot, &pattern[row + j], &x);
                }
                for j in 0..keys(i) {
                    let mut ds = zero;
                    for lane in 0..LANES {
                        ds[lane] = pattern[row + j][lane] * (dpat[j][lane] - dot[lane]) * scale;
                    }
                    for kk in 0..kd {
                        let (qi, kj) = (i * hk + hh * kd + kk, j * hk + hh * kd + kk);
                        fma_lanes(&mut dq[qi], &ds, &k[o + kj]);
                        fma_lanes(&mut dk[kj], &ds, &q[o + qi]);
                    }
                }
            }
        }
        for (w_range, dx) in [(&bl.w_q, &*dq), (&bl.w_k, &*dk), (&bl.w_v, &*dv)] {
            for tt in 0..t {
                for hh in 0..h {
                    for dd in 0..d {
                        let row = w_range.start + (hh * d + dd) * kd;
                        let mut x = dr[tt * d + dd];
                        for kk in 0..kd {
                            let g = &dx[tt * hk + hh * kd + kk];
                            fma_lanes(&mut acc[row + kk], &r_in[tt * d + dd], g);
                            axpy(&mut x, g, p[row + kk]);
                        }
                        dr[tt * d + dd] = x;
                    }
                }
            }
        }
    }
    // ---- backward through the embedding
    for tt in 0..t {
        for j in 0..d {
            let g = dr[tt * d + j];
            for lane in 0..LANES {
                acc[lay.b_e.start + j][lane] += g[lane];
            }
            if let Some(wp) = &lay.w_pos {
                for lane in 0..LANES {
                    acc[wp.start + tt * d + j][lane] += g[lane];
                }
            }
            for c in 0..D_IN {
                fma_lanes(&mut acc[lay.w_e.start + c * d + j], &s[tt * D_IN + c], &g);
            }
        }
    }
}
