//! Checkpoints: one `safetensors` file per model (docs/model-and-checkpoint.md).
//!
//! # Layout
//! Tensor names and shapes follow TransformerLens, so the file opens as a
//! PyTorch state dict. Every weight is stored in the ROW convention of the
//! model (a token is a row vector, `r = s · W_E + b_E`); row `i` of `embed.W_E`
//! is what input component `i` (0 = x, 1 = p) writes into the residual stream.
//! The column-convention map of physics (`s' = M s + c`) is derived in one
//! place only, [`crate::model::circuits::to_physics`].
//!
//! ```text
//! name                                   shape                 dtype
//! embed.W_E                              [d_in = 2, d_model]   F32 or F64,
//! embed.b_E                              [d_model]             the same for
//! pos_embed.W_pos   (only if positional) [n_ctx, d_model]      every tensor
//! blocks.{l}.attn.W_Q / W_K / W_V        [n_heads, d_model, d_head]
//! blocks.{l}.attn.W_O                    [n_heads, d_head, d_model]
//! unembed.W_U                            [d_model, d_in = 2]
//! unembed.b_U                            [d_in = 2]
//! ```
//! Nothing else: a file with extra tensors (attention biases, LayerNorm
//! weights, TransformerLens' `IGNORE` buffers…) is rejected, naming them.
//!
//! The header's `__metadata__` (string → string) holds at least:
//! ```text
//! "format": "physlens/1"
//! "model":  "{\"d_model\":2,\"n_heads\":1,\"d_head\":2,\"n_layers\":1,\"n_ctx\":1,
//!             \"attn_scale\":\"d_model\",\"causal\":true,\"positional\":false}"
//! "system": "{\"kind\":\"damped_oscillator\",\"omega0\":2.0,\"gamma\":0.1,\"dt\":0.1}"
//! ```
//! (`omega0`, `gamma`, `dt`: a number, or `[lo, hi]` when the parameter was
//! drawn per sequence; `generator`, when present, names the rule that made
//! the data.)
//! plus any other keys the writer wants (kept verbatim in
//! [`Checkpoint::metadata`]). `model` and `system` are JSON objects encoded as
//! strings; unknown keys inside them are ignored, integral floats such as
//! `2.0` are accepted for the integer fields. `attn_scale` is `"d_model"`
//! (`1/sqrt(d_model)`) or `"d_head"`.
//!
//! Any tool can write such a file, e.g. Python with numpy:
//! ```text
//! from safetensors.numpy import save_file
//! save_file({"embed.W_E": w_e, "embed.b_E": b_e, ...},   # float32 or float64
//!           "model.safetensors",
//!           metadata={"format": "physlens/1", "model": json.dumps(cfg),
//!                     "system": json.dumps(system)})
//! ```
//!
//! [`load`] accepts any such file and rejects everything else with an
//! [`Error::Checkpoint`] naming the tensor or metadata key at fault; it never
//! panics, whatever the bytes. [`save`] writes atomically and refuses to write
//! non-finite weights.
//!
//! # Example
//! ```
//! use std::collections::BTreeMap;
//! use physlens::System;
//! use physlens::model::checkpoint::{self, AnyModel};
//! use physlens::model::{Model, ModelConfig};
//! use physlens::util::rng::{Rng, Stream};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("model.safetensors");
//! let model = Model::<f32>::init(&ModelConfig::seed(), &mut Rng::new(0, Stream::Init));
//! let system = System::new(2.0, 0.1, 0.1);
//! let extra = BTreeMap::from([("step".to_string(), "40000".to_string())]);
//! checkpoint::save(&path, &model, &system, &extra).unwrap();
//!
//! let ckpt = checkpoint::load(&path).unwrap();
//! assert_eq!(ckpt.model, AnyModel::F32(model));
//! assert_eq!(ckpt.system.fixed(), Some(system));
//! assert_eq!(ckpt.metadata["step"], "40000");
//! assert_eq!(ckpt.metadata["format"], "physlens/1");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{SafeTensorError, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::model::{Layout, Model, ModelConfig, TensorInfo};
use crate::physics::SystemSpec;
use crate::util::error::{Error, Result};
use crate::util::real::{Dtype, Real};

