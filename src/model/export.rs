//! Export to TransformerLens (docs/transformer-lens.md): a physlens model as
//! a state dict in TransformerLens's property format, which
//! `convert_tl_checkpoint` turns into what `TransformerBridge.boot_native`
//! loads with `strict=True`, plus the `TransformerBridgeConfig` kwargs as JSON.
//!
//! # Mapping
//! ```text
//! physlens                      TransformerLens                  why
//! embed.W_E        [2, D]       embed.W_E        [2, D]         same (d_vocab = 2: the input (x, p))
//! embed.b_E        [D]          (folded)                        TL has no embedding bias:
//! pos_embed.W_pos  [T, D] opt.  pos_embed.W_pos  [T, D]         W_pos + b_E (b_E on every row without W_pos)
//! blocks.{l}.attn.W_Q/W_K/W_V   blocks.{l}.attn.W_Q/W_K/W_V     same, [H, D, K]
//! blocks.{l}.attn.W_O           blocks.{l}.attn.W_O             same, [H, K, D]
//! (none)                        blocks.{l}.attn.b_Q/b_K/b_V     zeros [H, K] (the converter needs them)
//! (none)                        blocks.{l}.attn.b_O             zeros [D]
//! blocks.{l}.mlp.W_in/b_in/W_out/b_out                          same names and shapes (MLP models)
//! unembed.W_U [D, 2], b_U [2]   unembed.W_U, unembed.b_U        same
//! ```
//! The state sequence `s` `[B, T, 2]` enters TransformerLens as
//! `inputs_embeds = s W_E`; the bridge adds `W_pos + b_E`, so its residual
//! stream is physlens's exactly. The attention scale becomes TL's divisor
//! `attn_scale = √d_model` or `√d_head`; the mask becomes `attention_dir`
//! (`"causal"` or `"bidirectional"`).
//!
//! One corner: TransformerLens refuses `attn_scale = 1` when `d_head > 1`
//! (it reads it as "unscaled by mistake"). A physlens model with
//! `d_model = 1`, `d_head > 1` and `attn_scale = "d_model"` has exactly that
//! scale; it is exported with `attn_scale = √d_head` and `W_Q` multiplied by
//! `√d_head` (the same scores, to rounding; TL's `hook_q` is then `√d_head`
//! times physlens's `q`).
//!
//! # Example
//! ```
//! use physlens::model::export::{TL_CONFIG_KEY, to_transformer_lens};
//! use physlens::model::{Model, ModelConfig};
//!
//! let model = Model::<f64>::zeros(&ModelConfig::seed());
//! let export = to_transformer_lens(&model);
//! assert_eq!(export.tensor("pos_embed.W_pos").unwrap().shape, vec![1, 2]);
//! assert_eq!(export.config["attn_scale"], 2f64.sqrt());
//! assert_eq!(TL_CONFIG_KEY, "transformer_lens_config");
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::model::checkpoint::{self, encode};
use crate::model::{AttnScale, D_IN, Model, ModelConfig};
use crate::util::error::{Error, Result};
use crate::util::io::write_atomic;
use crate::util::real::{Dtype, Real};

/// The metadata key of the `TransformerBridgeConfig` kwargs (a JSON object as a string).
pub const TL_CONFIG_KEY: &str = "transformer_lens_config";

/// The `format` metadata value of an exported file (not a physlens checkpoint:
/// `physlens interpret` refuses it).
pub const EXPORT_FORMAT: &str = "physlens-transformer-lens/1";

/// The metadata key of the folded `embed.b_E` (a JSON array of numbers, exact):
/// with it the export can be undone (`W_pos = W_pos' − b_E`), and physlens's
/// `embed` activation recovered (`s W_E + b_E`).
pub const B_E_KEY: &str = "physlens_b_E";

/// The metadata keys [`save_transformer_lens`] writes itself; `extra` may not set them.
pub const RESERVED_EXPORT_KEYS: [&str; 4] = ["format", "physlens_model", B_E_KEY, TL_CONFIG_KEY];

// ---------------------------------------------------------------- types

