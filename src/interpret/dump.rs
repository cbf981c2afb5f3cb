//! Writing named activations to disk so a person can continue in Python
//! (issue 3, item 7): `.npy` files, one per activation, and/or one
//! `activations.safetensors`.
//!
//! Names are the cache names of [`Activations::names`] (e.g. `embed`,
//! `blocks.0.attn.pattern`), or `all`. The input states are always written
//! too, as `input` `[B, T, 2]`. Every array keeps the shape of the cache
//! (batch first, row-major, see [`crate::model`]) and the model's own dtype:
//! ```text
//! import numpy as np
//! pattern = np.load("DIR/blocks.0.attn.pattern.npy")      # [B, H, T, T]
//! from safetensors.numpy import load_file
//! acts = load_file("DIR/activations.safetensors")        # same arrays by name
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use safetensors::tensor::TensorView;

use crate::model::{Activations, D_IN, Model};
use crate::util::error::{Error, Result};
use crate::util::io::write_atomic;
use crate::util::real::{Dtype, Real};

/// The `format` metadata value of `activations.safetensors`.
pub const DUMP_FORMAT: &str = "physlens-activations/1";

/// Which files [`dump_activations`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    /// One `NAME.npy` per activation.
    Npy,
    /// One `activations.safetensors` holding them all.
    Safetensors,
    /// Both.
    Both,
}

impl FromStr for DumpFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "npy" => Ok(DumpFormat::Npy),
            "safetensors" => Ok(DumpFormat::Safetensors),
            "both" => Ok(DumpFormat::Both),
            _ => Err(format!("unknown dump format {s:?}; accepted: npy, safetensors, both")),
        }
    }
}

/// One activation over every sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Collected<F> {
    /// Cache name (or `input`).
    pub name: String,
    /// Shape, batch first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<F>,
}

/// The names `requested` resolves to: `all` means every activation;
/// otherwise each must be one of [`Activations::names`].
///
/// # Errors
/// [`Error::Option`] (`dump`) naming the first unknown name.
pub fn resolve_names(model_names: &[String], requested: &[String]) -> Result<Vec<String>> {
    if requested.iter().any(|n| n == "all") {
        return Ok(model_names.to_vec());
    }
    if let Some(bad) = requested.iter().find(|n| !model_names.contains(n)) {
        return Err(Error::Option {
            name: "dump".into(),
            message: format!("`{bad}` is not an activation of this model; available: all, {}", model_names.join(", ")),
        });
    }
    Ok(requested.to_vec())
}

/// Runs `model` on `inputs` `[B, T, 2]` in chunks and gathers the named
/// activations over the whole batch (names as for [`resolve_names`]).
///
/// # Errors
/// As [`resolve_names`].
pub fn collect_activations<F: Real>(model: &Model<F>, inputs: &[F], names: &[String]) -> Result<Vec<Collected<F>>> {
    let cfg = &model.cfg;
    let names = resolve_names(&Activations::<F>::names(cfg), names)?;
    let w = cfg.n_ctx * D_IN;
    let batch = inputs.len() / w;
    let mut out: Vec<Collected<F>> =
        names.iter().map(|n| Collected { name: n.clone(), shape: vec![], data: vec![] }).collect();
    let chunk = Activations::<F>::chunk(cfg, batch);
    let mut acts = Activations::new(cfg, chunk);
    for chunk in inputs.chunks(chunk * w) {
        model.forward(chunk, &mut acts);
        for c in &mut out {
            let (data, shape) = acts.get(cfg, &c.name).expect("names resolved above");
            c.data.extend_from_slice(data);
            c.shape = shape;
        }
    }
    for c in &mut out {
        if c.shape.is_empty() {
            c.shape = vec![0];
        }
        c.shape[0] = batch;
    }
    Ok(out)
}

/// The bytes of a NumPy `.npy` file (format 1.0, little-endian, C order).
///
/// # Shapes
/// `data` row-major with `shape.iter().product()` values.
pub fn npy_bytes<F: Real>(data: &[F], shape: &[usize]) -> Vec<u8> {
    let descr = match F::DTYPE {
        Dtype::F32 => "<f4",
        Dtype::F64 => "<f8",
    };
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + header length (2) + header, padded to 64 bytes, ending in '\n'.
    let total = (10 + header.len() + 1).next_multiple_of(64);
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    let mut bytes = Vec::with_capacity(total + data.len() * 8);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(le_bytes(data));
    bytes
}

/// Little-endian bytes of `data` in its own dtype.
fn le_bytes<F: Real>(data: &[F]) -> Vec<u8> {
    match F::DTYPE {
        Dtype::F32 => data.iter().flat_map(|v| (v.f64() as f32).to_le_bytes()).collect(),
        Dtype::F64 => data.iter().flat_map(|v| v.f64().to_le_bytes()).collect(),
    }
}

/// Writes `arrays` into `dir` in `format`; returns the files written.
///
/// # Errors
/// [`Error::Io`] when a file cannot be written.
pub fn write_arrays<F: Real>(dir: &Path, arrays: &[Collected<F>], format: DumpFormat) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    if matches!(format, DumpFormat::Npy | DumpFormat::Both) {
        for a in arrays {
            let path = dir.join(format!("{}.npy", a.name));
            write_atomic(&path, &npy_bytes(&a.data, &a.shape))?;
            written.push(path);
        }
    }
    if matches!(format, DumpFormat::Safetensors | DumpFormat::Both) {
        let path = dir.join("activations.safetensors");
        let dtype = match F::DTYPE {
            Dtype::F32 => safetensors::Dtype::F32,
            Dtype::F64 => safetensors::Dtype::F64,
        };
        let bytes: Vec<Vec<u8>> = arrays.iter().map(|a| le_bytes(&a.data)).collect();
        let fail = |e: safetensors::SafeTensorError| Error::Input { file: path.clone(), message: e.to_string() };
        let views = arrays
            .iter()
            .zip(&bytes)
            .map(|(a, b)| TensorView::new(dtype, a.shape.clone(), b).map(|v| (a.name.clone(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(fail)?;
        let metadata = std::collections::HashMap::from([("format".to_string(), DUMP_FORMAT.to_string())]);
        let out = safetensors::serialize(views, Some(metadata)).map_err(fail)?;
        write_atomic(&path, &out)?;
        written.push(path);
    }
    Ok(written)
}

/// Runs `model` on `inputs` `[B, T, 2]` and writes `input` and the named
/// activations into `dir` (see the module docs); returns the files written.
/// `input`, always written, may also be named.
///
/// # Errors
/// [`Error::Config`] for an unknown name (nothing written), [`Error::Io`]
/// when writing fails.
pub fn dump_activations<F: Real>(
    model: &Model<F>,
    inputs: &[F],
    names: &[String],
    dir: &Path,
    format: DumpFormat,
) -> Result<Vec<PathBuf>> {
    let names: Vec<String> = names.iter().filter(|n| *n != "input").cloned().collect();
    let mut arrays = collect_activations(model, inputs, &names)?;
    let batch = inputs.len() / (model.cfg.n_ctx * D_IN);
    arrays.insert(
        0,
        Collected { name: "input".into(), shape: vec![batch, model.cfg.n_ctx, D_IN], data: inputs.to_vec() },
    );
    write_arrays(dir, &arrays, format)
}
