//! A forward pass that starts part-way through the model, for activation
//! patching: the activations before the start come from a cached pass, only
//! what follows is recomputed. And the reference it is checked against: a
//! full forward pass in which any named activation may be overwritten the
//! moment it is computed.
//!
//! # Shapes
//! As in [`crate::model::transformer`] (B batch, T context, D d_model,
//! H heads, K d_head, M d_mlp, I = 2). The arithmetic is the same as
//! [`Model::forward`], operation for operation, so a resumed pass of an
//! unchanged cache gives the same bits (`tests/suite/patch.rs` checks it).

use crate::model::{Activations, BlockActivations, D_IN, MlpLayout, Model, ModelConfig};
use crate::util::real::Real;

/// Where a resumed pass starts; it reads [`Start::inputs`] and overwrites
/// every activation after them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From `blocks.{l}.resid_pre`: layer `l` and everything after it.
    Layer(usize),
    /// From `blocks.{l}.attn.result` (and `resid_pre`): the heads' sum into
    /// the residual, the MLP, the later layers.
    HeadSum(usize),
    /// From `blocks.{l}.resid_mid` and `blocks.{l}.mlp_out`: their sum, the later layers.
    MlpSum(usize),
    /// From `blocks.{L−1}.resid_post`: the unembedding alone.
    Unembed,
}

impl Start {
    /// The cache names a pass resumed here reads (see [`Activations::names`]).
    pub fn inputs(self, cfg: &ModelConfig) -> Vec<String> {
        match self {
            Start::Layer(l) => vec![format!("blocks.{l}.resid_pre")],
            Start::HeadSum(l) => vec![format!("blocks.{l}.resid_pre"), format!("blocks.{l}.attn.result")],
            Start::MlpSum(l) => vec![format!("blocks.{l}.resid_mid"), format!("blocks.{l}.mlp_out")],
            Start::Unembed => vec![format!("blocks.{}.resid_post", cfg.n_layers - 1)],
        }
    }

    /// The layer and stage (0 from the residual, 1 from the heads' results,
    /// 2 from the MLP output); `(L, 0)` for the unembedding.
    fn layer_stage(self, cfg: &ModelConfig) -> (usize, u8) {
        match self {
            Start::Layer(l) => (l, 0),
            Start::HeadSum(l) => (l, 1),
            Start::MlpSum(l) => (l, 2),
            Start::Unembed => (cfg.n_layers, 0),
        }
    }
}

/// Called with each activation's cache name and its buffer `[B, T, …]` right
/// after it is computed; whatever it writes is what the rest of the pass reads.
pub type Edit<'a, F> = dyn FnMut(&str, &mut [F]) + 'a;

impl<F: Real> Model<F> {
    /// Recomputes everything after `from` from the activations in `acts`
    /// (their first `acts.batch` sequences): only [`Start::inputs`] need to
    /// hold values; the rest is overwritten.
    pub fn resume(&self, acts: &mut Activations<F>, from: Start) {
        self.run_from(acts, from, &mut |_, _| {});
    }

    /// A full forward pass on `input` `[B, T, I]` that hands `edit` each of
    /// `blocks.{l}.resid_pre`, `blocks.{l}.attn.result`, `blocks.{l}.mlp_out`
    /// (MLP blocks) and the last layer's `blocks.{L−1}.resid_post` as soon as
    /// it is computed (the residual between two layers is called
    /// `blocks.{l}.resid_pre`, not `blocks.{l−1}.resid_post`). With an
    /// `edit` that changes nothing it equals [`Model::forward`].
    pub fn forward_edited(&self, input: &[F], acts: &mut Activations<F>, edit: &mut Edit<'_, F>) {
        let cfg = &self.cfg;
        let (n, d) = (input.len() / D_IN, cfg.d_model);
        assert_eq!(n % cfg.n_ctx, 0, "input is not a whole number of sequences");
        assert!(n / cfg.n_ctx <= acts.capacity(cfg), "batch larger than the activation buffers");
        acts.batch = n / cfg.n_ctx;
        let (p, l) = (&self.params, &self.layout);
        let (w_e, b_e) = (&p[l.w_e.clone()], &p[l.b_e.clone()]);
        for (row, si) in acts.embed[..n * d].chunks_exact_mut(d).zip(input.chunks_exact(D_IN)) {
            for j in 0..d {
                row[j] = b_e[j] + si[0] * w_e[j] + si[1] * w_e[d + j];
            }
        }
        let r0 = &mut acts.resid[0][..n * d];
        r0.copy_from_slice(&acts.embed[..n * d]);
        if let Some(w_pos) = &l.w_pos {
            for seq in r0.chunks_exact_mut(cfg.n_ctx * d) {
                seq.iter_mut().zip(&p[w_pos.clone()]).for_each(|(x, w)| *x += *w);
            }
        }
        edit("blocks.0.resid_pre", r0);
        self.run_from(acts, Start::Layer(0), edit);
    }