/// The value of the `format` metadata key this version writes and reads.
pub const FORMAT: &str = "physlens/1";

/// The metadata keys [`save`] fills in itself; `extra` may not set them.
pub const RESERVED_KEYS: [&str; 3] = ["format", "model", "system"];

/// The only `system.kind` physlens knows.
const OSCILLATOR: &str = "damped_oscillator";

/// How many tensor names an error message lists before "and N more".
const MAX_LISTED: usize = 12;

// ---------------------------------------------------------------- types

/// The `system` metadata value: `{"kind": "damped_oscillator", "omega0": .., "gamma": .., "dt": ..}`.
#[derive(Serialize, Deserialize)]
struct SystemMetadata {
    /// Always `"damped_oscillator"` for now.
    kind: String,
    #[serde(flatten)]
    system: SystemSpec,
}

/// `Err(what is wrong)` unless `meta` is a valid oscillator.
fn check_system(meta: &SystemMetadata) -> std::result::Result<(), String> {
    if meta.kind != OSCILLATOR {
        return Err(format!(
            "`system`: kind = {:?} is not supported; the only accepted kind is {OSCILLATOR:?}",
            meta.kind
        ));
    }
    match meta.system.invalid() {
        Some(bad) => {
            Err(format!("`system`: {} = {} is not accepted; {} {}", bad.field, bad.value, bad.field, bad.message))
        }
        None => Ok(()),
    }
}

/// A model in the dtype it was stored in.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyModel {
    /// Stored as F32.
    F32(Model<f32>),
    /// Stored as F64.
    F64(Model<f64>),
}

impl AnyModel {
    /// The architecture.
    pub fn cfg(&self) -> &ModelConfig {
        match self {
            AnyModel::F32(m) => &m.cfg,
            AnyModel::F64(m) => &m.cfg,
        }
    }

    /// The dtype the weights are stored in.
    pub fn dtype(&self) -> Dtype {
        match self {
            AnyModel::F32(_) => Dtype::F32,
            AnyModel::F64(_) => Dtype::F64,
        }
    }

    /// The same model in f64 (exact: f32 → f64 widening loses nothing).
    pub fn to_f64(&self) -> Model<f64> {
        match self {
            AnyModel::F32(m) => m.to_f64(),
            AnyModel::F64(m) => m.clone(),
        }
    }
}

/// Everything a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Architecture and weights.
    pub model: AnyModel,
    /// The physical systems the model was trained on (each parameter fixed,
    /// or the range it was drawn from per sequence).
    pub system: SystemSpec,
    /// The full `__metadata__` of the file, including `format`, `model` and
    /// `system` as the raw strings found.
    pub metadata: BTreeMap<String, String>,
}

// ---------------------------------------------------------------- save

