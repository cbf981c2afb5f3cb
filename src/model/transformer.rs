//! The transformer: attention layers with optional MLP blocks, parameters,
//! forward pass with a named activation cache, and a hand-written backward
//! pass.
//!
//! # Shapes
//! ```text
//! B  batch            T  context (n_ctx)     I  d_in = 2 (x, p)
//! D  d_model          H  heads               K  d_head
//! L  layers           N  = B·T tokens        M  d_mlp (0: no MLP)
//! ```
//! Row convention (a token is a row vector), as in TransformerLens:
//! ```text
//! r0[t]   = s[t] W_E + b_E (+ W_pos[t])
//! mid{l}  = r{l} + Σ_h softmax(mask(q kᵀ · scale)) v W_O[h],  q = r W_Q[h] …
//! r{l+1}  = mid{l} + act(mid{l} W_in + b_in) W_out + b_out   (M > 0; else mid{l})
//! pred[t] = r{L}[t] W_U + b_U            (the prediction of s[t+1])
//! ```
//! All buffers are flat row-major `Vec`s with the shape written beside them.
//! Parameters live in one flat vector (so AdamW is one loop); [`Layout`]
//! says where each named tensor sits in it.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
pub use crate::model::activation::Act;
use crate::util::memory::Bytes;
use crate::util::real::Real;
use crate::util::rng::Rng;

/// Input and output width: a token is a phase-space point `(x, p)`.
pub const D_IN: usize = 2;

/// Which attention scale to use: `1/sqrt(d_model)` (the seed's) or `1/sqrt(d_head)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttnScale {
    /// `1/sqrt(d_model)`.
    DModel,
    /// `1/sqrt(d_head)`.
    DHead,
}

/// Which positions carry a prediction in the loss (`[train] loss_positions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossPositions {
    /// Every position predicts the next state (needs the causal mask: without
    /// it, position t sees its own target, token t + 1).
    All,
    /// Only the last position.
    Last,
}

impl LossPositions {
    /// The positions scored when none are set: all with the causal mask,
    /// the last without it.
    pub fn following(causal: bool) -> LossPositions {
        if causal { LossPositions::All } else { LossPositions::Last }
    }
}

/// The architecture of one model (docs/model-and-checkpoint.md; the `[model]` config table plus `n_ctx`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Residual stream width D.
    pub d_model: usize,
    /// Heads per layer H.
    pub n_heads: usize,
    /// Width of each head K.
    pub d_head: usize,
    /// Number of layers L.
    pub n_layers: usize,
    /// Hidden width M of each layer's MLP block; 0 (the default, and in
    /// checkpoints written before MLP blocks): attention only.
    #[serde(default)]
    pub d_mlp: usize,
    /// The MLP activation (meaningless when `d_mlp` is 0).
    #[serde(default)]
    pub act: Act,
    /// Context length T (tokens per sequence).
    pub n_ctx: usize,
    /// Attention score scale.
    pub attn_scale: AttnScale,
    /// Causal mask on (each position sees itself and earlier ones).
    pub causal: bool,
    /// Learned positional embeddings on.
    pub positional: bool,
    /// Positions scored by the loss; `None` (absent in older checkpoints):
    /// all with the causal mask, the last without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_positions: Option<LossPositions>,
}

impl ModelConfig {
    /// The seed model: one layer, one head, d_model = d_head = 2, context 1.
    pub fn seed() -> Self {
        ModelConfig {
            d_model: 2,
            n_heads: 1,
            d_head: 2,
            n_layers: 1,
            d_mlp: 0,
            act: Act::Gelu,
            n_ctx: 1,
            attn_scale: AttnScale::DModel,
            causal: true,
            positional: false,
            loss_positions: None,
        }
    }

    /// The multiplier applied to `q·k`.
    pub fn scale(&self) -> f64 {
        let width = match self.attn_scale {
            AttnScale::DModel => self.d_model,
            AttnScale::DHead => self.d_head,
        };
        1.0 / (width as f64).sqrt()
    }

    /// Positions that carry a prediction in the loss: `loss_positions`, by
    /// default all of them with the causal mask and only the last one without
    /// it (docs/physics.md).
    pub fn scored_positions(&self) -> Range<usize> {
        match self.resolved().loss_positions {
            Some(LossPositions::All) => 0..self.n_ctx,
            _ => self.n_ctx - 1..self.n_ctx,
        }
    }

    /// The same config with `loss_positions` spelt out (`None` resolved from
    /// the mask): two configs that train and score alike compare equal.
    pub fn resolved(&self) -> ModelConfig {
        let default = LossPositions::following(self.causal);
        ModelConfig { loss_positions: Some(self.loss_positions.unwrap_or(default)), ..self.clone() }
    }

    /// The number of parameters, or `None` when it overflows `usize`.
    /// Mirrors [`Layout::new`]; checking it first makes every range of the
    /// layout safe.
    pub fn parameter_count(&self) -> Option<usize> {
        let (d, h, k, m) = (self.d_model, self.n_heads, self.d_head, self.d_mlp);
        let io = (2 * D_IN + 1).checked_mul(d)?.checked_add(D_IN)?;
        let pos = if self.positional { self.n_ctx.checked_mul(d)? } else { 0 };
        let attn = h.checked_mul(d)?.checked_mul(k)?.checked_mul(4)?;
        let mlp = if self.has_mlp() { d.checked_mul(2)?.checked_add(1)?.checked_mul(m)?.checked_add(d)? } else { 0 };
        io.checked_add(pos)?.checked_add(attn.checked_add(mlp)?.checked_mul(self.n_layers)?)
    }