    /// The layers from `from` on and the unembedding, calling `edit` after
    /// each activation computed here.
    fn run_from(&self, acts: &mut Activations<F>, from: Start, edit: &mut Edit<'_, F>) {
        let cfg = &self.cfg;
        let (n, d, last) = (acts.batch * cfg.n_ctx, cfg.d_model, cfg.n_layers);
        let p = &self.params;
        let (first, stage) = from.layer_stage(cfg);
        for li in first..cfg.n_layers {
            let bl = &self.layout.blocks[li];
            let a = &mut acts.blocks[li];
            let (before, after) = acts.resid.split_at_mut(li + 1);
            let r_in = &mut before[li][..n * d];
            let r_out = &mut after[0][..n * d];
            let stage = if li == first { stage } else { 0 };
            if stage == 0 {
                if li > first {
                    edit(&format!("blocks.{li}.resid_pre"), r_in);
                }
                for (w, out) in [(&bl.w_q, &mut a.q), (&bl.w_k, &mut a.k), (&bl.w_v, &mut a.v)] {
                    head_proj(r_in, &p[w.clone()], n, cfg, out);
                }
                attention(a, acts.batch, cfg);
                head_results(&a.z, &p[bl.w_o.clone()], n, cfg, &mut a.result);
                edit(&format!("blocks.{li}.attn.result"), &mut a.result[..n * cfg.n_heads * d]);
            }
            match &bl.mlp {
                None if stage <= 1 => sum_heads(&a.result, r_in, n, cfg, r_out),
                None => {}
                Some(mlp) => {
                    if stage <= 1 {
                        sum_heads(&a.result, r_in, n, cfg, &mut a.mid);
                        mlp_out(p, mlp, n, cfg, a);
                        edit(&format!("blocks.{li}.mlp_out"), &mut a.mlp_out[..n * d]);
                    }
                    for ((ro, mid), out) in r_out.iter_mut().zip(&a.mid).zip(&a.mlp_out) {
                        *ro = *mid + *out;
                    }
                }
            }
        }
        let r = &mut acts.resid[last][..n * d];
        if from != Start::Unembed {
            edit(&format!("blocks.{}.resid_post", last - 1), r);
        }
        let (w_u, b_u) = (&p[self.layout.w_u.clone()], &p[self.layout.b_u.clone()]);
        for (ri, pi) in r.chunks_exact(d).zip(acts.pred.chunks_exact_mut(D_IN)) {
            for c in 0..D_IN {
                pi[c] = b_u[c] + (0..d).map(|j| ri[j] * w_u[j * D_IN + c]).sum::<F>();
            }
        }
    }
}

// ---------------------------------------------------------------- the layer, as in transformer.rs

/// `out[n, h] = r[n] W[h]` for `W` `[H, D, K]`; `out` is `[N, H, K]`.
fn head_proj<F: Real>(r: &[F], w: &[F], n: usize, cfg: &ModelConfig, out: &mut [F]) {
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    for (ri, oi) in r.chunks_exact(d).zip(out[..n * h * k].chunks_exact_mut(h * k)) {
        for hh in 0..h {
            for kk in 0..k {
                oi[hh * k + kk] = (0..d).map(|dd| ri[dd] * w[(hh * d + dd) * k + kk]).sum();
            }
        }
    }
}

