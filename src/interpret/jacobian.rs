//! Per-token Jacobians of the last prediction: how much of each input step a
//! model uses (issue 3, item 2; docs/outputs.md for models that are not one affine map).
//!
//! For a sequence `s[0] … s[T−1]` the model's last prediction `ŝ = pred[T−1]`
//! (the next state) depends on every token the last position can see. Its
//! Jacobian with respect to token `t` is the 2×2 matrix
//! `J_t[i][j] = ∂ŝ_i / ∂s[t]_j`, in the COLUMN convention of physics: near a
//! state, `ŝ ≈ Σ_t J_t s[t] + c`. A one-step rule has `J_{T−1} = M` and zero
//! elsewhere; a linear multistep rule such as `s_{n+1} = 2M s_n − M² s_{n−1}`
//! shows up as non-zero Jacobians on older tokens.
//!
//! # Method (exact)
//! Reverse mode through the hand-written backward pass of
//! [`crate::model::Model::backward`], which the test suite checks against
//! finite differences and a PyTorch reference: for each output component
//! `i`, seed `∂loss/∂pred[b, T−1] = e_i` for every sequence of a batch, run
//! the backward pass, and read the input gradient with
//! [`crate::model::Model::input_grad`]. Sequences do not interact, so one
//! pair of backward passes gives every sequence's Jacobians at once, exact to
//! rounding in the model's own dtype (use an f64 model for 1e-12 accuracy).
//!
//! # Shapes
//! `inputs` `[B, T, 2]` (row-major `(x, p)` pairs, as the model takes them);
//! [`Jacobians::values`] `[B, T, 2, 2]` with the last two axes `[i][j]` =
//! (output component, input component), i.e. column convention.

use serde::Serialize;

use crate::model::{Activations, D_IN, Model, Scratch};
use crate::util::mat2::{Mat2, Vec2};
use crate::util::real::{Dtype, Real};

/// The Jacobians of the last prediction for a batch of sequences, and the
/// predictions themselves.
#[derive(Clone, Debug, PartialEq)]
pub struct Jacobians {
    /// Sequences B.
    pub batch: usize,
    /// Tokens per sequence T.
    pub n_ctx: usize,
    /// `[B, T, 2, 2]`: `values[((b·T + t)·2 + i)·2 + j] = ∂pred_i[b, T−1] / ∂s_j[b, t]`.
    pub values: Vec<f64>,
    /// `[B, 2]`: the last prediction `pred[b, T−1]`.
    pub last_pred: Vec<f64>,
    /// The dtype the model ran in.
    pub dtype: Dtype,
}

impl Jacobians {
    /// `J_t` of sequence `b`, column convention.
    pub fn get(&self, b: usize, t: usize) -> Mat2 {
        let at = |i: usize, j: usize| self.values[((b * self.n_ctx + t) * D_IN + i) * D_IN + j];
        [[at(0, 0), at(0, 1)], [at(1, 0), at(1, 1)]]
    }

    /// The last prediction of sequence `b`.
    pub fn prediction(&self, b: usize) -> Vec2 {
        [self.last_pred[b * D_IN], self.last_pred[b * D_IN + 1]]
    }
}

/// The exact Jacobians of the last prediction w.r.t. every input token, for
/// every sequence of `inputs` `[B, T, 2]` (see the module docs).
///
/// # Panics
/// If `inputs` is not a whole number of sequences.
pub fn last_prediction_jacobians<F: Real>(model: &Model<F>, inputs: &[F]) -> Jacobians {
    let cfg = &model.cfg;
    let (t, w) = (cfg.n_ctx, cfg.n_ctx * D_IN);
    assert_eq!(inputs.len() % w, 0, "inputs are not a whole number of sequences");
    let batch = inputs.len() / w;
    let cap = Activations::<F>::chunk(cfg, batch);
    let mut acts = Activations::new(cfg, cap);
    let mut scratch = Scratch::new(cfg, cap);
    let mut grads = vec![F::zero(); model.layout.len];
    let mut d_input = vec![F::zero(); cap * w];
    let mut out =
        Jacobians { batch, n_ctx: t, values: vec![0.0; batch * t * D_IN * D_IN], last_pred: vec![], dtype: F::DTYPE };
    out.last_pred.reserve(batch * D_IN);
    for (chunk_index, chunk) in inputs.chunks(cap * w).enumerate() {
        let nb = chunk.len() / w;
        let first = chunk_index * cap;
        model.forward(chunk, &mut acts);
        for b in 0..nb {
            let row = &acts.pred[(b * t + t - 1) * D_IN..][..D_IN];
            out.last_pred.extend(row.iter().map(|x| x.f64()));
        }
        for i in 0..D_IN {
            let seed = &mut scratch.d_pred[..nb * w];
            seed.iter_mut().for_each(|x| *x = F::zero());
            for b in 0..nb {
                seed[(b * t + t - 1) * D_IN + i] = F::one();
            }
            model.backward(chunk, &acts, &mut scratch, &mut grads);
            model.input_grad(&acts, &scratch, &mut d_input);
            for b in 0..nb {
                for tok in 0..t {
                    for j in 0..D_IN {
                        let v = d_input[(b * t + tok) * D_IN + j].f64();
                        out.values[(((first + b) * t + tok) * D_IN + i) * D_IN + j] = v;
                    }
                }
            }
        }
    }
    out
}

