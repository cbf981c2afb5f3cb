//! Circuits of an attention-only model, in the spirit of "A Mathematical
//! Framework for Transformer Circuits" (issue 3, item 5).
//!
//! # Conventions
//! The weights are in the model's ROW convention (a token is a row vector,
//! `r = s W_E + b_E`). Per head:
//! - `OV = W_V W_O` `[D, D]`: what the head writes, `result = (pattern · r) OV`;
//! - `QK = W_Q W_Kᵀ` `[D, D]`: the bilinear form of the scores,
//!   `score(i, j) = r_i QK r_jᵀ · scale`.
//!
//! These `D×D` matrices are reported in the row convention, as stored. The
//! 2×2 maps of physics are reported in the COLUMN convention (`s' = P s`),
//! built by [`crate::model::Model::path_maps`] (which converts once, through
//! [`crate::model::circuits::to_physics`]):
//! - the direct path `(W_E W_U)ᵀ`,
//! - each head's path `(W_E W_V W_O W_U)ᵀ` (what the head contributes when it
//!   attends to the token itself, the only choice at context 1),
//! - for several layers, the composition paths (virtual heads) as the
//!   remainder `(W_E Π_l (I + Σ_h OV) W_U)ᵀ − direct − Σ heads`.
//!
//! For a one-layer context-1 model the direct and head paths add up to the
//! effective map `M` exactly.
//!
//! # Gauge
//! The residual basis is not observable: for any invertible `G` `[D, D]`,
//! `W_E → W_E G`, `b_E → b_E G`, `W_pos → W_pos G`, `W_U → G⁻¹ W_U`,
//! `W_V → G⁻¹ W_V`, `W_O → W_O G`, `W_Q → G⁻¹ W_Q`, `W_K → G⁻¹ W_K` gives
//! the same function. So W_E alone (or any single weight) means nothing;
//! `OV → G⁻¹ OV G` (a similarity: its eigenvalues are invariant, its entries
//! and singular values are not), `QK → G⁻¹ QK G⁻ᵀ` (a congruence: neither
//! entries nor eigenvalues nor singular values are invariant), while every
//! product from input to output — the path maps, `W_E QK W_Eᵀ`, the
//! positional scores — is invariant. Each quantity below carries that flag.

use nalgebra::DMatrix;
use serde::Serialize;

use crate::model::{D_IN, Model};
use crate::physics::readout::{SpectralReadout, spectral};
use crate::util::mat2::{Complex, Mat2, eigenvalues, frobenius};
use crate::util::real::Real;

/// A `D×D` circuit matrix with its spectrum.
#[derive(Clone, Debug, Serialize)]
pub struct MatrixCircuit {
    /// The matrix, row convention, `matrix[row][col]`.
    pub matrix: Vec<Vec<f64>>,
    /// Eigenvalues, largest modulus first.
    pub eigenvalues: Vec<Complex>,
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// The entries are gauge-invariant (never, for `D×D` residual matrices).
    pub matrix_gauge_invariant: bool,
    /// The eigenvalues are gauge-invariant (OV: yes; QK: no).
    pub eigenvalues_gauge_invariant: bool,
    /// The singular values are gauge-invariant (only under orthogonal gauges: no).
    pub singular_values_gauge_invariant: bool,
}

/// A 2×2 input-to-output path read as a physics map.
#[derive(Clone, Debug, Serialize)]
pub struct PathMap {
    /// `direct`, `blocks.{l}.head.{h}` or `compositions`.
    pub name: String,
    /// The map, COLUMN convention (`s' = P s`).
    pub map: Mat2,
    /// Eigenvalues of `map`.
    pub eigenvalues: [Complex; 2],
    /// `map` read as a one-step propagator (docs/physics.md a); often not one.
    pub readout: SpectralReadout,
    /// `‖map‖_F`.
    pub norm: f64,
    /// Always true: products from input to output do not depend on the gauge.
    pub gauge_invariant: bool,
}

