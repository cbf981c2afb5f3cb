//! `[sweep]`: the points of `physlens sweep` (docs/sweeps.md). A sweep file
//! is a base config plus this section: a grid (every combination of the
//! listed values) and/or `n` random points (each key drawn from a range),
//! every key a dotted config key. [`crate::config::points`] expands it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[sweep]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    /// Dotted config key → the values it takes; the grid is their product.
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    /// Random points, crossed with the grid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub random: Option<RandomPoints>,
    /// The seed of the random draws (the models' own seed is `train.seed`).
    pub seed: u64,
}

/// `[sweep.random]`: `n` points, each key drawn from its range.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RandomPoints {
    /// The number of draws.
    pub n: usize,
    /// Dotted config key → its range.
    #[serde(flatten)]
    pub ranges: BTreeMap<String, Range>,
}

/// The range of a random key: `{ uniform = [lo, hi] }` or
/// `{ log_uniform = [lo, hi] }`. Integer bounds draw integers (both ends
/// included; log-uniform rounds to the nearest).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Range {
    /// Uniform on `[lo, hi]`.
    Uniform(Vec<toml::Value>),
    /// Uniform in `ln x` on `[lo, hi]`, `lo > 0`.
    LogUniform(Vec<toml::Value>),
}

/// One point of a sweep: its id and the value of every swept key.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Stable id, also the name of its folder.
    pub id: String,
    /// Dotted key → value, grid keys then random keys.
    pub values: BTreeMap<String, toml::Value>,
}

/// A swept value as `--list` and `sweep.csv` show it: strings without
/// quotes, anything else as TOML writes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
