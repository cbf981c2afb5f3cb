//! Circuits as methods of the model, in the spirit of "A Mathematical
//! Framework for Transformer Circuits": per head `OV = W_V W_O` and
//! `QK = W_Q W_Kᵀ`, the input-to-output path maps built on them, and the
//! affine map of a context-1 model built on the paths.
//!
//! # Conventions
//! `D×D` circuit matrices are in the model's ROW convention, as stored (a
//! token is a row vector: a head writes `(pattern · r) OV`, and scores are
//! `r_i QK r_jᵀ · scale`); they are flat row-major `[D, D]` vectors. The 2×2
//! maps of physics are in the COLUMN convention (`s' = M s`): a row-convention
//! 2×2 map becomes one through [`to_physics`], the one place the two meet.
//!
//! # Shapes
//! ```text
//! W_E [2, D]   W_V, W_Q, W_K [H, D, K]   W_O [H, K, D]   W_U [D, 2]
//! ov(l, h), qk(l, h), ov_sum(l)  [D, D] row-major, row convention
//! ```

use crate::model::{D_IN, Model};
use crate::util::mat2::{Mat2, Vec2, sub, transpose};
use crate::util::real::Real;

/// A row-convention 2×2 map (`pred = s · R`) in the column convention of
/// physics (`s' = M s`): `M = Rᵀ`. Every conversion between the model's rows
/// and physics' columns goes through here.
pub fn to_physics(row_map: &Mat2) -> Mat2 {
    transpose(row_map)
}

/// The input-to-output paths of the residual stream, each a 2×2 map in the
/// column convention (biases left out).
#[derive(Clone, Debug, PartialEq)]
pub struct PathMaps {
    /// `(W_E W_U)ᵀ`: the embedding read straight out.
    pub direct: Mat2,
    /// `(layer, head, (W_E OV W_U)ᵀ)`: what each head adds when it attends to
    /// the token itself (the only choice at context 1).
    pub heads: Vec<(usize, usize, Mat2)>,
    /// For several layers, the compositions of heads (virtual heads):
    /// `total − direct − Σ heads`.
    pub compositions: Option<Mat2>,
    /// `(W_E Π_l (I + Σ_h OV) W_U)ᵀ`: the sum of all paths, which is the
    /// effective map of a context-1 model.
    pub total: Mat2,
}

impl<F: Real> Model<F> {
    /// Tensor `range` of the parameters in f64.
    pub(crate) fn weights(&self, range: &std::ops::Range<usize>) -> Vec<f64> {
        self.params[range.clone()].iter().map(|w| w.f64()).collect()
    }

    /// `W_V W_O` of head `h` in layer `l`, `[D, D]` row-major, row convention.
    pub fn ov(&self, l: usize, h: usize) -> Vec<f64> {
        let block = &self.layout.blocks[l];
        let (d, k) = (self.cfg.d_model, self.cfg.d_head);
        self.head_product(&block.w_v, &block.w_o, h, |kk, j| (h * k + kk) * d + j)
    }

    /// `W_Q W_Kᵀ` of head `h` in layer `l` (without the attention scale),
    /// `[D, D]` row-major, row convention.
    pub fn qk(&self, l: usize, h: usize) -> Vec<f64> {
        let block = &self.layout.blocks[l];
        let (d, k) = (self.cfg.d_model, self.cfg.d_head);
        self.head_product(&block.w_q, &block.w_k, h, |kk, j| (h * d + j) * k + kk)
    }

    /// `[D, D]` row-major `(i, j) ↦ Σ_kk A[h, i, kk] · B(kk, j)` for the
    /// `[H, D, K]` tensor `a` and the tensor `b` read at `b_at(kk, j)`.
    fn head_product(
        &self,
        a: &std::ops::Range<usize>,
        b: &std::ops::Range<usize>,
        h: usize,
        b_at: impl Fn(usize, usize) -> usize,
    ) -> Vec<f64> {
        let (d, k) = (self.cfg.d_model, self.cfg.d_head);
        let (a, b) = (self.weights(a), self.weights(b));
        let entry = |i: usize, j: usize| (0..k).map(|kk| a[(h * d + i) * k + kk] * b[b_at(kk, j)]).sum();
        (0..d * d).map(|ij| entry(ij / d, ij % d)).collect()
    }

    /// `Σ_h OV(l, h)`: what layer `l` adds to a token that attends only to
    /// itself, `[D, D]` row-major, row convention.
    pub fn ov_sum(&self, l: usize) -> Vec<f64> {
        let mut sum = vec![0.0; self.cfg.d_model * self.cfg.d_model];
        for h in 0..self.cfg.n_heads {
            sum.iter_mut().zip(self.ov(l, h)).for_each(|(s, x)| *s += x);
        }
        sum
    }

