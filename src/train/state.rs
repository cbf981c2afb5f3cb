//! The full training state (`train_state.safetensors` in a run folder): what
//! `physlens train --resume DIR` needs to continue a run so that its final
//! weights are bit-identical to an uninterrupted run.
//!
//! # Layout
//! ```text
//! params      [P]   F32/F64   the weights, flat in Layout order
//! adam.m      [P]   F32/F64   AdamW first moment
//! adam.v      [P]   F32/F64   AdamW second moment
//! data.order  [N]   U32       batch order of the fixed training set (absent with fresh samples)
//! __metadata__: format, step, adam_t, data_next, rng_position, elapsed_s,
//!               window_sum_bits, window_count, first_loss_bits, metrics (the CSV so far),
//!               floor_since, floor_reached (steps, or empty)
//! ```

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype as StDtype, SafeTensors};

use crate::model::checkpoint::{decode, encode};
use crate::util::error::{Error, Result};
use crate::util::io::write_atomic;
use crate::util::real::{Dtype, Real};

/// File name of the training state inside a run folder.
pub const STATE_FILE: &str = "train_state.safetensors";
const FORMAT: &str = "physlens-train-state/1";

/// Where the training data stood.
#[derive(Clone, Debug, PartialEq)]
pub enum DataState {
    /// Fixed set: batch order, position in it, shuffling generator position.
    Fixed {
        /// Current permutation of the training set.
        order: Vec<u32>,
        /// Next index into `order`.
        next: usize,
        /// Position of the shuffle stream.
        rng_position: u128,
    },
    /// Fresh samples: position of the training-data stream.
    Fresh {
        /// Position of the data stream.
        rng_position: u128,
    },
}

/// Everything a training loop holds between steps.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState<F> {
    /// Steps taken.
    pub step: u64,
    /// Weights `[P]`.
    pub params: Vec<F>,
    /// AdamW first moment `[P]`.
    pub m: Vec<F>,
    /// AdamW second moment `[P]`.
    pub v: Vec<F>,
    /// AdamW step count.
    pub adam_t: u64,
    /// Data position.
    pub data: DataState,
    /// Training seconds so far.
    pub elapsed: f64,
    /// Sum and count of batch losses since the last metrics row.
    pub window: (f64, u64),
    /// Loss of the first step (the reference for "exploding").
    pub first_loss: Option<f64>,
    /// `metrics.csv` up to `step`.
    pub metrics: String,
    /// First metrics row of the current stretch of rows at the floor.
    pub floor_since: Option<u64>,
    /// The step training stopped at the floor (the run is complete).
    pub floor_reached: Option<u64>,
}

