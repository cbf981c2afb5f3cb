//! Models built by hand with a known answer, for the interpretation tests.
//!
//! Row convention inside the model (`r = s W_E + b_E`), column convention for
//! the physics maps `M` (`s' = M s + c`): a model that computes `s' = M s + c`
//! has `pred = s Mᵀ + cᵀ` in rows.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;

use physlens::System;
use physlens::model::{AttnScale, Model, ModelConfig};
use physlens::util::mat2::{self, Mat2, Vec2};
use physlens::util::rng::{Rng, Stream};

/// A random, well-conditioned 2×2 gauge.
pub fn gauge(seed: u64) -> Mat2 {
    let mut rng = Rng::new(seed, Stream::Init);
    loop {
        let g = [[rng.normal(), rng.normal()], [rng.normal(), rng.normal()]];
        let det = mat2::det(&g).abs();
        if det > 0.5 && mat2::frobenius(&g) < 3.0 {
            return g;
        }
    }
}

/// Writes the 2×2 `m` into the row-major `[.., cols]` tensor at `start`, rows/cols offset.
fn put(params: &mut [f64], start: usize, cols: usize, row0: usize, col0: usize, m: &Mat2) {
    for i in 0..2 {
        for j in 0..2 {
            params[start + (row0 + i) * cols + col0 + j] = m[i][j];
        }
    }
}

/// A one-layer, context-1 model with two heads (d_model = d_head = 2) that
/// computes `s' = M s + c` in the gauge `W_E = G`, `W_U = G⁻¹`: the update
/// `X = G⁻¹ Mᵀ G − I` is split 0.3 / 0.7 over the heads, each through its own
/// random invertible `W_V`, with a random `b_E` compensated in `b_U`.
pub fn two_head_model(m: Mat2, c: Vec2, g: Mat2, seed: u64) -> Model<f64> {
    let cfg = ModelConfig { n_heads: 2, ..ModelConfig::seed() };
    let mut model = Model::<f64>::zeros(&cfg);
    let l = model.layout.clone();
    let b = &l.blocks[0];
    let g_inv = mat2::inverse(&g).unwrap();
    let mt = mat2::transpose(&m);
    let x = mat2::sub(&mat2::mul(&mat2::mul(&g_inv, &mt), &g), &mat2::identity());
    let p = &mut model.params;
    put(p, l.w_e.start, 2, 0, 0, &g);
    put(p, l.w_u.start, 2, 0, 0, &g_inv);
    let mut rng = Rng::new(seed, Stream::Train);
    for (h, share) in [(0usize, 0.3), (1, 0.7)] {
        let r = gauge(seed * 7 + h as u64 + 1);
        let r_inv = mat2::inverse(&r).unwrap();
        let o = mat2::mul(&r_inv, &mat2::scale(&x, share));
        put(p, b.w_v.start + h * 4, 2, 0, 0, &r);
        put(p, b.w_o.start + h * 4, 2, 0, 0, &o);
        for w in [b.w_q.start + h * 4, b.w_k.start + h * 4] {
            for k in 0..4 {
                p[w + k] = rng.normal();
            }
        }
    }
    let b_e = [0.3 * rng.normal(), 0.3 * rng.normal()];
    p[l.b_e.start] = b_e[0];
    p[l.b_e.start + 1] = b_e[1];
    // pred offset = b_E (I + X) G⁻¹ + b_U = b_E G⁻¹ Mᵀ + b_U (rows).
    let through = mat2::mul(&g_inv, &mt);
    for j in 0..2 {
        p[l.b_u.start + j] = c[j] - (b_e[0] * through[0][j] + b_e[1] * through[1][j]);
    }
    model
}

/// Attention logit on the chosen key (after the `1/sqrt(d_model)` scale):
/// the other keys get `e^{−80}` of the weight, far below f64 rounding.
pub const LOGIT: f64 = 80.0;