/// Writes `model` to `path` in the docs/model-and-checkpoint.md layout, atomically.
///
/// `__metadata__` gets `format`, `model` (the JSON of `model.cfg`), `system`
/// (the JSON of `system`: a [`SystemSpec`], or one `System`) and every entry of `extra`; `extra` may not contain
/// any of [`RESERVED_KEYS`]. The bytes depend only on the arguments (keys
/// sorted, tensors in layout order), so equal models give equal files.
///
/// # Shapes
/// Tensors as in [`Layout::tensors`], dtype `F::DTYPE`, little-endian.
///
/// # Errors
/// [`Error::Checkpoint`] (and nothing written) when a weight is NaN or ±∞
/// (naming the tensor), when `system` or `model.cfg` would not load back, or
/// when `extra` sets a reserved key; [`Error::Io`] when writing fails.
pub fn save<F: Real>(
    path: &Path,
    model: &Model<F>,
    system: impl Into<SystemSpec>,
    extra: &BTreeMap<String, String>,
) -> Result<()> {
    let fail = |message: String| Error::Checkpoint { file: path.to_path_buf(), message };
    if let Some(key) = RESERVED_KEYS.iter().find(|k| extra.contains_key(**k)) {
        return Err(fail(format!(
            "extra metadata key `{key}` is reserved: `format`, `model` and `system` are written from the model and system themselves"
        )));
    }
    check_dims(&model.cfg).map_err(fail)?;
    let system = SystemMetadata { kind: OSCILLATOR.to_string(), system: system.into() };
    check_system(&system).map_err(fail)?;
    if model.layout != Layout::new(&model.cfg) || model.params.len() != model.layout.len {
        return Err(fail(format!(
            "the model's layout ({} parameters) does not match its config (which needs {})",
            model.params.len(),
            Layout::new(&model.cfg).len
        )));
    }

    let tensors = model.layout.tensors(&model.cfg);
    let mut data = Vec::with_capacity(model.params.len() * size_of::<F>());
    let mut entries = Vec::with_capacity(tensors.len());
    for t in &tensors {
        let values = model.params.get(t.range.clone()).unwrap_or_default();
        if let Some((i, w)) = values.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(fail(format!(
                "refusing to save a non-finite weight: tensor `{}` holds {w} at flat index {i} (of {}); \
                 checkpoints only ever hold finite weights",
                t.name,
                values.len()
            )));
        }
        let start = data.len();
        encode(values, &mut data);
        entries.push((t, start..data.len()));
    }

    let mut metadata = extra.clone();
    let json = |what: &str, r: serde_json::Result<String>| r.map_err(|e| fail(format!("cannot encode `{what}`: {e}")));
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("model".into(), json("model", serde_json::to_string(&model.cfg))?);
    metadata.insert("system".into(), json("system", serde_json::to_string(&system))?);

    // The safetensors header, written here rather than by
    // `safetensors::serialize` so that the file is byte-for-byte
    // deterministic (that function orders `__metadata__` by a random hash).
    let dtype = match F::DTYPE {
        Dtype::F32 => "F32",
        Dtype::F64 => "F64",
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    for (t, range) in entries {
        let entry = serde_json::json!({"dtype": dtype, "shape": t.shape, "data_offsets": [range.start, range.end]});
        header.insert(t.name.clone(), entry);
    }
    let mut header = serde_json::to_vec(&header).map_err(|e| fail(format!("cannot encode the header: {e}")))?;
    // Pad with spaces so the data starts 8-byte aligned, as safetensors does.
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + header.len() + data.len());
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&data);
    crate::util::io::write_atomic(path, &bytes)
}

/// Appends the little-endian bytes of `values`, in their own dtype, to `out`.
pub(crate) fn encode<F: Real>(values: &[F], out: &mut Vec<u8>) {
    match F::DTYPE {
        // Narrowing an f32 that was widened to f64 is exact.
        Dtype::F32 => out.extend(values.iter().flat_map(|w| (w.f64() as f32).to_le_bytes())),
        Dtype::F64 => out.extend(values.iter().flat_map(|w| w.f64().to_le_bytes())),
    }
}

// ---------------------------------------------------------------- load

/// Reads a checkpoint in the docs/model-and-checkpoint.md layout, whoever wrote it.
///
/// # Errors
/// [`Error::Checkpoint`] naming what is wrong (the tensor or metadata key)
/// and what is accepted, for every kind of bad file, including a missing or
/// unreadable one. Never panics, whatever the bytes.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let fail = |message: String| Error::Checkpoint { file: path.to_path_buf(), message };
    if path.is_dir() {
        return Err(fail("is a directory; expected a .safetensors checkpoint file".into()));
    }
    let bytes = fs::read(path).map_err(|e| {
        fail(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file; expected a .safetensors checkpoint".into(),
            _ => format!("cannot read the file: {e}"),
        })
    })?;
    parse(&bytes).map_err(fail)
}