    /// Bytes of the parameters at `size` bytes per value, without building a
    /// [`Layout`] (saturating: safe for any dimensions).
    pub fn parameter_bytes(&self, size: usize) -> Bytes {
        self.parameter_count().map_or(Bytes(u64::MAX), |n| Bytes::of_values(&[n], size))
    }

    /// True if the layers have MLP blocks.
    pub fn has_mlp(&self) -> bool {
        self.d_mlp > 0
    }

    /// True if the model is one affine map of its input (context 1, no MLP
    /// blocks): softmax over one token is 1 and every layer is linear.
    pub fn is_affine(&self) -> bool {
        self.n_ctx == 1 && !self.has_mlp()
    }
}

// ---------------------------------------------------------------- parameters

/// Where one layer's MLP weights sit in the flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct MlpLayout {
    /// `W_in` `[D, M]`.
    pub w_in: Range<usize>,
    /// `b_in` `[M]`.
    pub b_in: Range<usize>,
    /// `W_out` `[M, D]`.
    pub w_out: Range<usize>,
    /// `b_out` `[D]`.
    pub b_out: Range<usize>,
}

/// Where one layer's weights sit in the flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockLayout {
    /// `W_Q` `[H, D, K]`.
    pub w_q: Range<usize>,
    /// `W_K` `[H, D, K]`.
    pub w_k: Range<usize>,
    /// `W_V` `[H, D, K]`.
    pub w_v: Range<usize>,
    /// `W_O` `[H, K, D]`.
    pub w_o: Range<usize>,
    /// The MLP block, when the model has one.
    pub mlp: Option<MlpLayout>,
}

/// Where every named tensor sits in the flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// `embed.W_E` `[I, D]`.
    pub w_e: Range<usize>,
    /// `embed.b_E` `[D]`.
    pub b_e: Range<usize>,
    /// `pos_embed.W_pos` `[T, D]`, when positional embeddings are on.
    pub w_pos: Option<Range<usize>>,
    /// One entry per layer.
    pub blocks: Vec<BlockLayout>,
    /// `unembed.W_U` `[D, I]`.
    pub w_u: Range<usize>,
    /// `unembed.b_U` `[I]`.
    pub b_u: Range<usize>,
    /// Total number of parameters.
    pub len: usize,
}

/// A named parameter tensor: its checkpoint name, shape and place.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// TransformerLens name, e.g. `blocks.0.attn.W_Q`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Range in the flat parameter vector.
    pub range: Range<usize>,
}

impl Layout {
    /// The layout for `cfg`, tensors in checkpoint order.
    pub fn new(cfg: &ModelConfig) -> Self {
        let (d, h, k, m) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp);
        let mut next = 0;
        let mut take = |n: usize| {
            next += n;
            next - n..next
        };
        let w_e = take(D_IN * d);
        let b_e = take(d);
        let w_pos = cfg.positional.then(|| take(cfg.n_ctx * d));
        let blocks = (0..cfg.n_layers)
            .map(|_| BlockLayout {
                w_q: take(h * d * k),
                w_k: take(h * d * k),
                w_v: take(h * d * k),
                w_o: take(h * k * d),
                mlp: cfg.has_mlp().then(|| MlpLayout {
                    w_in: take(d * m),
                    b_in: take(m),
                    w_out: take(m * d),
                    b_out: take(d),
                }),
            })
            .collect();
        let w_u = take(d * D_IN);
        let b_u = take(D_IN);
        Layout { w_e, b_e, w_pos, blocks, w_u, b_u, len: next }
    }

    /// Every tensor with its checkpoint name and shape (docs/model-and-checkpoint.md), in order.
    pub fn tensors(&self, cfg: &ModelConfig) -> Vec<TensorInfo> {
        let (d, h, k, m) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp);
        let info =
            |name: String, shape: Vec<usize>, range: &Range<usize>| TensorInfo { name, shape, range: range.clone() };
        let mut out =
            vec![info("embed.W_E".into(), vec![D_IN, d], &self.w_e), info("embed.b_E".into(), vec![d], &self.b_e)];
        if let Some(w_pos) = &self.w_pos {
            out.push(info("pos_embed.W_pos".into(), vec![cfg.n_ctx, d], w_pos));
        }
        for (l, b) in self.blocks.iter().enumerate() {
            out.push(info(format!("blocks.{l}.attn.W_Q"), vec![h, d, k], &b.w_q));
            out.push(info(format!("blocks.{l}.attn.W_K"), vec![h, d, k], &b.w_k));
            out.push(info(format!("blocks.{l}.attn.W_V"), vec![h, d, k], &b.w_v));
            out.push(info(format!("blocks.{l}.attn.W_O"), vec![h, k, d], &b.w_o));
            if let Some(mlp) = &b.mlp {
                out.push(info(format!("blocks.{l}.mlp.W_in"), vec![d, m], &mlp.w_in));
                out.push(info(format!("blocks.{l}.mlp.b_in"), vec![m], &mlp.b_in));
                out.push(info(format!("blocks.{l}.mlp.W_out"), vec![m, d], &mlp.w_out));
                out.push(info(format!("blocks.{l}.mlp.b_out"), vec![d], &mlp.b_out));
            }
        }
        out.push(info("unembed.W_U".into(), vec![d, D_IN], &self.w_u));
        out.push(info("unembed.b_U".into(), vec![D_IN], &self.b_u));
        out
    }
}