/// Mean and spread of one token's Jacobian over a set of states.
#[derive(Clone, Debug, Serialize)]
pub struct TokenJacobian {
    /// Position of the token, `0 … T−1`.
    pub token: usize,
    /// Steps back from the last token (`T−1−token`; 0 = the state being advanced).
    pub lag: usize,
    /// Mean of `J_t` over the states, column convention.
    pub mean: Mat2,
    /// Entry-wise standard deviation of `J_t` over the states.
    pub std: Mat2,
    /// Largest `‖J_t − mean‖_F` over the states.
    pub max_dev: f64,
    /// `‖mean‖_F`: how much the prediction uses this token.
    pub norm: f64,
}

/// The per-token Jacobians of the last prediction, summarised over a set of
/// (validation) states.
#[derive(Clone, Debug, Serialize)]
pub struct JacobianReport {
    /// Sequences averaged over.
    pub n_states: usize,
    /// How the Jacobians were computed.
    pub method: String,
    /// One entry per token, oldest first.
    pub tokens: Vec<TokenJacobian>,
    /// Mean intercept of the linearisation, `mean_b (ŝ_b − Σ_t J_t(b) s_b[t])`:
    /// equals the offset `c` for an affine model.
    pub offset: Vec2,
    /// Entry-wise standard deviation of that intercept.
    pub offset_std: Vec2,
}

impl JacobianReport {
    /// The mean Jacobian w.r.t. the last input token (docs/outputs.md `effective_map`
    /// of a model that is not one affine map).
    pub fn last(&self) -> &TokenJacobian {
        self.tokens.last().expect("a model has at least one token")
    }
}

/// Summarises [`last_prediction_jacobians`] of `model` on `inputs` `[B, T, 2]`.
///
/// # Panics
/// If `inputs` holds no sequence.
pub fn jacobian_report<F: Real>(model: &Model<F>, inputs: &[F]) -> JacobianReport {
    summarize(&last_prediction_jacobians(model, inputs), inputs)
}

/// Summarises the Jacobians `jac` computed on `inputs` `[B, T, 2]`.
///
/// # Panics
/// If `jac` holds no sequence or does not match `inputs`.
pub fn summarize<F: Real>(jac: &Jacobians, inputs: &[F]) -> JacobianReport {
    assert_eq!(inputs.len(), jac.batch * jac.n_ctx * D_IN, "Jacobians of other inputs");
    assert!(jac.batch > 0, "no states to average the Jacobians over");
    let (nb, t) = (jac.batch, jac.n_ctx);
    let tokens = (0..t)
        .map(|tok| {
            let all: Vec<Mat2> = (0..nb).map(|b| jac.get(b, tok)).collect();
            let (mean, std) = mean_std(&all);
            let max_dev = all.iter().map(|m| frob_diff(m, &mean)).fold(0.0, f64::max);
            TokenJacobian { token: tok, lag: t - 1 - tok, mean, std, max_dev, norm: frob_diff(&mean, &[[0.0; 2]; 2]) }
        })
        .collect();
    let intercepts: Vec<Vec2> = (0..nb)
        .map(|b| {
            let mut c = jac.prediction(b);
            for tok in 0..t {
                let j = jac.get(b, tok);
                let s = [inputs[(b * t + tok) * D_IN].f64(), inputs[(b * t + tok) * D_IN + 1].f64()];
                c[0] -= j[0][0] * s[0] + j[0][1] * s[1];
                c[1] -= j[1][0] * s[0] + j[1][1] * s[1];
            }
            c
        })
        .collect();
    let as_mats: Vec<Mat2> = intercepts.iter().map(|c| [*c, [0.0; 2]]).collect();
    let (mean_c, std_c) = mean_std(&as_mats);
    JacobianReport {
        n_states: nb,
        method: format!("exact reverse mode (the model's backward pass), in {}", jac.dtype.name()),
        tokens,
        offset: mean_c[0],
        offset_std: std_c[0],
    }
}