/// One tensor of the exported state dict.
#[derive(Clone, Debug, PartialEq)]
pub struct TlTensor<F> {
    /// TransformerLens property name, e.g. `blocks.0.attn.b_Q`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Values, row-major, in the model's dtype.
    pub data: Vec<F>,
}

/// A model in TransformerLens's property format: the state dict and the
/// `TransformerBridgeConfig` kwargs.
#[derive(Clone, Debug, PartialEq)]
pub struct TlExport<F> {
    /// The tensors, in state-dict order (see the module table).
    pub tensors: Vec<TlTensor<F>>,
    /// The `TransformerBridgeConfig` kwargs (see [`transformer_lens_config`]).
    pub config: Value,
    /// `embed.b_E` `[D]`, folded into `pos_embed.W_pos` (kept for [`B_E_KEY`]).
    pub b_e: Vec<F>,
}

impl<F> TlExport<F> {
    /// The tensor called `name`, if the export has it.
    pub fn tensor(&self, name: &str) -> Option<&TlTensor<F>> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// What [`export_checkpoint`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportSummary {
    /// Tensors in the file.
    pub tensors: usize,
    /// Their dtype (the checkpoint's own).
    pub dtype: Dtype,
    /// The `TransformerBridgeConfig` kwargs written under [`TL_CONFIG_KEY`].
    pub config: Value,
}

// ---------------------------------------------------------------- mapping

/// TransformerLens's score divisor for `cfg`, and the factor `W_Q` is
/// multiplied by (1 except in the corner of the module docs).
fn tl_attn_scale(cfg: &ModelConfig) -> (f64, f64) {
    let width = match cfg.attn_scale {
        AttnScale::DModel => cfg.d_model,
        AttnScale::DHead => cfg.d_head,
    };
    if width == 1 && cfg.d_head > 1 {
        let s = (cfg.d_head as f64).sqrt();
        (s, s)
    } else {
        ((width as f64).sqrt(), 1.0)
    }
}

/// The `TransformerBridgeConfig` kwargs of `cfg`: `TransformerBridgeConfig(**config)`
/// then `TransformerBridge.boot_native(config, dtype=…)` builds the empty model.
///
/// Keys: `d_model`, `d_head`, `n_heads`, `n_layers`, `n_ctx`, `d_vocab` = 2,
/// `d_vocab_out` = 2, `d_mlp` (`null` for attention-only), `act_fn`
/// (`"gelu"`: the exact erf form in TL, as in physlens; or `"relu"`),
/// `attn_only`, `normalization_type` = `null`, `positional_embedding_type` =
/// `"standard"`, `use_attn_scale` = true, `attn_scale` (the divisor,
/// `√d_model` or `√d_head`), `attention_dir` (`"causal"` or
/// `"bidirectional"`), `architecture` = `"TransformerLensNative"`,
/// `model_name` = `"physlens"`, `tokenizer_prepends_bos` = false. The dtype is
/// not a kwarg: it is the tensors' own.
pub fn transformer_lens_config(cfg: &ModelConfig) -> Value {
    json!({
        "model_name": "physlens",
        "architecture": "TransformerLensNative",
        "d_model": cfg.d_model,
        "d_head": cfg.d_head,
        "n_heads": cfg.n_heads,
        "n_layers": cfg.n_layers,
        "n_ctx": cfg.n_ctx,
        "d_vocab": D_IN,
        "d_vocab_out": D_IN,
        "d_mlp": if cfg.has_mlp() { Some(cfg.d_mlp) } else { None },
        "act_fn": cfg.act.name(),
        "attn_only": !cfg.has_mlp(),
        "normalization_type": Value::Null,
        "positional_embedding_type": "standard",
        "use_attn_scale": true,
        "attn_scale": tl_attn_scale(cfg).0,
        "attention_dir": if cfg.causal { "causal" } else { "bidirectional" },
        "tokenizer_prepends_bos": false,
    })
}