/// A model: its architecture and its weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Model<F: Real> {
    /// Architecture.
    pub cfg: ModelConfig,
    /// Where each tensor sits in `params`.
    pub layout: Layout,
    /// All weights, flat `[layout.len]`.
    pub params: Vec<F>,
}

impl<F: Real> Model<F> {
    /// A model with all weights zero.
    pub fn zeros(cfg: &ModelConfig) -> Self {
        let layout = Layout::new(cfg);
        let params = vec![F::zero(); layout.len];
        Model { cfg: cfg.clone(), layout, params }
    }

    /// Random initial weights: every matrix `N(0, 1/fan_in)` (fan_in the
    /// next-to-last dimension), biases zero, positional embeddings `N(0, 0.1²)`.
    pub fn init(cfg: &ModelConfig, rng: &mut Rng) -> Self {
        let mut model = Self::zeros(cfg);
        for t in model.layout.tensors(cfg) {
            let std = match t.name.as_str() {
                _ if t.shape.len() == 1 => 0.0, // b_E, b_U, b_in, b_out
                "pos_embed.W_pos" => 0.1,
                _ => 1.0 / (t.shape[t.shape.len() - 2] as f64).sqrt(),
            };
            for w in &mut model.params[t.range] {
                *w = F::of(std * rng.normal());
            }
        }
        model
    }

    /// The same model in f64 (exact: widening f32 loses nothing).
    pub fn to_f64(&self) -> Model<f64> {
        Model {
            cfg: self.cfg.clone(),
            layout: self.layout.clone(),
            params: self.params.iter().map(|w| w.f64()).collect(),
        }
    }

    /// The named tensor's values, if `name` is one of [`Layout::tensors`].
    pub fn tensor(&self, name: &str) -> Option<&[F]> {
        let t = self.layout.tensors(&self.cfg).into_iter().find(|t| t.name == name)?;
        Some(&self.params[t.range])
    }
}

// ---------------------------------------------------------------- activations

/// The activations one forward pass over many sequences (evaluation,
/// interpretation) may hold at once; the sequences go through in chunks of
/// [`Activations::chunk`], so a large validation set needs no more.
pub const CHUNK_BYTES: Bytes = Bytes(64 << 20);

/// Every intermediate of one forward pass, for a batch of up to `capacity`
/// sequences. Field names match the cache names of [`Activations::get`].
#[derive(Clone, Debug)]
pub struct Activations<F> {
    /// Sequences in the last forward pass.
    pub batch: usize,
    /// `embed` `[B, T, D]`: `s W_E + b_E` (before positional embeddings).
    pub embed: Vec<F>,
    /// `blocks.{l}.resid_pre` = `resid[l]`, `blocks.{l}.resid_post` = `resid[l+1]`; each `[B, T, D]`.
    pub resid: Vec<Vec<F>>,
    /// Per layer.
    pub blocks: Vec<BlockActivations<F>>,
    /// `pred` `[B, T, I]`: the prediction of the next point at every position.
    pub pred: Vec<F>,
}

/// One layer's intermediates (the four MLP buffers are empty without MLP blocks).
#[derive(Clone, Debug)]
pub struct BlockActivations<F> {
    /// `blocks.{l}.attn.q` `[B, T, H, K]`.
    pub q: Vec<F>,
    /// `blocks.{l}.attn.k` `[B, T, H, K]`.
    pub k: Vec<F>,
    /// `blocks.{l}.attn.v` `[B, T, H, K]`.
    pub v: Vec<F>,
    /// `blocks.{l}.attn.scores` `[B, H, T, T]`: scaled `q·k`, masked entries 0.
    pub scores: Vec<F>,
    /// `blocks.{l}.attn.pattern` `[B, H, T, T]`: softmax over the last axis (keys).
    pub pattern: Vec<F>,
    /// `blocks.{l}.attn.z` `[B, T, H, K]`: pattern-weighted values.
    pub z: Vec<F>,
    /// `blocks.{l}.attn.result` `[B, T, H, D]`: each head's write to the residual.
    pub result: Vec<F>,
    /// `blocks.{l}.resid_mid` `[B, T, D]`: the residual after attention, before the MLP.
    pub mid: Vec<F>,
    /// `blocks.{l}.mlp.pre` `[B, T, M]`: `mid W_in + b_in`.
    pub pre: Vec<F>,
    /// `blocks.{l}.mlp.post` `[B, T, M]`: `act(pre)`.
    pub post: Vec<F>,
    /// `blocks.{l}.mlp_out` `[B, T, D]`: `post W_out + b_out`, the MLP's write to the residual.
    pub mlp_out: Vec<F>,
}