/// The whole of [`load`] after reading: every failure is a message.
fn parse(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| explain(&e, bytes))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| explain(&e, bytes))?;

    // Metadata.
    let metadata: BTreeMap<String, String> = match header.metadata() {
        Some(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        None => {
            return Err(format!(
                "the safetensors header has no `__metadata__`; a physlens checkpoint needs \
                 `__metadata__` with `format` = {FORMAT:?}, `model` and `system` (docs/model-and-checkpoint.md)"
            ));
        }
    };
    let key = |k: &str| {
        metadata.get(k).ok_or_else(|| {
            let found: Vec<&str> = metadata.keys().map(String::as_str).collect();
            format!(
                "`__metadata__` has no `{k}` key (found keys: {found:?}); a physlens checkpoint needs \
                 `format` = {FORMAT:?}, `model` and `system` (docs/model-and-checkpoint.md)"
            )
        })
    };
    let format = key("format")?;
    if format != FORMAT {
        let what = if format.starts_with("physlens/") { "unsupported format version" } else { "not a physlens format" };
        return Err(format!("`format` = {}: {what}; this version reads {FORMAT:?}", shown(format)));
    }
    let cfg = parse_model(key("model")?)?;
    let system = parse_system(key("system")?)?;

    // Tensors: bound the architecture by what the file holds before building
    // anything whose size comes from the metadata.
    let views: HashMap<&str, TensorView> = st.iter().collect();
    if cfg.parameter_count().is_none() {
        return Err(format!(
            "`model`: the dimensions {} overflow the parameter count; not a loadable model",
            dims(&cfg)
        ));
    }
    let layout = if cfg.n_layers > views.len() {
        // It cannot hold them all; list the missing ones of the first layers.
        let shown_cfg = ModelConfig { n_layers: views.len() + 1, ..cfg.clone() };
        let expected = Layout::new(&shown_cfg).tensors(&shown_cfg);
        return Err(missing_message(&cfg, &views, &expected, true));
    } else {
        Layout::new(&cfg)
    };
    let expected = layout.tensors(&cfg);
    check_names(&cfg, &views, &expected)?;
    let dtype = check_dtypes(&views, &expected)?;
    check_shapes(&cfg, &views, &expected)?;
    // Every tensor is present with its declared shape, so the parameter count
    // equals the number of values in the file: allocation is bounded by it.
    let model = match dtype {
        Dtype::F32 => AnyModel::F32(read_weights(&cfg, &views, &expected)?),
        Dtype::F64 => AnyModel::F64(read_weights(&cfg, &views, &expected)?),
    };
    Ok(Checkpoint { model, system, metadata })
}

/// The first 8 bytes of `bytes`, as text where they are printable ASCII.
fn first_bytes(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("\"{}\"", String::from_utf8_lossy(head))
    } else {
        head.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
    }
}

/// A plain explanation of a safetensors parse error, with the original.
fn explain(e: &SafeTensorError, bytes: &[u8]) -> String {
    let len = bytes.len();
    let declared = bytes.first_chunk::<8>().map(|b| u64::from_le_bytes(*b));
    let what = match e {
        SafeTensorError::HeaderTooSmall => format!(
            "the file is only {len} bytes, shorter than the 8-byte header-length prefix every safetensors file starts with"
        ),
        SafeTensorError::HeaderTooLarge => format!(
            "not a safetensors file: such a file starts with the 8-byte length of its JSON header, and the first 8 \
             bytes of this one ({}), read as that length, are beyond any header (the whole file is {len} bytes)",
            first_bytes(bytes)
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "the first 8 bytes declare a {}-byte header but only {} bytes follow: the file is truncated or not safetensors",
            declared.unwrap_or_default(),
            len.saturating_sub(8)
        ),
        SafeTensorError::InvalidHeader(_) => "the header is not UTF-8 text: not a safetensors file".to_string(),
        SafeTensorError::InvalidHeaderDeserialization(_) | SafeTensorError::JsonError(_) => {
            "the header is not the JSON a safetensors file holds (tensor name → {dtype, shape, data_offsets}, \
             plus an optional `__metadata__` of strings)"
                .to_string()
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensors' data_offsets do not end exactly at the end of the {len}-byte file: truncated, or trailing bytes"
        ),
        SafeTensorError::InvalidOffset(name) => {
            format!("tensor `{name}`: its data_offsets do not continue where the previous tensor's end")
        }
        SafeTensorError::TensorInvalidInfo | SafeTensorError::ValidationOverflow | SafeTensorError::MisalignedSlice => {
            "a tensor's data_offsets do not match its shape and dtype".to_string()
        }
        _ => "not a valid safetensors file".to_string(),
    };
    if what.starts_with("not a safetensors file") {
        return what;
    }
    format!("not a readable safetensors file: {what} (safetensors: {e})")
}