/// Scores, pattern and `z = pattern · v` for every sequence and head.
fn attention<F: Real>(a: &mut BlockActivations<F>, batch: usize, cfg: &ModelConfig) {
    let (h, k, t) = (cfg.n_heads, cfg.d_head, cfg.n_ctx);
    let scale = F::of(cfg.scale());
    let tok = |b: usize, i: usize, hh: usize| ((b * t + i) * h + hh) * k;
    for b in 0..batch {
        for hh in 0..h {
            for i in 0..t {
                let row = ((b * h + hh) * t + i) * t;
                let keys = if cfg.causal { i + 1 } else { t };
                let q = &a.q[tok(b, i, hh)..][..k];
                let mut max = F::neg_infinity();
                for j in 0..t {
                    let s = if j < keys {
                        let kj = &a.k[tok(b, j, hh)..][..k];
                        q.iter().zip(kj).map(|(x, y)| *x * *y).sum::<F>() * scale
                    } else {
                        F::zero()
                    };
                    a.scores[row + j] = s;
                    if j < keys {
                        max = max.max(s);
                    }
                }
                let mut total = F::zero();
                for j in 0..t {
                    let e = if j < keys { (a.scores[row + j] - max).exp() } else { F::zero() };
                    a.pattern[row + j] = e;
                    total += e;
                }
                a.pattern[row..row + t].iter_mut().for_each(|e| *e /= total);
                let z = &mut a.z[tok(b, i, hh)..][..k];
                z.iter_mut().for_each(|x| *x = F::zero());
                for j in 0..keys {
                    let w = a.pattern[row + j];
                    let vj = &a.v[tok(b, j, hh)..][..k];
                    z.iter_mut().zip(vj).for_each(|(x, y)| *x += w * *y);
                }
            }
        }
    }
}

/// `result[n, h] = z[n, h] W_O[h]`, `[N, H, D]`.
fn head_results<F: Real>(z: &[F], w_o: &[F], n: usize, cfg: &ModelConfig, result: &mut [F]) {
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    for i in 0..n {
        for hh in 0..h {
            let zi = &z[(i * h + hh) * k..][..k];
            let res = &mut result[(i * h + hh) * d..][..d];
            for j in 0..d {
                res[j] = (0..k).map(|kk| zi[kk] * w_o[(hh * k + kk) * d + j]).sum();
            }
        }
    }
}

/// `r_out = r_in + Σ_h result[n, h]`, heads added in order.
fn sum_heads<F: Real>(result: &[F], r_in: &[F], n: usize, cfg: &ModelConfig, r_out: &mut [F]) {
    let (d, h) = (cfg.d_model, cfg.n_heads);
    for i in 0..n {
        let ro = &mut r_out[i * d..][..d];
        ro.copy_from_slice(&r_in[i * d..][..d]);
        for hh in 0..h {
            let res = &result[(i * h + hh) * d..][..d];
            ro.iter_mut().zip(res).for_each(|(x, y)| *x += *y);
        }
    }
}

/// `pre = mid W_in + b_in`, `post = act(pre)`, `mlp_out = post W_out + b_out`.
fn mlp_out<F: Real>(p: &[F], l: &MlpLayout, n: usize, cfg: &ModelConfig, a: &mut BlockActivations<F>) {
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let (w_in, b_in, w_out, b_out) = (&p[l.w_in.clone()], &p[l.b_in.clone()], &p[l.w_out.clone()], &p[l.b_out.clone()]);
    for i in 0..n {
        let mid = &a.mid[i * d..][..d];
        let (pre, post) = (&mut a.pre[i * m..][..m], &mut a.post[i * m..][..m]);
        for u in 0..m {
            pre[u] = b_in[u] + (0..d).map(|j| mid[j] * w_in[j * m + u]).sum::<F>();
            post[u] = cfg.act.apply(pre[u]);
        }
        let out = &mut a.mlp_out[i * d..][..d];
        for j in 0..d {
            out[j] = b_out[j] + (0..m).map(|u| post[u] * w_out[u * d + j]).sum::<F>();
        }
    }
}