impl<F: Real> Activations<F> {
    /// Buffers for up to `capacity` sequences.
    pub fn new(cfg: &ModelConfig, capacity: usize) -> Self {
        let n = capacity * cfg.n_ctx;
        let (d, h, k, t) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx);
        let mlp = |width: usize| vec![F::zero(); if cfg.has_mlp() { n * width } else { 0 }];
        let block = BlockActivations {
            q: vec![F::zero(); n * h * k],
            k: vec![F::zero(); n * h * k],
            v: vec![F::zero(); n * h * k],
            scores: vec![F::zero(); n * h * t],
            pattern: vec![F::zero(); n * h * t],
            z: vec![F::zero(); n * h * k],
            result: vec![F::zero(); n * h * d],
            mid: mlp(d),
            pre: mlp(cfg.d_mlp),
            post: mlp(cfg.d_mlp),
            mlp_out: mlp(d),
        };
        Activations {
            batch: 0,
            embed: vec![F::zero(); n * d],
            resid: vec![vec![F::zero(); n * d]; cfg.n_layers + 1],
            blocks: vec![block; cfg.n_layers],
            pred: vec![F::zero(); n * D_IN],
        }
    }

    /// Bytes of [`Activations::new`] for `capacity` sequences at `size` bytes
    /// per value (saturating).
    pub fn bytes(cfg: &ModelConfig, capacity: usize, size: usize) -> Bytes {
        let (d, h, k, t, l) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx, cfg.n_layers);
        let values = |dims: &[usize]| Bytes::of_values(&[&[capacity, t], dims].concat(), size);
        let attn = values(&[4, h, k]) + values(&[2, h, t]) + values(&[h, d]); // q k v z, scores pattern, result
        let mlp = values(&[2, d]) + values(&[2, cfg.d_mlp]); // mid mlp_out, pre post
        let block = attn + if cfg.has_mlp() { mlp } else { Bytes::ZERO };
        values(&[l + 2, d]) + block * l + values(&[D_IN]) // embed and resid, blocks, pred
    }

    /// Sequences per forward pass when going through `n` of them: as many as
    /// fit in [`CHUNK_BYTES`] of activations, at least 1, at most `n`.
    pub fn chunk(cfg: &ModelConfig, n: usize) -> usize {
        chunk_sequences(cfg, n, size_of::<F>())
    }

    /// Sequences the buffers can hold.
    pub fn capacity(&self, cfg: &ModelConfig) -> usize {
        self.pred.len() / (cfg.n_ctx * D_IN)
    }

    /// Every cache name this model has, in forward order.
    pub fn names(cfg: &ModelConfig) -> Vec<String> {
        let mut names = vec!["embed".to_string()];
        for l in 0..cfg.n_layers {
            names.push(format!("blocks.{l}.resid_pre"));
            for a in ["q", "k", "v", "scores", "pattern", "z", "result"] {
                names.push(format!("blocks.{l}.attn.{a}"));
            }
            if cfg.has_mlp() {
                for a in ["resid_mid", "mlp.pre", "mlp.post", "mlp_out"] {
                    names.push(format!("blocks.{l}.{a}"));
                }
            }
            names.push(format!("blocks.{l}.resid_post"));
        }
        names.push("pred".to_string());
        names
    }

    /// The activation called `name` (see [`Activations::names`]) for the last
    /// forward pass, with its shape.
    pub fn get(&self, cfg: &ModelConfig, name: &str) -> Option<(&[F], Vec<usize>)> {
        let shape = Self::shape(cfg, name, self.batch)?;
        let buf = match name {
            "embed" => &self.embed,
            "pred" => &self.pred,
            _ => {
                let (l, what) = name.strip_prefix("blocks.")?.split_once('.')?;
                let l: usize = l.parse().ok()?;
                let a = &self.blocks[l];
                match what {
                    "resid_pre" => &self.resid[l],
                    "resid_post" => &self.resid[l + 1],
                    "attn.q" => &a.q,
                    "attn.k" => &a.k,
                    "attn.v" => &a.v,
                    "attn.scores" => &a.scores,
                    "attn.pattern" => &a.pattern,
                    "attn.z" => &a.z,
                    "resid_mid" => &a.mid,
                    "mlp.pre" => &a.pre,
                    "mlp.post" => &a.post,
                    "mlp_out" => &a.mlp_out,
                    _ => &a.result,
                }
            }
        };
        Some((&buf[..shape.iter().product()], shape))
    }

    /// The shape of the activation called `name` (see [`Activations::names`])
    /// for `batch` sequences; `None` for a name the model does not have.
    pub fn shape(cfg: &ModelConfig, name: &str, batch: usize) -> Option<Vec<usize>> {
        let (b, t, d, h, k) = (batch, cfg.n_ctx, cfg.d_model, cfg.n_heads, cfg.d_head);
        match name {
            "embed" => return Some(vec![b, t, d]),
            "pred" => return Some(vec![b, t, D_IN]),
            _ => {}
        }
        let (l, what) = name.strip_prefix("blocks.")?.split_once('.')?;
        l.parse().ok().filter(|&l: &usize| l < cfg.n_layers)?;
        match what {
            "resid_pre" | "resid_post" => Some(vec![b, t, d]),
            "attn.q" | "attn.k" | "attn.v" | "attn.z" => Some(vec![b, t, h, k]),
            "attn.scores" | "attn.pattern" => Some(vec![b, h, t, t]),
            "attn.result" => Some(vec![b, t, h, d]),
            "resid_mid" | "mlp_out" if cfg.has_mlp() => Some(vec![b, t, d]),
            "mlp.pre" | "mlp.post" if cfg.has_mlp() => Some(vec![b, t, cfg.d_mlp]),
            _ => None,
        }
    }
}