/// Parses the `model` metadata value.
fn parse_model(raw: &str) -> std::result::Result<ModelConfig, String> {
    const EXPECTED: &str = "expected a JSON object {\"d_model\": int ≥ 1, \"n_heads\": int ≥ 1, \"d_head\": int ≥ 1, \
         \"n_layers\": int ≥ 1, \"n_ctx\": int ≥ 1, \"attn_scale\": \"d_model\" | \"d_head\", \"causal\": bool, \
         \"positional\": bool, \"d_mlp\": int ≥ 0 (optional, 0), \"act\": \"gelu\" | \"relu\" (optional)}";
    let bad = |why: String| format!("`model` metadata: {why}; found {}; {EXPECTED}", shown(raw));
    let mut value: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| bad(format!("not valid JSON ({e}{})", nan_hint(raw))))?;
    let object = value.as_object_mut().ok_or_else(|| bad("not a JSON object".into()))?;
    // Accept integral floats (`2.0`), as a Python writer may produce.
    for field in ["d_model", "n_heads", "d_head", "n_layers", "n_ctx", "d_mlp"] {
        if let Some(v) = object.get_mut(field)
            && v.is_f64()
            && let Some(x) = v.as_f64()
            && x.fract() == 0.0
            && (0.0..=9.0e15).contains(&x)
        {
            *v = serde_json::Value::from(x as u64);
        }
    }
    let cfg: ModelConfig = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    check_dims(&cfg).map_err(|why| format!("`model` metadata: {why}; found {}", shown(raw)))?;
    Ok(cfg)
}

/// `Err` naming the first dimension that is zero.
fn check_dims(cfg: &ModelConfig) -> std::result::Result<(), String> {
    let fields = [
        ("d_model", cfg.d_model),
        ("n_heads", cfg.n_heads),
        ("d_head", cfg.d_head),
        ("n_layers", cfg.n_layers),
        ("n_ctx", cfg.n_ctx),
    ];
    match fields.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(format!("{name} = 0; d_model, n_heads, d_head, n_layers and n_ctx must all be ≥ 1")),
        None => Ok(()),
    }
}

/// Parses and validates the `system` metadata value.
fn parse_system(raw: &str) -> std::result::Result<SystemSpec, String> {
    // `SystemSpec` fills missing fields with defaults (a config lists only what it
    // changes); a checkpoint must state every one.
    let parsed = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(raw).map_err(|e| e.to_string());
    let parsed =
        parsed.and_then(|fields| match ["kind", "omega0", "gamma", "dt"].iter().find(|k| !fields.contains_key(**k)) {
            Some(key) => Err(format!("missing field `{key}`")),
            None => serde_json::from_value::<SystemMetadata>(fields.into()).map_err(|e| e.to_string()),
        });
    let meta = parsed.map_err(|e| {
        format!(
            "`system` metadata: {e}{}; found {}; expected a JSON object {{\"kind\": \"{OSCILLATOR}\", \
             \"omega0\": number > 0, \"gamma\": number ≥ 0, \"dt\": number > 0}} (each number may be a \
             range [lo, hi])",
            nan_hint(raw),
            shown(raw)
        )
    })?;
    check_system(&meta).map_err(|why| format!("{why}; found {}", shown(raw)))?;
    Ok(meta.system)
}