/// The circuits of one head.
#[derive(Clone, Debug, Serialize)]
pub struct HeadCircuit {
    /// Layer index.
    pub layer: usize,
    /// Head index.
    pub head: usize,
    /// `W_V W_O` `[D, D]`.
    pub ov: MatrixCircuit,
    /// `W_Q W_Kᵀ` `[D, D]` (without the attention scale).
    pub qk: MatrixCircuit,
    /// `W_E QK W_Eᵀ` `[2, 2]`, row convention: the state-state part of the
    /// score, `score ⊃ s_q · qk_input · s_kᵀ · scale` (layer 0 only; gauge-invariant).
    pub qk_input: Option<Mat2>,
    /// Layer 0: the score at zero state, `scale · (b_E + W_pos[i]) QK (b_E + W_pos[j])ᵀ`,
    /// `[T, T]` (query, key) before the mask; gauge-invariant.
    pub positional_scores: Option<Vec<Vec<f64>>>,
    /// This head's path `(W_E W_V W_O W_U)ᵀ`; `None` with MLP blocks (see
    /// [`Circuits::paths_left_out`]).
    pub path: Option<PathMap>,
}

/// One quantity's behaviour under the residual gauge.
#[derive(Clone, Debug, Serialize)]
pub struct GaugeNote {
    /// What.
    pub quantity: String,
    /// Whether it is gauge-invariant.
    pub gauge_invariant: bool,
    /// Why.
    pub why: String,
}

/// Every circuit of a model.
#[derive(Clone, Debug, Serialize)]
pub struct Circuits {
    /// Statement of the conventions used.
    pub convention: String,
    /// The attention scale multiplying `q·k`.
    pub attn_scale: f64,
    /// The direct path `(W_E W_U)ᵀ`; `None` with MLP blocks.
    pub direct: Option<PathMap>,
    /// Why the path maps are missing (MLP blocks); `None` when present.
    pub paths_left_out: Option<String>,
    /// One entry per layer and head.
    pub heads: Vec<HeadCircuit>,
    /// Several layers: the paths through more than one head.
    pub compositions: Option<PathMap>,
    /// `(W_E Π_l (I + Σ_h OV) W_U)ᵀ`: the sum of all paths, which is the
    /// effective map of an attention-only context-1 model; `None` with MLP blocks.
    pub sum_of_paths: Option<Mat2>,
    /// The gauge table (see the module docs).
    pub gauge: Vec<GaugeNote>,
}

/// The circuits of `model`; path readouts use the step `dt`.
pub fn circuits<F: Real>(model: &Model<F>, dt: f64) -> Circuits {
    let cfg = &model.cfg;
    let (d, t) = (cfg.d_model, cfg.n_ctx);
    let l = &model.layout;
    let w_e = DMatrix::from_row_slice(D_IN, d, &model.weights(&l.w_e));
    let b_e = model.weights(&l.b_e);
    // Rows `b_E + W_pos[i]` `[T, D]`: the residual of a zero state at each position.
    let w_pos = l.w_pos.as_ref().map(|r| model.weights(r));
    let pos_rows: Vec<Vec<f64>> = (0..t)
        .map(|i| match &w_pos {
            Some(w) => b_e.iter().zip(&w[i * d..(i + 1) * d]).map(|(a, b)| a + b).collect(),
            None => b_e.clone(),
        })
        .collect();
    let pos = DMatrix::from_fn(t, d, |i, j| pos_rows[i][j]);
    let scale = cfg.scale();
    let paths = model.path_maps();
    let heads = (0..cfg.n_layers)
        .flat_map(|layer| (0..cfg.n_heads).map(move |head| (layer, head)))
        .enumerate()
        .map(|(i, (layer, head))| {
            let ov = DMatrix::from_row_slice(d, d, &model.ov(layer, head));
            let qk = DMatrix::from_row_slice(d, d, &model.qk(layer, head));
            let layer0 = layer == 0;
            HeadCircuit {
                layer,
                head,
                ov: matrix_circuit(&ov, true),
                qk_input: layer0.then(|| mat2_of(&(&w_e * &qk * w_e.transpose()))),
                positional_scores: layer0.then(|| rows_of(&((&pos * &qk * pos.transpose()) * scale))),
                qk: matrix_circuit(&qk, false),
                path: paths.as_ref().map(|p| read_path(&format!("blocks.{layer}.head.{head}"), p.heads[i].2, dt)),
            }
        })
        .collect();
    Circuits {
        convention: "D×D circuit matrices (ov, qk, qk_input, positional_scores) in the model's row convention; \
                     2×2 path maps in the column convention of physics, s' = P s"
            .into(),
        attn_scale: scale,
        direct: paths.as_ref().map(|p| read_path("direct", p.direct, dt)),
        paths_left_out: model.paths_left_out(),
        heads,
        compositions: paths.as_ref().and_then(|p| p.compositions).map(|m| read_path("compositions", m, dt)),
        sum_of_paths: paths.map(|p| p.total),
        gauge: gauge_table(),
    }
}