/// [`Activations::chunk`] at `size` bytes per value.
pub fn chunk_sequences(cfg: &ModelConfig, n: usize, size: usize) -> usize {
    let per_sequence = Activations::<f32>::bytes(cfg, 1, size).get().max(1);
    usize::try_from(CHUNK_BYTES.get() / per_sequence).unwrap_or(usize::MAX).clamp(1, n.max(1))
}

// ---------------------------------------------------------------- forward

impl<F: Real> Model<F> {
    /// Runs the model on `input` `[B, T, I]`, filling every field of `acts`.
    /// `B` is `input.len() / (T·I)` and must not exceed `acts`' capacity.
    pub fn forward(&self, input: &[F], acts: &mut Activations<F>) {
        let cfg = &self.cfg;
        let n = input.len() / D_IN;
        assert_eq!(n % cfg.n_ctx, 0, "input is not a whole number of sequences");
        assert!(n / cfg.n_ctx <= acts.capacity(cfg), "batch larger than the activation buffers");
        acts.batch = n / cfg.n_ctx;
        let p = &self.params;
        let l = &self.layout;
        embed_forward(input, &p[l.w_e.clone()], &p[l.b_e.clone()], n, cfg.d_model, &mut acts.embed);
        let r0 = &mut acts.resid[0][..n * cfg.d_model];
        r0.copy_from_slice(&acts.embed[..n * cfg.d_model]);
        if let Some(w_pos) = &l.w_pos {
            pos_forward(&p[w_pos.clone()], cfg.n_ctx, cfg.d_model, r0);
        }
        for (li, (bl, a)) in l.blocks.iter().zip(acts.blocks.iter_mut()).enumerate() {
            let (before, after) = acts.resid.split_at_mut(li + 1);
            let r_in = &before[li][..n * cfg.d_model];
            let r_out = &mut after[0][..n * cfg.d_model];
            for (w, out) in [(&bl.w_q, &mut a.q), (&bl.w_k, &mut a.k), (&bl.w_v, &mut a.v)] {
                head_proj_forward(r_in, &p[w.clone()], n, cfg, out);
            }
            attention_forward(a, acts.batch, cfg);
            match &bl.mlp {
                None => head_out_forward(&a.z, &p[bl.w_o.clone()], r_in, n, cfg, &mut a.result, r_out),
                Some(mlp) => {
                    head_out_forward(&a.z, &p[bl.w_o.clone()], r_in, n, cfg, &mut a.result, &mut a.mid);
                    mlp_forward(p, mlp, n, cfg, a, r_out);
                }
            }
        }
        unembed_forward(
            &acts.resid[cfg.n_layers],
            &p[l.w_u.clone()],
            &p[l.b_u.clone()],
            n,
            cfg.d_model,
            &mut acts.pred,
        );
    }
}

/// `embed[n] = s[n] W_E + b_E`.
fn embed_forward<F: Real>(s: &[F], w_e: &[F], b_e: &[F], n: usize, d: usize, embed: &mut [F]) {
    for (row, si) in embed[..n * d].chunks_exact_mut(d).zip(s.chunks_exact(D_IN)) {
        for j in 0..d {
            row[j] = b_e[j] + si[0] * w_e[j] + si[1] * w_e[d + j];
        }
    }
}

/// `r[b, t] += W_pos[t]`.
fn pos_forward<F: Real>(w_pos: &[F], t: usize, d: usize, r: &mut [F]) {
    for seq in r.chunks_exact_mut(t * d) {
        seq.iter_mut().zip(w_pos).for_each(|(x, w)| *x += *w);
    }
}