/// A hint when a JSON parse failed on a non-JSON number such as Python's `NaN`.
fn nan_hint(raw: &str) -> &'static str {
    if ["NaN", "Infinity"].iter().any(|w| raw.contains(w)) { " — NaN and Infinity are not JSON numbers" } else { "" }
}

/// `raw` quoted, cut to a readable length.
fn shown(raw: &str) -> String {
    const MAX: usize = 240;
    if raw.chars().count() <= MAX {
        format!("{raw:?}")
    } else {
        let cut: String = raw.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

/// The dimensions of `cfg` for messages.
fn dims(cfg: &ModelConfig) -> String {
    format!(
        "d_model = {}, n_heads = {}, d_head = {}, n_layers = {}, n_ctx = {}, positional = {}, d_mlp = {}",
        cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_layers, cfg.n_ctx, cfg.positional, cfg.d_mlp
    )
}

/// Names `list` as "`a`, `b` and 3 more" (or "`a`, `b`, …" when `open_ended`).
fn names_list<'a>(list: impl IntoIterator<Item = &'a str>, open_ended: bool) -> String {
    let list: Vec<&str> = list.into_iter().collect();
    let mut out: Vec<String> = list.iter().take(MAX_LISTED).map(|n| format!("`{n}`")).collect();
    if open_ended {
        out.push("…".into());
    } else if list.len() > MAX_LISTED {
        out.push(format!("and {} more", list.len() - MAX_LISTED));
    }
    out.join(", ")
}

/// The symbolic shape of tensor `name`, for messages.
fn legend(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("W_E") => "[d_in = 2, d_model]",
        Some("b_E") => "[d_model]",
        Some("W_pos") => "[n_ctx, d_model]",
        Some("W_Q" | "W_K" | "W_V") => "[n_heads, d_model, d_head]",
        Some("W_O") => "[n_heads, d_head, d_model]",
        Some("W_U") => "[d_model, d_in = 2]",
        Some("b_U") => "[d_in = 2]",
        Some("W_in") => "[d_model, d_mlp]",
        Some("b_in") => "[d_mlp]",
        Some("W_out") => "[d_mlp, d_model]",
        Some("b_out") => "[d_model]",
        _ => "",
    }
}

/// The message for tensors of `expected` that the file lacks; `truncated`
/// when `expected` covers only the first layers of the model.
fn missing_message(
    cfg: &ModelConfig,
    views: &HashMap<&str, TensorView>,
    expected: &[TensorInfo],
    truncated: bool,
) -> String {
    let missing = expected.iter().map(|t| t.name.as_str()).filter(|n| !views.contains_key(n));
    let needs = if truncated {
        format!("{} layers of {} tensors each", cfg.n_layers, if cfg.has_mlp() { 8 } else { 4 })
    } else {
        format!("{} tensors", expected.len())
    };
    format!(
        "missing tensor(s) {}: the `model` metadata ({}) needs {needs}, but the file has {} tensors",
        names_list(missing, truncated),
        dims(cfg),
        views.len()
    )
}

/// `Err` listing missing and unexpected tensors.
fn check_names(
    cfg: &ModelConfig,
    views: &HashMap<&str, TensorView>,
    expected: &[TensorInfo],
) -> std::result::Result<(), String> {
    let wanted: BTreeSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    let extra: BTreeSet<&str> = views.keys().copied().filter(|n| !wanted.contains(n)).collect();
    let has_missing = expected.iter().any(|t| !views.contains_key(t.name.as_str()));
    let mut parts = Vec::new();
    if has_missing {
        parts.push(missing_message(cfg, views, expected, false));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "unexpected tensor(s) {}: not part of the docs/model-and-checkpoint.md layout for this `model` ({}); expected exactly {}",
            names_list(extra.iter().copied(), false),
            dims(cfg),
            names_list(expected.iter().map(|t| t.name.as_str()), false)
        ));
    }
    if parts.is_empty() { Ok(()) } else { Err(parts.join("; ")) }
}

