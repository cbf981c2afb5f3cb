//! What the report reads of a case's in-context interpretation (docs/in-context.md):
//! the keys of `interpret.json`'s `in_context` it draws and quotes,
//! `implied.csv`, `filter.csv` and `patch.json`, and the small tables its
//! figures are drawn from.
//!
//! `in_context` is written from
//! [`InContextReport`](crate::interpret::in_context::InContextReport) by
//! [`InterpretRecord`](crate::run::records::InterpretRecord); that type is
//! written only, so the types here read the keys the report uses, by the
//! same names. Maps are in the COLUMN convention of physics.

use std::path::Path;

use serde::Deserialize;

use super::Table;
use crate::interpret::map::MapReport;
use crate::interpret::patch::{Heatmap, PatchReport};
use crate::util::error::{Error, Result};
use crate::util::json::{nan_if_null, vec2_nan_if_null};
use crate::util::mat2::Complex;

/// A readout regressed on the truth (`implied.omega0`, …).
#[derive(Clone, Debug, Deserialize)]
pub struct RegressionRead {
    /// Slope of implied on true; NaN when the truth does not vary.
    #[serde(deserialize_with = "nan_if_null")]
    pub slope: f64,
    /// Intercept of that line.
    #[serde(deserialize_with = "nan_if_null")]
    pub intercept: f64,
    /// R² of that line.
    #[serde(deserialize_with = "nan_if_null")]
    pub r2: f64,
    /// Median of `|implied − true|`.
    #[serde(deserialize_with = "nan_if_null")]
    pub median_abs_err: f64,
}

/// One readout across sequences (`implied`, `jacobian_implied`).
#[derive(Clone, Debug, Deserialize)]
pub struct ImpliedRead {
    /// Implied ω0 against the true ω0.
    pub omega0: RegressionRead,
    /// Implied γ against the true γ.
    pub gamma: RegressionRead,
    /// Sequences read.
    pub n_sequences: usize,
    /// Sequences whose map has oscillator form.
    pub n_oscillator_form: usize,
}

/// One candidate filter and its distance (`filter.candidates`).
#[derive(Clone, Debug, Deserialize)]
pub struct CandidateRead {
    /// Its name.
    pub name: String,
    /// Its distance relative to the filter's size.
    #[serde(deserialize_with = "nan_if_null")]
    pub relative_distance: f64,
}

/// The token Jacobians as a filter (`filter`).
#[derive(Clone, Debug, Deserialize)]
pub struct FilterRead {
    /// Spread of the per-sequence taps relative to the filter's size.
    #[serde(deserialize_with = "nan_if_null")]
    pub tap_relative_std: f64,
    /// Share of the taps' variation explained by the parameters.
    pub param_r2: Option<f64>,
    /// Every candidate, ascending distance.
    pub candidates: Vec<CandidateRead>,
    /// The nearest candidate.
    pub nearest: String,
    /// `d₂/d₁`.
    #[serde(deserialize_with = "nan_if_null")]
    pub margin: f64,
    /// Roots of the mean filter's characteristic polynomial.
    pub roots: Vec<Complex>,
    /// `e^{(−γ ± iω)Δt}` at the mean true parameters.
    pub true_roots: [Complex; 2],
    /// For each true root, the distance to the nearest filter root.
    #[serde(deserialize_with = "vec2_nan_if_null")]
    pub root_errors: [f64; 2],
}

/// `in_context` of `interpret.json`, the keys the report uses.
#[derive(Clone, Debug, Deserialize)]
pub struct InContextRead {
    /// Validation sequences read.
    pub n_sequences: usize,
    /// Full-context windows per sequence in the behaviour fit.
    pub windows: usize,
    /// Behaviour: the per-sequence map read out.
    pub implied: ImpliedRead,
    /// Mechanism: `∂ŝ_T/∂s_{T−1}` read out, when it has oscillator form.
    pub jacobian_implied: Option<ImpliedRead>,
    /// Why `jacobian_implied` is `null`.
    pub jacobian_implied_reason: Option<String>,
    /// The filter.
    pub filter: FilterRead,
    /// The verdict in plain words.
    pub verdict: String,
    /// The held-out probes across sequences; absent in older files.
    #[serde(default)]
    pub probes: Option<ProbesRead>,
}

/// A target's best probe (`probes.best`, `probes.untrained_best`).
#[derive(Clone, Debug, Deserialize)]
pub struct BestRead {
    /// Its site, `null` when no R² is finite.
    pub site: Option<String>,
    /// Its position.
    pub position: Option<usize>,
    /// Its held-out R².
    #[serde(deserialize_with = "nan_if_null")]
    pub r2: f64,
    /// The untrained control's R² at the same site and position.
    #[serde(default, deserialize_with = "nan_if_null")]
    pub untrained_r2: f64,
}

/// `in_context.probes`: held-out R² `[target][site][position]`.
#[derive(Clone, Debug, Deserialize)]
pub struct ProbesRead {
    /// `[S]` site names.
    pub sites: Vec<String>,
    /// `[T]` positions.
    pub positions: Vec<usize>,
    /// `[Q]` target names.
    pub targets: Vec<String>,
    /// `[Q][S][T]` held-out R², `null` read as NaN.
    pub r2: Vec<Vec<Vec<Option<f64>>>>,
    /// Sequences fitted on.
    pub n_fit: usize,
    /// Sequences scored on.
    pub n_score: usize,
    /// `[Q]` the best probe of each target.
    pub best: Vec<BestRead>,
    /// `[Q]` the untrained control's best probe of each target.
    #[serde(default)]
    pub untrained_best: Vec<BestRead>,
}