/// `out[n, h] = r[n] W[h]` for `W` `[H, D, K]`; `out` is `[N, H, K]`.
fn head_proj_forward<F: Real>(r: &[F], w: &[F], n: usize, cfg: &ModelConfig, out: &mut [F]) {
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
fn attention_forward<F: Real>(a: &mut BlockActivations<F>, batch: usize, cfg: &ModelConfig) {
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

/// `result[n, h] = z[n, h] W_O[h]` and `r_out = r_in + Σ_h result[n, h]`.
fn head_out_forward<F: Real>(
    z: &[F],
    w_o: &[F],
    r_in: &[F],
    n: usize,
    cfg: &ModelConfig,
    result: &mut [F],
    r_out: &mut [F],
) {
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    for i in 0..n {
        let ro = &mut r_out[i * d..][..d];
        ro.copy_from_slice(&r_in[i * d..][..d]);
        for hh in 0..h {
            let zi = &z[(i * h + hh) * k..][..k];
            let res = &mut result[(i * h + hh) * d..][..d];
            for j in 0..d {
                res[j] = (0..k).map(|kk| zi[kk] * w_o[(hh * k + kk) * d + j]).sum();
                ro[j] += res[j];
            }
        }
    }
}

/// `pre = mid W_in + b_in`, `post = act(pre)`, `mlp_out = post W_out + b_out`,
/// `r_out = mid + mlp_out`.
fn mlp_forward<F: Real>(
    p: &[F],
    l: &MlpLayout,
    n: usize,
    cfg: &ModelConfig,
    a: &mut BlockActivations<F>,
    r_out: &mut [F],
) {
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let (w_in, b_in, w_out, b_out) = (&p[l.w_in.clone()], &p[l.b_in.clone()], &p[l.w_out.clone()], &p[l.b_out.clone()]);
    for i in 0..n {
        let mid = &a.mid[i * d..][..d];
        let (pre, post) = (&mut a.pre[i * m..][..m], &mut a.post[i * m..][..m]);
        for u in 0..m {
            pre[u] = b_in[u] + (0..d).map(|j| mid[j] * w_in[j * m + u]).sum::<F>();
            post[u] = cfg.act.apply(pre[u]);
        }
        let (out, ro) = (&mut a.mlp_out[i * d..][..d], &mut r_out[i * d..][..d]);
        for j in 0..d {
            out[j] = b_out[j] + (0..m).map(|u| post[u] * w_out[u * d + j]).sum::<F>();
            ro[j] = mid[j] + out[j];
        }
    }
}

/// `pred[n] = r[n] W_U + b_U`.
fn unembed_forward<F: Real>(r: &[F], w_u: &[F], b_u: &[F], n: usize, d: usize, pred: &mut [F]) {
    for (ri, pi) in r[..n * d].chunks_exact(d).zip(pred.chunks_exact_mut(D_IN)) {
        for c in 0..D_IN {
            pi[c] = b_u[c] + (0..d).map(|j| ri[j] * w_u[j * D_IN + c]).sum::<F>();
        }
    }
}

// ---------------------------------------------------------------- loss

/// Mean over scored tokens of `‖pred − target‖²` (docs/physics.md), and its
/// gradient `d_pred` `[B, T, I]` (zero at unscored positions).
pub fn mse_loss<F: Real>(cfg: &ModelConfig, pred: &[F], target: &[F], d_pred: &mut [F]) -> f64 {
    let t = cfg.n_ctx;
    let scored = cfg.scored_positions();
    let count = target.len() / (t * D_IN) * scored.len();
    let g = F::of(2.0 / count as f64);
    let mut total = 0.0;
    for (i, ((p, y), dp)) in
        pred.chunks_exact(D_IN).zip(target.chunks_exact(D_IN)).zip(d_pred.chunks_exact_mut(D_IN)).enumerate()
    {
        let on = scored.contains(&(i % t));
        for c in 0..D_IN {
            let e = p[c] - y[c];
            dp[c] = if on { g * e } else { F::zero() };
            total += if on { e.f64() * e.f64() } else { 0.0 };
        }
    }
    total / count as f64
}

/// Mean over scored tokens of `‖ŝ − s‖²` on `data` (the training loss, docs/physics.md).
pub fn mse<F: Real>(model: &Model<F>, data: &Dataset<F>) -> f64 {
    let cfg = &model.cfg;
    let w = cfg.n_ctx * D_IN;
    let chunk = Activations::<F>::chunk(cfg, data.len());
    let mut acts = Activations::new(cfg, chunk);
    let scored = cfg.scored_positions();
    let mut total = 0.0;
    for (inputs, targets) in data.inputs.chunks(chunk * w).zip(data.targets.chunks(chunk * w)) {
        model.forward(inputs, &mut acts);
        for (i, (p, y)) in acts.pred.chunks_exact(D_IN).zip(targets.chunks_exact(D_IN)).enumerate() {
            if scored.contains(&(i % cfg.n_ctx)) {
                total += p.iter().zip(y).map(|(a, b)| (a.f64() - b.f64()).powi(2)).sum::<f64>();
            }
        }
    }
    total / (data.len() * scored.len()) as f64
}

// ---------------------------------------------------------------- backward

/// Scratch buffers for the backward pass (allocated once per batch size).
#[derive(Clone, Debug)]
pub struct Scratch<F> {
    /// `d pred` `[B, T, I]`.
    pub d_pred: Vec<F>,
    d_resid: Vec<F>,   // [B, T, D]
    d_q: Vec<F>,       // [B, T, H, K]
    d_k: Vec<F>,       // [B, T, H, K]
    d_v: Vec<F>,       // [B, T, H, K]
    d_z: Vec<F>,       // [B, T, H, K]
    d_pattern: Vec<F>, // [T]  (one query row at a time)
    d_pre: Vec<F>,     // [M]  (one token at a time)
}

impl<F: Real> Scratch<F> {
    /// Bytes of [`Scratch::new`] for `capacity` sequences at `size` bytes per value (saturating).
    pub fn bytes(cfg: &ModelConfig, capacity: usize, size: usize) -> Bytes {
        let per_token = [D_IN, cfg.d_model, cfg.n_heads * cfg.d_head * 4];
        per_token.iter().map(|&w| Bytes::of_values(&[capacity, cfg.n_ctx, w], size)).sum::<Bytes>()
            + Bytes::of_values(&[cfg.n_ctx + cfg.d_mlp], size)
    }

    /// Buffers for up to `capacity` sequences.
    pub fn new(cfg: &ModelConfig, capacity: usize) -> Self {
        let n = capacity * cfg.n_ctx;
        let hk = cfg.n_heads * cfg.d_head;
        Scratch {
            d_pred: vec![F::zero(); n * D_IN],
            d_resid: vec![F::zero(); n * cfg.d_model],
            d_q: vec![F::zero(); n * hk],
            d_k: vec![F::zero(); n * hk],
            d_v: vec![F::zero(); n * hk],
            d_z: vec![F::zero(); n * hk],
            d_pattern: vec![F::zero(); cfg.n_ctx],
            d_pre: vec![F::zero(); cfg.d_mlp],
        }
    }
}

impl<F: Real> Model<F> {
    /// Gradient of the loss with respect to every parameter, written into
    /// `grads` `[layout.len]` (overwritten). Needs the activations of the
    /// forward pass on `input` and `scratch.d_pred` from [`mse_loss`].
    pub fn backward(&self, input: &[F], acts: &Activations<F>, scratch: &mut Scratch<F>, grads: &mut [F]) {
        let cfg = &self.cfg;
        let (p, l) = (&self.params, &self.layout);
        let n = acts.batch * cfg.n_ctx;
        let d = cfg.d_model;
        grads.iter_mut().for_each(|g| *g = F::zero());
        let Scratch { d_pred, d_resid, d_q, d_k, d_v, d_z, d_pattern, d_pre } = scratch;
        let d_resid = &mut d_resid[..n * d];
        unembed_backward(&acts.resid[cfg.n_layers], &p[l.w_u.clone()], d_pred, n, d, grads, l, d_resid);
        for (li, bl) in l.blocks.iter().enumerate().rev() {
            let a = &acts.blocks[li];
            let r_in = &acts.resid[li];
            if let Some(mlp) = &bl.mlp {
                // d_resid turns from d r_out into d mid: the residual passes it
                // through, the MLP adds its part.
                mlp_backward(p, mlp, a, n, cfg, d_pre, grads, d_resid);
            }
            // The residual passes d_resid through unchanged; the heads add to it.
            head_out_backward(&a.z, &p[bl.w_o.clone()], d_resid, n, cfg, &mut grads[bl.w_o.clone()], d_z);
            attention_backward(a, d_z, acts.batch, cfg, d_pattern, d_q, d_k, d_v);
            for (w, dx) in [(&bl.w_q, &*d_q), (&bl.w_k, &*d_k), (&bl.w_v, &*d_v)] {
                head_proj_backward(r_in, &p[w.clone()], dx, n, cfg, &mut grads[w.clone()], d_resid);
            }
        }
        if let Some(w_pos) = &l.w_pos {
            for seq in d_resid.chunks_exact(cfg.n_ctx * d) {
                grads[w_pos.clone()].iter_mut().zip(seq).for_each(|(g, x)| *g += *x);
            }
        }
        embed_backward(input, d_resid, n, d, grads, l);
    }

    /// Gradient of the loss with respect to the input states, written into
    /// `d_input` `[B, T, I]` (overwritten): `d s[n] = d r0[n] W_Eᵀ`. Call it
    /// right after [`Model::backward`] on the same `acts`: it reads the
    /// gradient w.r.t. the residual stream entering layer 0 that `backward`
    /// leaves in `scratch`. Row convention: `d_input[n, c] = ∂loss/∂s[n, c]`.
    pub fn input_grad(&self, acts: &Activations<F>, scratch: &Scratch<F>, d_input: &mut [F]) {
        let (d, n) = (self.cfg.d_model, acts.batch * self.cfg.n_ctx);
        let w_e = &self.params[self.layout.w_e.clone()];
        for (ds, dr) in d_input[..n * D_IN].chunks_exact_mut(D_IN).zip(scratch.d_resid[..n * d].chunks_exact(d)) {
            for (c, x) in ds.iter_mut().enumerate() {
                *x = (0..d).map(|j| dr[j] * w_e[c * d + j]).sum();
            }
        }
    }
}

/// `dW_U += rᵀ d_pred`, `db_U += Σ d_pred`, `d_resid = d_pred W_Uᵀ`.
#[allow(clippy::too_many_arguments)]
fn unembed_backward<F: Real>(
    r: &[F],
    w_u: &[F],
    d_pred: &[F],
    n: usize,
    d: usize,
    grads: &mut [F],
    l: &Layout,
    d_resid: &mut [F],
) {
    for i in 0..n {
        let (ri, dp) = (&r[i * d..][..d], &d_pred[i * D_IN..][..D_IN]);
        for c in 0..D_IN {
            grads[l.b_u.start + c] += dp[c];
            for j in 0..d {
                grads[l.w_u.start + j * D_IN + c] += ri[j] * dp[c];
            }
        }
        for j in 0..d {
            d_resid[i * d + j] = (0..D_IN).map(|c| dp[c] * w_u[j * D_IN + c]).sum();
        }
    }
}

/// Through `r_out = mid + act(mid W_in + b_in) W_out + b_out`: the weight
/// gradients, and `d_resid` (entering as `d r_out`) gains `d_pre W_inᵀ`,
/// leaving as `d mid`.
#[allow(clippy::too_many_arguments)]
fn mlp_backward<F: Real>(
    p: &[F],
    l: &MlpLayout,
    a: &BlockActivations<F>,
    n: usize,
    cfg: &ModelConfig,
    d_pre: &mut [F],
    grads: &mut [F],
    d_resid: &mut [F],
) {
    let (d, m) = (cfg.d_model, cfg.d_mlp);
    let (w_in, w_out) = (&p[l.w_in.clone()], &p[l.w_out.clone()]);
    for i in 0..n {
        let dr = &mut d_resid[i * d..][..d];
        let (mid, pre, post) = (&a.mid[i * d..][..d], &a.pre[i * m..][..m], &a.post[i * m..][..m]);
        for j in 0..d {
            grads[l.b_out.start + j] += dr[j];
        }
        for u in 0..m {
            let mut d_post = F::zero();
            for j in 0..d {
                grads[l.w_out.start + u * d + j] += post[u] * dr[j];
                d_post += dr[j] * w_out[u * d + j];
            }
            d_pre[u] = d_post * cfg.act.derivative(pre[u]);
            grads[l.b_in.start + u] += d_pre[u];
        }
        for j in 0..d {
            for u in 0..m {
                grads[l.w_in.start + j * m + u] += mid[j] * d_pre[u];
            }
            dr[j] += (0..m).map(|u| d_pre[u] * w_in[j * m + u]).sum::<F>();
        }
    }
}

/// `dW_O[h] += z[h]ᵀ d_out`, `d_z[h] = d_out W_O[h]ᵀ`.
fn head_out_backward<F: Real>(
    z: &[F],
    w_o: &[F],
    d_out: &[F],
    n: usize,
    cfg: &ModelConfig,
    d_w_o: &mut [F],
    d_z: &mut [F],
) {
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    for i in 0..n {
        let dout = &d_out[i * d..][..d];
        for hh in 0..h {
            for kk in 0..k {
                let zi = z[(i * h + hh) * k + kk];
                let w = &w_o[(hh * k + kk) * d..][..d];
                let dw = &mut d_w_o[(hh * k + kk) * d..][..d];
                dw.iter_mut().zip(dout).for_each(|(g, x)| *g += zi * *x);
                d_z[(i * h + hh) * k + kk] = w.iter().zip(dout).map(|(a, b)| *a * *b).sum();
            }
        }
    }
}

/// Through `z = pattern · v` and the softmax to `d_q`, `d_k`, `d_v` (overwritten).
#[allow(clippy::too_many_arguments)]
fn attention_backward<F: Real>(
    a: &BlockActivations<F>,
    d_z: &[F],
    batch: usize,
    cfg: &ModelConfig,
    d_pattern: &mut [F],
    d_q: &mut [F],
    d_k: &mut [F],
    d_v: &mut [F],
) {
    let (h, k, t) = (cfg.n_heads, cfg.d_head, cfg.n_ctx);
    let scale = F::of(cfg.scale());
    let n = batch * t;
    for buf in [&mut *d_q, &mut *d_k, &mut *d_v] {
        buf[..n * h * k].iter_mut().for_each(|x| *x = F::zero());
    }
    let tok = |b: usize, i: usize, hh: usize| ((b * t + i) * h + hh) * k;
    for b in 0..batch {
        for hh in 0..h {
            for i in 0..t {
                let row = ((b * h + hh) * t + i) * t;
                let keys = if cfg.causal { i + 1 } else { t };
                let dz = &d_z[tok(b, i, hh)..][..k];
                // d pattern[i, j] = dz[i]·v[j];  d v[j] += pattern[i, j] dz[i]
                for j in 0..keys {
                    let vj = &a.v[tok(b, j, hh)..][..k];
                    d_pattern[j] = dz.iter().zip(vj).map(|(x, y)| *x * *y).sum();
                    let w = a.pattern[row + j];
                    d_v[tok(b, j, hh)..][..k].iter_mut().zip(dz).for_each(|(g, x)| *g += w * *x);
                }
                // softmax: d s[j] = P[j] (d P[j] − Σ_m P[m] d P[m]), then through the scale
                let dot: F = (0..keys).map(|j| a.pattern[row + j] * d_pattern[j]).sum();
                for j in 0..keys {
                    let ds = a.pattern[row + j] * (d_pattern[j] - dot) * scale;
                    for kk in 0..k {
                        d_q[tok(b, i, hh) + kk] += ds * a.k[tok(b, j, hh) + kk];
                        d_k[tok(b, j, hh) + kk] += ds * a.q[tok(b, i, hh) + kk];
                    }
                }
            }
        }
    }
}

/// For `x = r W` with `W` `[H, D, K]`: `dW += rᵀ dx`, `d_resid += dx Wᵀ`.
fn head_proj_backward<F: Real>(
    r: &[F],
    w: &[F],
    dx: &[F],
    n: usize,
    cfg: &ModelConfig,
    d_w: &mut [F],
    d_resid: &mut [F],
) {
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    for i in 0..n {
        let ri = &r[i * d..][..d];
        let dxi = &dx[i * h * k..][..h * k];
        let dr = &mut d_resid[i * d..][..d];
        for hh in 0..h {
            for dd in 0..d {
                let wrow = &w[(hh * d + dd) * k..][..k];
                let gw = &mut d_w[(hh * d + dd) * k..][..k];
                let g = &dxi[hh * k..][..k];
                gw.iter_mut().zip(g).for_each(|(a, b)| *a += ri[dd] * *b);
                dr[dd] += wrow.iter().zip(g).map(|(a, b)| *a * *b).sum::<F>();
            }
        }
    }
}

/// `dW_E += sᵀ d_r0`, `db_E += Σ d_r0`.
fn embed_backward<F: Real>(s: &[F], d_r0: &[F], n: usize, d: usize, grads: &mut [F], l: &Layout) {
    for i in 0..n {
        let (si, dr) = (&s[i * D_IN..][..D_IN], &d_r0[i * d..][..d]);
        for j in 0..d {
            grads[l.b_e.start + j] += dr[j];
            for c in 0..D_IN {
                grads[l.w_e.start + c * d + j] += si[c] * dr[j];
            }
        }
    }
}