    /// Row vectors `[D]` pushed through every layer as a token attending
    /// only to itself: `r ← r (I + Σ_h OV)`, layer by layer.
    fn through_layers(&self, mut rows: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        let d = self.cfg.d_model;
        for l in 0..self.cfg.n_layers {
            let ov = self.ov_sum(l);
            for row in &mut rows {
                let moved: Vec<f64> = (0..d).map(|j| (0..d).map(|i| row[i] * ov[i * d + j]).sum()).collect();
                row.iter_mut().zip(moved).for_each(|(r, m)| *r += m);
            }
        }
        rows
    }

    /// Row vectors `[D]` read out through `W_U`: `[2]` each.
    fn unembedded(&self, rows: &[Vec<f64>]) -> Vec<Vec2> {
        let (d, w_u) = (self.cfg.d_model, self.weights(&self.layout.w_u));
        let out = |row: &[f64], c: usize| (0..d).map(|i| row[i] * w_u[i * D_IN + c]).sum::<f64>();
        rows.iter().map(|r| [out(r, 0), out(r, 1)]).collect()
    }

    /// `W_E inner W_U` `[2, 2]` for a `[D, D]` row-major `inner`, in the column convention.
    fn path(&self, inner: &dyn Fn(usize, usize) -> f64) -> Mat2 {
        let d = self.cfg.d_model;
        let (w_e, w_u) = (self.weights(&self.layout.w_e), self.weights(&self.layout.w_u));
        let mut row_map = [[0.0; 2]; 2];
        for (i, row) in row_map.iter_mut().enumerate() {
            for (o, cell) in row.iter_mut().enumerate() {
                *cell = (0..d)
                    .flat_map(|a| (0..d).map(move |b| (a, b)))
                    .map(|(a, b)| w_e[i * d + a] * inner(a, b) * w_u[b * D_IN + o])
                    .sum();
            }
        }
        to_physics(&row_map)
    }

    /// The path decomposition of the residual stream (see [`PathMaps`]);
    /// `None` for a model with MLP blocks, whose map is not a sum of linear
    /// paths (see [`Model::paths_left_out`]).
    pub fn path_maps(&self) -> Option<PathMaps> {
        if self.cfg.has_mlp() {
            return None;
        }
        let d = self.cfg.d_model;
        let direct = self.path(&|a, b| if a == b { 1.0 } else { 0.0 });
        let mut heads = vec![];
        for l in 0..self.cfg.n_layers {
            for h in 0..self.cfg.n_heads {
                let ov = self.ov(l, h);
                heads.push((l, h, self.path(&|a, b| ov[a * d + b])));
            }
        }
        let (total, _) = self.through(vec![0.0; d]);
        let compositions = (self.cfg.n_layers > 1)
            .then(|| heads.iter().fold(sub(&total, &direct), |rest, (_, _, head)| sub(&rest, head)));
        Some(PathMaps { direct, heads, compositions, total })
    }

    /// Why [`Model::path_maps`] is `None`, or `None` when it exists.
    pub fn paths_left_out(&self) -> Option<String> {
        self.cfg.has_mlp().then(|| {
            format!(
                "MLP blocks ({} {}): the model's map is not a sum of linear paths through the heads, \
                 so no path decomposition",
                self.cfg.d_mlp,
                self.cfg.act.name()
            )
        })
    }

    /// The linear map `(W_E Π_l (I + Σ_h OV) W_U)ᵀ` (column convention), and
    /// the row `b` `[D]` taken through the same layers and read out through `W_U`.
    fn through(&self, b: Vec<f64>) -> (Mat2, Vec2) {
        let mut rows: Vec<Vec<f64>> =
            self.weights(&self.layout.w_e).chunks(self.cfg.d_model).map(<[f64]>::to_vec).collect();
        rows.push(b);
        let out = self.unembedded(&self.through_layers(rows));
        (to_physics(&[out[0], out[1]]), out[2])
    }

    /// The exact affine map of a context-1 model, in the COLUMN convention of
    /// physics: `s' = M s + c`. With one token, softmax is 1 and every layer is
    /// linear, so `M = (W_E Π_l (I + Σ_h W_V W_O) W_U)ᵀ` (the total of
    /// [`Model::path_maps`]) and `c = ((b_E + W_pos[0]) Π_l (I + Σ_h W_V W_O) W_U + b_U)ᵀ`.
    /// Returns `None` when `n_ctx > 1` (the map then depends on the input)
    /// and for MLP blocks (the map is not affine).
    pub fn affine_map(&self) -> Option<(Mat2, Vec2)> {
        if !self.cfg.is_affine() {
            return None;
        }
        let mut bias = self.weights(&self.layout.b_e);
        if let Some(w_pos) = &self.layout.w_pos {
            bias.iter_mut().zip(self.weights(w_pos)).for_each(|(b, w)| *b += w);
        }
        let b_u = self.weights(&self.layout.b_u);
        let (m, out) = self.through(bias);
        Some((m, [out[0] + b_u[0], out[1] + b_u[1]]))
    }
}