/// `interpret.json` of a case: the map (one system) and `in_context`
/// (parameters drawn per sequence), each when present.
#[derive(Clone, Debug, Default)]
pub struct InterpretRead {
    /// The map read as physics (keys at the top level).
    pub map: Option<MapReport>,
    /// The in-context interpretation.
    pub in_context: Option<InContextRead>,
}

/// Reads `interpret.json`: a map when it has `effective_map`, `in_context`
/// when it has that key.
pub fn read_interpret(path: &Path) -> Result<InterpretRead> {
    let value: serde_json::Value = crate::util::io::read_json(path)?;
    let bad = |e: serde_json::Error| Error::Input { file: path.into(), message: format!("malformed: {e}") };
    let map = match value.get("effective_map") {
        Some(_) => Some(serde_json::from_value(value.clone()).map_err(bad)?),
        None => None,
    };
    let in_context = value.get("in_context").map(|v| serde_json::from_value(v.clone()).map_err(bad)).transpose()?;
    Ok(InterpretRead { map, in_context })
}

/// `patch.json`.
pub fn read_patch(path: &Path) -> Result<PatchReport> {
    crate::util::io::read_json(path)
}

// ---------------------------------------------------------------- figure tables

/// The sequences of `implied.csv` with an oscillator reading of `readout`
/// (`behaviour` or `jacobian`): columns `omega0, gamma, implied_omega0,
/// implied_gamma`.
pub fn implied_table(implied: &Table, readout: &str) -> Result<Table> {
    let form = implied.text(&format!("{readout}_form"))?;
    let [w, g, iw, ig] =
        ["omega0", "gamma", &format!("{readout}_omega0"), &format!("{readout}_gamma")].map(|c| implied.numbers(c));
    let (w, g, iw, ig) = (w?, g?, iw?, ig?);
    let mut out = Table::new(&["omega0", "gamma", "implied_omega0", "implied_gamma"]);
    for i in (0..w.len()).filter(|&i| form[i] == "true") {
        out.push(&[w[i], g[i], iw[i], ig[i]]);
    }
    Ok(out)
}

/// The roots of the model's mean filter and the true `e^{(−γ ± iω)Δt}`:
/// columns `source` (`filter` or `true`), `re`, `im`.
pub fn roots_table(filter: &FilterRead) -> Table {
    let mut out = Table::new(&["source", "re", "im"]);
    for z in &filter.roots {
        out.push_labelled("filter", &[z.re, z.im]);
    }
    for z in &filter.true_roots {
        out.push_labelled("true", &[z.re, z.im]);
    }
    out
}

/// One patching heat map in long form: columns `row` (the activation, with
/// `[h]` for a head), `label` (short: `L0 pre`, `L1 post`, `L0 H1`),
/// `position`, `prediction_shift`.
pub fn patch_table(map: &Heatmap) -> Table {
    long_table("prediction_shift", &map.rows, &map.positions, &map.prediction_shift)
}

/// The probe grid of `target` in long form, as [`patch_table`]: columns
/// `row` (the site), `label`, `position`, `r2`; `None` when `probes` has
/// no such target.
pub fn probe_table(probes: &ProbesRead, target: &str) -> Option<Table> {
    let q = probes.targets.iter().position(|t| t == target)?;
    let grid: Vec<Vec<f64>> =
        probes.r2[q].iter().map(|row| row.iter().map(|v| v.unwrap_or(f64::NAN)).collect()).collect();
    Some(long_table("r2", &probes.sites, &probes.positions, &grid))
}

/// A `[rows][positions]` grid in long form: columns `row`, `label` (its
/// short name), `position`, `value`; an empty cell where it is not finite.
fn long_table(value: &str, rows: &[String], positions: &[usize], grid: &[Vec<f64>]) -> Table {
    let mut out = Table::new(&["row", "label", "position", value]);
    for (row, values) in rows.iter().zip(grid) {
        let label = short_label(row);
        for (p, v) in positions.iter().zip(values) {
            let cell = if v.is_finite() { format!("{v:e}") } else { String::new() };
            out.rows.push(vec![row.clone(), label.clone(), p.to_string(), cell]);
        }
    }
    out
}

/// `blocks.1.resid_pre` → `L1 pre`, `blocks.1.resid_post` → `L1 post`,
/// `blocks.0.attn.result[1]` and `blocks.0.attn.head1` → `L0 H1`,
/// `blocks.0.mlp_out` → `L0 mlp`.
fn short_label(row: &str) -> String {
    let rest = row.strip_prefix("blocks.").unwrap_or(row);
    let (layer, what) = rest.split_once('.').unwrap_or(("", rest));
    let what = match what {
        "resid_pre" => "pre".to_string(),
        "resid_post" => "post".to_string(),
        "mlp_out" => "mlp".to_string(),
        w if w.starts_with("attn.head") => format!("H{}", &w["attn.head".len()..]),
        w => match w.split_once('[') {
            Some((_, h)) => format!("H{}", h.trim_end_matches(']')),
            None => w.to_string(),
        },
    };
    format!("L{layer} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_rows_get_short_labels() {
        assert_eq!(short_label("blocks.1.resid_pre"), "L1 pre");
        assert_eq!(short_label("blocks.1.resid_post"), "L1 post");
        assert_eq!(short_label("blocks.0.attn.result[1]"), "L0 H1");
        assert_eq!(short_label("blocks.2.mlp_out"), "L2 mlp");
    }
}