/// The least-squares one-step map on the data: `ŝ ≈ M s[T−1] + c` fitted to
/// the model's last predictions. On exact trajectories older tokens are
/// functions of the last one, so this is what a multistep model effectively
/// does along true trajectories (for a context-1 model it is its affine map).
#[derive(Clone, Debug, Serialize)]
pub struct OneStepFit {
    /// `M`, column convention.
    pub map: Mat2,
    /// `c`.
    pub offset: Vec2,
    /// Root-mean-square of `‖ŝ − (M s + c)‖` over the states.
    pub rms_residual: f64,
}

/// Fits [`OneStepFit`] to the last predictions `jac.last_pred` of the
/// sequences `inputs` `[B, T, 2]`, or `None` when the last states do not
/// span the plane (fewer than 3 states, or collinear ones).
pub fn one_step_fit<F: Real>(inputs: &[F], jac: &Jacobians) -> Option<OneStepFit> {
    let (nb, t) = (jac.batch, jac.n_ctx);
    let last = |b: usize| [inputs[(b * t + t - 1) * D_IN].f64(), inputs[(b * t + t - 1) * D_IN + 1].f64()];
    if nb < 3 {
        return None;
    }
    let mean = |f: &dyn Fn(usize) -> f64| (0..nb).map(f).sum::<f64>() / nb as f64;
    let sm = [mean(&|b| last(b)[0]), mean(&|b| last(b)[1])];
    let pm = [mean(&|b| jac.prediction(b)[0]), mean(&|b| jac.prediction(b)[1])];
    // Centred normal equations: (Sᵀ S) Mᵀ = Sᵀ P.
    let mut sts = [[0.0; 2]; 2];
    let mut stp = [[0.0; 2]; 2];
    for b in 0..nb {
        let s = last(b);
        let p = jac.prediction(b);
        let (ds, dp) = ([s[0] - sm[0], s[1] - sm[1]], [p[0] - pm[0], p[1] - pm[1]]);
        for a in 0..2 {
            for c in 0..2 {
                sts[a][c] += ds[a] * ds[c];
                stp[a][c] += ds[a] * dp[c];
            }
        }
    }
    if crate::util::mat2::det(&sts) <= 1e-12 * (sts[0][0] * sts[1][1]).max(f64::MIN_POSITIVE) {
        return None;
    }
    let inv = crate::util::mat2::inverse(&sts)?;
    let mt = crate::util::mat2::mul(&inv, &stp); // Mᵀ (row convention)
    let map = crate::util::mat2::transpose(&mt);
    let offset = [pm[0] - (map[0][0] * sm[0] + map[0][1] * sm[1]), pm[1] - (map[1][0] * sm[0] + map[1][1] * sm[1])];
    let sq: f64 = (0..nb)
        .map(|b| {
            let (s, p) = (last(b), jac.prediction(b));
            let e0 = p[0] - (map[0][0] * s[0] + map[0][1] * s[1] + offset[0]);
            let e1 = p[1] - (map[1][0] * s[0] + map[1][1] * s[1] + offset[1]);
            e0 * e0 + e1 * e1
        })
        .sum();
    Some(OneStepFit { map, offset, rms_residual: (sq / nb as f64).sqrt() })
}

/// Entry-wise mean and (population) standard deviation of 2×2 matrices.
fn mean_std(all: &[Mat2]) -> (Mat2, Mat2) {
    let n = all.len().max(1) as f64;
    let mut mean = [[0.0; 2]; 2];
    let mut var = [[0.0; 2]; 2];
    for m in all {
        for i in 0..2 {
            for j in 0..2 {
                mean[i][j] += m[i][j] / n;
            }
        }
    }
    for m in all {
        for i in 0..2 {
            for j in 0..2 {
                var[i][j] += (m[i][j] - mean[i][j]).powi(2) / n;
            }
        }
    }
    (mean, var.map(|row| row.map(f64::sqrt)))
}

/// `‖a − b‖_F`.
fn frob_diff(a: &Mat2, b: &Mat2) -> f64 {
    crate::util::mat2::frobenius(&crate::util::mat2::sub(a, b))
}

/// Per-token Jacobians as CSV (column convention, `j_ij = ∂ŝ_i/∂s_j`).
pub fn jacobians_csv(j: &JacobianReport) -> String {
    let mut s = String::from("token,lag,j11,j12,j21,j22,std11,std12,std21,std22,norm,max_dev\n");
    for t in &j.tokens {
        let (m, d) = (t.mean, t.std);
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            t.token, t.lag, m[0][0], m[0][1], m[1][0], m[1][1], d[0][0], d[0][1], d[1][0], d[1][1], t.norm, t.max_dev
        ));
    }
    s
}