/// A column-convention 2×2 map read as physics.
fn read_path(name: &str, map: Mat2, dt: f64) -> PathMap {
    PathMap {
        name: name.into(),
        map,
        eigenvalues: eigenvalues(&map),
        readout: spectral(&map, dt),
        norm: frobenius(&map),
        gauge_invariant: true,
    }
}

/// Spectrum of a `D×D` matrix; `similarity` when the gauge acts on it by
/// similarity (OV), so its eigenvalues are invariant.
fn matrix_circuit(m: &DMatrix<f64>, similarity: bool) -> MatrixCircuit {
    let mut eig = eigenvalues_of(m);
    eig.sort_by(|a, b| b.abs().total_cmp(&a.abs()).then(b.im.total_cmp(&a.im)));
    let mut sv: Vec<f64> = m.singular_values().iter().copied().collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    MatrixCircuit {
        matrix: rows_of(m),
        eigenvalues: eig,
        singular_values: sv,
        matrix_gauge_invariant: false,
        eigenvalues_gauge_invariant: similarity,
        singular_values_gauge_invariant: false,
    }
}

/// Iteration cap of one real Schur decomposition (nalgebra's own default is
/// unbounded, which never returns on some exactly nilpotent matrices).
const SCHUR_MAX_ITERATIONS: usize = 5000;

/// Eigenvalues of a square matrix by the real Schur form. When the QR
/// iteration stalls (as it can on exactly structured matrices, e.g. a shift),
/// it is retried on orthogonally similar matrices `Qᵀ m Q` (same eigenvalues)
/// for a few fixed rotations `Q`; NaNs if none converges.
fn eigenvalues_of(m: &DMatrix<f64>) -> Vec<Complex> {
    let n = m.nrows();
    let eps = f64::EPSILON;
    for attempt in 0..4u32 {
        let candidate = if attempt == 0 {
            m.clone()
        } else {
            // A fixed, deterministic orthogonal Q from the QR of a smooth pseudo-random matrix.
            let seed = f64::from(attempt);
            let q = DMatrix::from_fn(n, n, |i, j| ((i * n + j) as f64 * 0.618_034 + seed).sin()).qr().q();
            q.transpose() * m * &q
        };
        if let Some(schur) = nalgebra::linalg::Schur::try_new(candidate, eps, SCHUR_MAX_ITERATIONS) {
            return schur.complex_eigenvalues().iter().map(|z| Complex { re: z.re, im: z.im }).collect();
        }
    }
    vec![Complex { re: f64::NAN, im: f64::NAN }; n]
}

/// The gauge behaviour of every reported quantity.
fn gauge_table() -> Vec<GaugeNote> {
    let note = |q: &str, inv: bool, why: &str| GaugeNote { quantity: q.into(), gauge_invariant: inv, why: why.into() };
    vec![
        note("W_E, W_U, W_Q, W_K, W_V, W_O alone", false, "each changes with the residual basis r → r G"),
        note("ov.matrix", false, "OV → G⁻¹ OV G"),
        note("ov.eigenvalues", true, "similarity preserves eigenvalues"),
        note("ov.singular_values", false, "only preserved by orthogonal G"),
        note("qk.matrix, qk.eigenvalues, qk.singular_values", false, "QK → G⁻¹ QK G⁻ᵀ, a congruence"),
        note("qk_input = W_E QK W_Eᵀ", true, "the G's cancel between W_E and W_Q, W_K"),
        note("positional_scores", true, "the G's cancel between b_E + W_pos and W_Q, W_K"),
        note("direct, head and composition path maps", true, "products from input to output: the G's cancel"),
    ]
}

/// A 2×2 nalgebra matrix as a [`Mat2`] (same orientation).
fn mat2_of(m: &DMatrix<f64>) -> Mat2 {
    [[m[(0, 0)], m[(0, 1)]], [m[(1, 0)], m[(1, 1)]]]
}

/// Rows of a matrix.
fn rows_of(m: &DMatrix<f64>) -> Vec<Vec<f64>> {
    (0..m.nrows()).map(|i| (0..m.ncols()).map(|j| m[(i, j)]).collect()).collect()
}