/// A one-layer, context-3, causal model with positional embeddings computing
/// the two-step rule `s_{n+1} = 2 M s_n − M² s_{n−1} + c` at the last position.
///
/// Residual (d_model 5): dims 0–1 hold the state in the gauge `G`
/// (`W_E = [G | 0]`), dims 2–4 a one-hot position (`W_pos[t] = e_{2+t}`).
/// Head 0 (d_head 3) attends to the token itself, head 1 to the previous one:
/// `W_Q` maps position `t` to `a e_t`, `W_K` to `a e_t` (head 0) or
/// `a e_{t+1}` (head 1), `a² / sqrt(5) =` [`LOGIT`]; scores never depend on
/// the state. Values copy the state dims; `W_O` writes
/// `G⁻¹ (2Mᵀ − I) G` (head 0) and `G⁻¹ (−M²)ᵀ G` (head 1) back into them;
/// `W_U = [G⁻¹; 0]`. `b_E = (β G, 0, 0, 0)` adds the offset
/// `β (2Mᵀ − M²ᵀ)` (rows) on top of `b_U`, returned as the second value
/// (column convention, total offset of the last prediction).
pub fn two_step_model(m: Mat2, c: Vec2, g: Mat2, beta: Vec2) -> (Model<f64>, Vec2) {
    let cfg = ModelConfig {
        d_model: 5,
        n_heads: 2,
        d_head: 3,
        n_layers: 1,
        d_mlp: 0,
        act: physlens::model::Act::Gelu,
        n_ctx: 3,
        attn_scale: AttnScale::DModel,
        causal: true,
        positional: true,
        loss_positions: None,
    };
    let (d, k) = (5, 3);
    let mut model = Model::<f64>::zeros(&cfg);
    let l = model.layout.clone();
    let b = &l.blocks[0];
    let g_inv = mat2::inverse(&g).unwrap();
    let mt = mat2::transpose(&m);
    let m2t = mat2::transpose(&mat2::mul(&m, &m));
    let a = (LOGIT * (d as f64).sqrt()).sqrt();
    let p = &mut model.params;
    put(p, l.w_e.start, d, 0, 0, &g);
    put(p, l.w_u.start, 2, 0, 0, &g_inv);
    let w_pos = l.w_pos.clone().unwrap();
    for t in 0..3 {
        p[w_pos.start + t * d + 2 + t] = 1.0;
    }
    let b_s = [beta[0] * g[0][0] + beta[1] * g[1][0], beta[0] * g[0][1] + beta[1] * g[1][1]];
    p[l.b_e.start] = b_s[0];
    p[l.b_e.start + 1] = b_s[1];
    let outs = [
        mat2::mul(&mat2::mul(&g_inv, &mat2::sub(&mat2::scale(&mt, 2.0), &mat2::identity())), &g),
        mat2::mul(&mat2::mul(&g_inv, &mat2::scale(&m2t, -1.0)), &g),
    ];
    for (h, out) in outs.iter().enumerate() {
        let (wq, wk, wv, wo) =
            (b.w_q.start + h * d * k, b.w_k.start + h * d * k, b.w_v.start + h * d * k, b.w_o.start + h * k * d);
        for t in 0..3 {
            p[wq + (2 + t) * k + t] = a;
            let key = if h == 0 { Some(t) } else { (t + 1 < 3).then_some(t + 1) };
            if let Some(key) = key {
                p[wk + (2 + t) * k + key] = a;
            }
        }
        put(p, wv, k, 0, 0, &mat2::identity());
        put(p, wo, d, 0, 0, out);
    }
    for j in 0..2 {
        p[l.b_u.start + j] = c[j];
    }
    // Total offset (rows): β (2Mᵀ − M²ᵀ) + c.
    let through = mat2::sub(&mat2::scale(&mt, 2.0), &m2t);
    let offset = [
        c[0] + beta[0] * through[0][0] + beta[1] * through[1][0],
        c[1] + beta[0] * through[0][1] + beta[1] * through[1][1],
    ];
    (model, offset)
}