/// The one dtype all tensors share, or `Err` naming the culprit.
fn check_dtypes(views: &HashMap<&str, TensorView>, expected: &[TensorInfo]) -> std::result::Result<Dtype, String> {
    let mut first: Option<(&str, safetensors::Dtype)> = None;
    for t in expected {
        let Some(view) = views.get(t.name.as_str()) else { continue };
        let dtype = view.dtype();
        if !matches!(dtype, safetensors::Dtype::F32 | safetensors::Dtype::F64) {
            return Err(format!(
                "tensor `{}` has dtype {dtype}; accepted: F32 or F64 (one dtype for all tensors)",
                t.name
            ));
        }
        match first {
            None => first = Some((&t.name, dtype)),
            Some((name, d)) if d != dtype => {
                return Err(format!(
                    "mixed dtypes: tensor `{name}` is {d} but tensor `{}` is {dtype}; all tensors must share one dtype \
                     (F32 or F64)",
                    t.name
                ));
            }
            Some(_) => {}
        }
    }
    Ok(match first {
        Some((_, safetensors::Dtype::F64)) => Dtype::F64,
        _ => Dtype::F32,
    })
}

/// `Err` naming the first tensor whose shape differs from the layout's.
fn check_shapes(
    cfg: &ModelConfig,
    views: &HashMap<&str, TensorView>,
    expected: &[TensorInfo],
) -> std::result::Result<(), String> {
    for t in expected {
        let Some(view) = views.get(t.name.as_str()) else { continue };
        if view.shape() != t.shape.as_slice() {
            return Err(format!(
                "tensor `{}` has shape {:?} but the `model` metadata ({}) needs {:?} = {}",
                t.name,
                view.shape(),
                dims(cfg),
                t.shape,
                legend(&t.name)
            ));
        }
    }
    Ok(())
}

/// The weights, decoded and checked finite. Call only after the names,
/// dtypes (`F::DTYPE`) and shapes are checked.
fn read_weights<F: Real>(
    cfg: &ModelConfig,
    views: &HashMap<&str, TensorView>,
    expected: &[TensorInfo],
) -> std::result::Result<Model<F>, String> {
    let mut model = Model::<F>::zeros(cfg);
    for t in expected {
        let view = views.get(t.name.as_str()).ok_or_else(|| format!("missing tensor `{}`", t.name))?;
        let values = decode::<F>(view.data());
        let slot = model.params.get_mut(t.range.clone()).filter(|s| s.len() == values.len()).ok_or_else(|| {
            format!("tensor `{}`: {} bytes of data do not hold {:?} values", t.name, view.data().len(), t.shape)
        })?;
        if let Some((i, w)) = values.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(format!(
                "tensor `{}` holds a non-finite value ({w}) at flat index {i} (of {}); checkpoints must hold finite \
                 weights only (was the run that wrote it diverging?)",
                t.name,
                values.len()
            ));
        }
        slot.copy_from_slice(&values);
    }
    Ok(model)
}

/// Little-endian values of dtype `F::DTYPE`.
pub(crate) fn decode<F: Real>(bytes: &[u8]) -> Vec<F> {
    match F::DTYPE {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .filter_map(|c| c.first_chunk::<4>())
            .map(|b| F::of(f32::from_le_bytes(*b) as f64))
            .collect(),
        Dtype::F64 => {
            bytes.chunks_exact(8).filter_map(|c| c.first_chunk::<8>()).map(|b| F::of(f64::from_le_bytes(*b))).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttnScale;

    #[test]
    fn parameter_count_matches_layout() {
        for (positional, n_layers, h, d_mlp) in [(false, 1, 1, 0), (true, 2, 2, 0), (true, 3, 4, 0), (false, 2, 2, 7)] {
            let cfg = ModelConfig {
                d_model: 6,
                n_heads: h,
                d_head: 3,
                n_layers,
                d_mlp,
                act: crate::model::Act::Relu,
                n_ctx: 5,
                attn_scale: AttnScale::DHead,
                causal: false,
                loss_positions: None,
                positional,
            };
            assert_eq!(cfg.parameter_count(), Some(Layout::new(&cfg).len));
        }
    }
}