impl<F: Real> TrainState<F> {
    /// Writes the state atomically to `path`.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = |xs: &[F]| {
            let mut out = Vec::with_capacity(std::mem::size_of_val(xs));
            encode(xs, &mut out);
            out
        };
        let dtype = match F::DTYPE {
            Dtype::F32 => StDtype::F32,
            Dtype::F64 => StDtype::F64,
        };
        let mut buffers: Vec<(&str, StDtype, Vec<usize>, Vec<u8>)> = vec![
            ("params", dtype, vec![self.params.len()], bytes(&self.params)),
            ("adam.m", dtype, vec![self.m.len()], bytes(&self.m)),
            ("adam.v", dtype, vec![self.v.len()], bytes(&self.v)),
        ];
        let mut meta: HashMap<String, String> = HashMap::new();
        let (next, rng_position) = match &self.data {
            DataState::Fixed { order, next, rng_position } => {
                buffers.push((
                    "data.order",
                    StDtype::U32,
                    vec![order.len()],
                    order.iter().flat_map(|i| i.to_le_bytes()).collect(),
                ));
                (*next, *rng_position)
            }
            DataState::Fresh { rng_position } => (0, *rng_position),
        };
        for (k, v) in [
            ("format", FORMAT.to_string()),
            ("step", self.step.to_string()),
            ("adam_t", self.adam_t.to_string()),
            ("data_next", next.to_string()),
            ("rng_position", rng_position.to_string()),
            ("elapsed_s", self.elapsed.to_string()),
            ("window_sum_bits", self.window.0.to_bits().to_string()),
            ("window_count", self.window.1.to_string()),
            ("first_loss_bits", self.first_loss.map_or(String::new(), |l| l.to_bits().to_string())),
            ("metrics", self.metrics.clone()),
            ("floor_since", self.floor_since.map_or(String::new(), |s| s.to_string())),
            ("floor_reached", self.floor_reached.map_or(String::new(), |s| s.to_string())),
        ] {
            meta.insert(k.into(), v);
        }
        let views: Vec<(&str, TensorView)> = buffers
            .iter()
            .map(|(name, dt, shape, data)| {
                (*name, TensorView::new(*dt, shape.clone(), data).expect("sizes match by construction"))
            })
            .collect();
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Checkpoint {
            file: path.into(),
            message: format!("cannot encode the training state: {e}"),
        })?;
        write_atomic(path, &bytes)
    }

    /// Reads a state written by [`TrainState::save`] with the same dtype.
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |message: String| Error::Checkpoint { file: path.into(), message };
        let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the training state: {e}")))?;
        let (_, header) =
            SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("not a training state file: {e}")))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(format!("not a training state file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |k: &str| meta.get(k).cloned().ok_or_else(|| fail(format!("metadata key `{k}` is missing")));
        if get("format")? != FORMAT {
            return Err(fail(format!("metadata `format` is not {FORMAT:?}")));
        }
        let num =
            |k: &str| -> Result<u128> { get(k)?.parse::<u128>().map_err(|e| fail(format!("metadata `{k}`: {e}"))) };
        let want = match F::DTYPE {
            Dtype::F32 => StDtype::F32,
            Dtype::F64 => StDtype::F64,
        };
        let tensor = |name: &str, dtype: StDtype| -> Result<Vec<u8>> {
            let t = st.tensor(name).map_err(|_| fail(format!("tensor `{name}` is missing")))?;
            if t.dtype() != dtype {
                return Err(fail(format!("tensor `{name}` has dtype {:?}, expected {dtype:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let params = decode::<F>(&tensor("params", want)?);
        let m = decode::<F>(&tensor("adam.m", want)?);
        let v = decode::<F>(&tensor("adam.v", want)?);
        if m.len() != params.len() || v.len() != params.len() {
            return Err(fail("tensors `params`, `adam.m` and `adam.v` differ in length".into()));
        }
        let rng_position = num("rng_position")?;
        let data = match st.tensor("data.order") {
            Ok(_) => DataState::Fixed {
                order: tensor("data.order", StDtype::U32)?
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                next: num("data_next")? as usize,
                rng_position,
            },
            Err(_) => DataState::Fresh { rng_position },
        };
        let first = get("first_loss_bits")?;
        let optional_step = |k: &str| optional_step(Some(&meta), k).map_err(fail);
        Ok(TrainState {
            step: num("step")? as u64,
            params,
            m,
            v,
            adam_t: num("adam_t")? as u64,
            data,
            elapsed: get("elapsed_s")?.parse().map_err(|e| fail(format!("metadata `elapsed_s`: {e}")))?,
            window: (f64::from_bits(num("window_sum_bits")? as u64), num("window_count")? as u64),
            first_loss: if first.is_empty() { None } else { Some(f64::from_bits(num("first_loss_bits")? as u64)) },
            metrics: get("metrics")?,
            floor_since: optional_step("floor_since")?,
            floor_reached: optional_step("floor_reached")?,
        })
    }
}

/// The step a run stopped at the floor, from the metadata of the state
/// file at `path` alone (either dtype); `None` if it did not stop there.
pub fn stopped_at_floor(path: &Path) -> Result<Option<u64>> {
    let fail = |message: String| Error::Checkpoint { file: path.into(), message };
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read the training state: {e}")))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| fail(format!("not a training state file: {e}")))?;
    optional_step(header.metadata().as_ref(), "floor_reached").map_err(fail)
}

/// The step stored under metadata `key`: `None` when empty, or absent (states
/// written before the floor stop); `Err` with the message when not a number.
fn optional_step(meta: Option<&HashMap<String, String>>, key: &str) -> std::result::Result<Option<u64>, String> {
    match meta.and_then(|m| m.get(key)).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|e| format!("metadata `{key}`: {e}")),
    }
}