/// A one-layer attention-only model of context `n_ctx` that runs the fixed
/// linear filter `ŝ_t = Σ_k taps[k] s_{t−k}` (column convention; `taps[0]`
/// acts on the current token) at every position `t ≥ taps.len() − 1`, and
/// so at the last position `ŝ = Σ_k taps[k] s_{T−1−k}` whatever ω0 and γ
/// are: a filter that never identifies the dynamics.
///
/// Residual stream `[state (2) | position one-hot (T)]`, `d_model = 2 + T`;
/// head `k` (`d_head = T`) attends from position `t` to `t − k` alone
/// (`W_Q` maps position `t` to `a e_t`, `W_K` maps position `t'` to
/// `a e_{t'+k}`, `a² / √d_model =` [`LOGIT`], so every other key gets a
/// weight below e^{−80}); its value copies the state, and `W_O` writes
/// `G⁻¹ B_kᵀ G` back into the state dims with `B_0 = taps[0] − I` (the
/// residual carries `s_t` itself) and `B_k = taps[k]`. `W_E = [G | 0]`,
/// `W_U = [G⁻¹; 0]`, no biases.
pub fn filter_model(taps: &[Mat2], n_ctx: usize, g: Mat2) -> Model<f64> {
    assert!(n_ctx >= 2 && !taps.is_empty() && taps.len() <= n_ctx, "a filter of at most n_ctx taps, n_ctx ≥ 2");
    let d = 2 + n_ctx;
    let cfg = ModelConfig {
        d_model: d,
        n_heads: taps.len(),
        d_head: n_ctx,
        n_layers: 1,
        d_mlp: 0,
        act: physlens::model::Act::Gelu,
        n_ctx,
        attn_scale: AttnScale::DModel,
        causal: true,
        positional: true,
        loss_positions: None,
    };
    let k = n_ctx;
    let mut model = Model::<f64>::zeros(&cfg);
    let l = model.layout.clone();
    let b = &l.blocks[0];
    let g_inv = mat2::inverse(&g).unwrap();
    let a = (LOGIT * (d as f64).sqrt()).sqrt();
    let p = &mut model.params;
    put(p, l.w_e.start, d, 0, 0, &g);
    put(p, l.w_u.start, 2, 0, 0, &g_inv);
    let w_pos = l.w_pos.clone().unwrap();
    for t in 0..n_ctx {
        p[w_pos.start + t * d + 2 + t] = 1.0;
    }
    for (h, tap) in taps.iter().enumerate() {
        let through = if h == 0 { mat2::sub(tap, &mat2::identity()) } else { *tap };
        let out = mat2::mul(&mat2::mul(&g_inv, &mat2::transpose(&through)), &g);
        let (wq, wk, wv, wo) =
            (b.w_q.start + h * d * k, b.w_k.start + h * d * k, b.w_v.start + h * d * k, b.w_o.start + h * k * d);
        for t in 0..n_ctx {
            p[wq + (2 + t) * k + t] = a;
            if t + h < n_ctx {
                p[wk + (2 + t) * k + t + h] = a;
            }
        }
        put(p, wv, k, 0, 0, &mat2::identity());
        put(p, wo, d, 0, 0, &out);
    }
    model
}

/// The same weights rounded to f32.
pub fn to_f32(model: &Model<f64>) -> Model<f32> {
    Model {
        cfg: model.cfg.clone(),
        layout: model.layout.clone(),
        params: model.params.iter().map(|w| *w as f32).collect(),
    }
}

/// Writes `model` the way a person with numpy would: the safetensors crate's
/// own `serialize_to_file`, TransformerLens names, metadata as JSON strings,
/// in `f32` (`single = true`) or `f64`.
pub fn write_like_numpy(path: &Path, model: &Model<f64>, system: &System, single: bool) {
    let cfg = &model.cfg;
    let tensors = model.layout.tensors(cfg);
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| {
            let values = &model.params[t.range.clone()];
            if single {
                values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()
            } else {
                values.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
        })
        .collect();
    let dtype = if single { safetensors::Dtype::F32 } else { safetensors::Dtype::F64 };
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| (t.name.clone(), safetensors::tensor::TensorView::new(dtype, t.shape.clone(), b).unwrap()))
        .collect();
    let model_json = serde_json::json!({
        "d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_head": cfg.d_head, "n_layers": cfg.n_layers,
        "n_ctx": cfg.n_ctx, "attn_scale": "d_model", "causal": cfg.causal, "positional": cfg.positional,
    });
    let system_json = serde_json::json!({
        "kind": "damped_oscillator", "omega0": system.omega0, "gamma": system.gamma, "dt": system.dt,
    });
    let metadata = HashMap::from([
        ("format".to_string(), "physlens/1".to_string()),
        ("model".to_string(), model_json.to_string()),
        ("system".to_string(), system_json.to_string()),
        ("written_by".to_string(), "numpy".to_string()),
    ]);
    safetensors::tensor::serialize_to_file(views, Some(metadata), path).unwrap();
}