/// `model` in TransformerLens's property format, in the model's own dtype.
///
/// # Shapes
/// ```text
/// embed.W_E                         [2, D]
/// pos_embed.W_pos                   [T, D]   = W_pos + b_E (b_E on every row without W_pos)
/// blocks.{l}.attn.W_Q / W_K / W_V   [H, D, K]
/// blocks.{l}.attn.W_O               [H, K, D]
/// blocks.{l}.attn.b_Q / b_K / b_V   [H, K]   zeros
/// blocks.{l}.attn.b_O               [D]      zeros
/// blocks.{l}.mlp.W_in [D, M], b_in [M], W_out [M, D], b_out [D]   (MLP models only)
/// unembed.W_U                       [D, 2]
/// unembed.b_U                       [2]
/// ```
pub fn to_transformer_lens<F: Real>(model: &Model<F>) -> TlExport<F> {
    let cfg = &model.cfg;
    let (d, h, k, t) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx);
    let (p, l) = (&model.params, &model.layout);
    let q_factor = F::of(tl_attn_scale(cfg).1);
    let copy = |name: String, shape: Vec<usize>, range: &std::ops::Range<usize>| TlTensor {
        name,
        shape,
        data: p[range.clone()].to_vec(),
    };
    let zeros =
        |name: String, shape: Vec<usize>| TlTensor { data: vec![F::zero(); shape.iter().product()], name, shape };

    let b_e = &p[l.b_e.clone()];
    let w_pos: Vec<F> = match &l.w_pos {
        Some(range) => {
            p[range.clone()].chunks_exact(d).flat_map(|row| row.iter().zip(b_e).map(|(w, b)| *w + *b)).collect()
        }
        None => b_e.iter().copied().cycle().take(t * d).collect(),
    };
    let mut out = vec![
        copy("embed.W_E".into(), vec![D_IN, d], &l.w_e),
        TlTensor { name: "pos_embed.W_pos".into(), shape: vec![t, d], data: w_pos },
    ];
    for (li, b) in l.blocks.iter().enumerate() {
        let mut w_q = copy(format!("blocks.{li}.attn.W_Q"), vec![h, d, k], &b.w_q);
        w_q.data.iter_mut().for_each(|w| *w *= q_factor);
        out.push(w_q);
        out.push(copy(format!("blocks.{li}.attn.W_K"), vec![h, d, k], &b.w_k));
        out.push(copy(format!("blocks.{li}.attn.W_V"), vec![h, d, k], &b.w_v));
        out.push(copy(format!("blocks.{li}.attn.W_O"), vec![h, k, d], &b.w_o));
        for bias in ["b_Q", "b_K", "b_V"] {
            out.push(zeros(format!("blocks.{li}.attn.{bias}"), vec![h, k]));
        }
        out.push(zeros(format!("blocks.{li}.attn.b_O"), vec![d]));
        if let Some(mlp) = &b.mlp {
            let m = cfg.d_mlp;
            out.push(copy(format!("blocks.{li}.mlp.W_in"), vec![d, m], &mlp.w_in));
            out.push(copy(format!("blocks.{li}.mlp.b_in"), vec![m], &mlp.b_in));
            out.push(copy(format!("blocks.{li}.mlp.W_out"), vec![m, d], &mlp.w_out));
            out.push(copy(format!("blocks.{li}.mlp.b_out"), vec![d], &mlp.b_out));
        }
    }
    out.push(copy("unembed.W_U".into(), vec![d, D_IN], &l.w_u));
    out.push(copy("unembed.b_U".into(), vec![D_IN], &l.b_u));
    TlExport { tensors: out, config: transformer_lens_config(cfg), b_e: b_e.to_vec() }
}

// ---------------------------------------------------------------- file

/// Writes `export` to `path` as safetensors, atomically.
///
/// `__metadata__` holds `format` = [`EXPORT_FORMAT`], [`TL_CONFIG_KEY`] (the
/// config JSON), `physlens_model` (the JSON of `cfg`, the physlens
/// architecture), [`B_E_KEY`] (the folded `b_E`) and every entry of `extra`
/// (e.g. `physlens_system`). The
/// bytes depend only on the arguments (keys sorted, tensors in export order,
/// data 8-byte aligned).
///
/// # Errors
/// [`Error::Checkpoint`] naming `path` (nothing written) when a value is NaN
/// or ±∞ (naming the tensor) or `extra` sets one of
/// [`RESERVED_EXPORT_KEYS`]; [`Error::Io`] when writing fails.
pub fn save_transformer_lens<F: Real>(
    path: &Path,
    export: &TlExport<F>,
    cfg: &ModelConfig,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let fail = |message: String| Error::Checkpoint { file: path.to_path_buf(), message };
    if let Some(key) = RESERVED_EXPORT_KEYS.iter().find(|k| extra.contains_key(**k)) {
        return Err(fail(format!("extra metadata key `{key}` is reserved: the export writes it itself")));
    }
    let mut data = Vec::with_capacity(export.tensors.iter().map(|t| t.data.len()).sum::<usize>() * size_of::<F>());
    let mut header = serde_json::Map::new();
    let dtype = match F::DTYPE {
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
    };
    for t in &export.tensors {
        if let Some((i, w)) = t.data.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(fail(format!(
                "refusing to export a non-finite value: tensor `{}` holds {w} at flat index {i}",
                t.name
            )));
        }
        let start = data.len();
        encode(&t.data, &mut data);
        header.insert(t.name.clone(), json!({"dtype": dtype, "shape": t.shape, "data_offsets": [start, data.len()]}));
    }
    let mut metadata = extra.clone();
    metadata.insert("format".into(), EXPORT_FORMAT.into());
    metadata.insert(TL_CONFIG_KEY.into(), export.config.to_string());
    if let Some(w) = export.b_e.iter().find(|w| !w.is_finite()) {
        return Err(fail(format!("refusing to export a non-finite value: `embed.b_E` holds {w}")));
    }
    metadata.insert(B_E_KEY.into(), json!(export.b_e.iter().map(|w| w.f64()).collect::<Vec<_>>()).to_string());
    let model_json = serde_json::to_string(cfg).map_err(|e| fail(format!("cannot encode `physlens_model`: {e}")))?;
    metadata.insert("physlens_model".into(), model_json);
    header.insert("__metadata__".into(), json!(metadata));
    let mut header = serde_json::to_vec(&header).map_err(|e| fail(format!("cannot encode the header: {e}")))?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    write_atomic(path, &bytes)
}

/// Reads the physlens checkpoint at `model_path` (any dtype) and writes its
/// TransformerLens export to `out`, keeping the dtype. The metadata also gets
/// `physlens_system` (the checkpoint's `system` value, verbatim) and
/// `producer`.
///
/// # Errors
/// [`Error::Checkpoint`] naming `model_path` when it is not a loadable
/// checkpoint (see [`checkpoint::load`]); [`Error::Input`] naming `out` when it
/// is a folder or the checkpoint itself; the errors of [`save_transformer_lens`].
pub fn export_checkpoint(model_path: &Path, out: &Path) -> Result<ExportSummary> {
    let ckpt = checkpoint::load(model_path)?;
    if out.is_dir() {
        return Err(Error::Input { file: out.into(), message: "is a folder; expected the output file name".into() });
    }
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same(model_path, out) {
        return Err(Error::Input {
            file: out.into(),
            message: "is the checkpoint being exported; choose another output file".into(),
        });
    }
    let mut extra = BTreeMap::from([("producer".to_string(), format!("physlens {}", env!("CARGO_PKG_VERSION")))]);
    if let Some(system) = ckpt.metadata.get("system") {
        extra.insert("physlens_system".into(), system.clone());
    }
    fn write<F: Real>(out: &Path, model: &Model<F>, extra: &BTreeMap<String, String>) -> Result<ExportSummary> {
        let export = to_transformer_lens(model);
        save_transformer_lens(out, &export, &model.cfg, extra)?;
        Ok(ExportSummary { tensors: export.tensors.len(), dtype: F::DTYPE, config: export.config })
    }
    match &ckpt.model {
        checkpoint::AnyModel::F32(m) => write(out, m, &extra),
        checkpoint::AnyModel::F64(m) => write(out, m, &extra),
    }
}
