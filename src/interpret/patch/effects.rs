//! Patching run b's activation into run a (docs/in-context.md): for a pair with
//! clean last predictions `ŝ_a`, `ŝ_b`, replacing one site at one position
//! of run a by its value in run b moves a's last prediction by `Δ`;
//! `prediction_shift` = mean over pairs of `Δ·(ŝ_b − ŝ_a)/‖ŝ_b − ŝ_a‖²`
//! (0 no effect, 1 fully b's), `delta_norm` = mean of `‖Δ‖/‖ŝ_b − ŝ_a‖`.
//! Both runs are computed once per chunk of pairs and cached; each patch
//! recomputes only what follows the site ([`rerun`]).

use serde::{Deserialize, Serialize};

use crate::interpret::patch::implied::omega0_shifts;
use crate::interpret::patch::pairs::Pairs;
use crate::interpret::patch::site::{Site, last_predictions, rerun};
use crate::model::{Activations, D_IN, Model};
use crate::util::json::vec_nan_if_null;

/// One site's effect at every position (an entry of `effects`, docs/in-context.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// The cache name, e.g. `blocks.0.resid_pre`.
    pub activation: String,
    /// Its layer.
    pub layer: usize,
    /// The axis of the two arrays: token positions `0 … T−1`.
    pub positions: Vec<usize>,
    /// The head, for `attn.result`; `null` otherwise.
    pub head: Option<usize>,
    /// Per position: the mean over pairs of `Δ·(ŝ_b − ŝ_a)/‖ŝ_b − ŝ_a‖²`.
    #[serde(deserialize_with = "vec_nan_if_null")]
    pub prediction_shift: Vec<f64>,
    /// Per position: the mean over pairs of `‖Δ‖/‖ŝ_b − ŝ_a‖`.
    #[serde(deserialize_with = "vec_nan_if_null")]
    pub delta_norm: Vec<f64>,
    /// Per position: the median over pairs of how far the implied ω0 of a's
    /// patched predictions moved from a's toward b's (0 a's dynamics, 1 b's;
    /// [`crate::interpret::patch::implied`]); `null` where no pair counts.
    #[serde(deserialize_with = "vec_nan_if_null")]
    pub omega0_shift: Vec<f64>,
    /// Per position: the pairs in that median.
    pub omega0_pairs: Vec<usize>,
}

/// Every site's effect, and how many pairs they average.
#[derive(Clone, Debug, PartialEq)]
pub struct Effects {
    /// One per site, in the order asked.
    pub effects: Vec<Effect>,
    /// Pairs whose clean predictions differ (the others are left out: the
    /// ratios are undefined for them).
    pub used: usize,
}

/// Runs `a` and `b` (`[N, T, 2]` each) in chunks and calls `f` with the
/// clean runs of each chunk and a work buffer for patched runs.
fn chunked(
    model: &Model<f64>,
    a: &[f64],
    b: &[f64],
    mut f: impl FnMut(&Activations<f64>, &Activations<f64>, &mut Activations<f64>),
) {
    let cfg = &model.cfg;
    let w = cfg.n_ctx * D_IN;
    let chunk = Activations::<f64>::chunk(cfg, a.len() / w);
    let [mut clean_a, mut clean_b, mut work] = std::array::from_fn(|_| Activations::<f64>::new(cfg, chunk));
    for (ca, cb) in a.chunks(chunk * w).zip(b.chunks(chunk * w)) {
        model.forward(ca, &mut clean_a);
        model.forward(cb, &mut clean_b);
        f(&clean_a, &clean_b, &mut work);
    }
}

/// For each pair of `a`, `b` (`[N, T, 2]` each): `Δ`, the change of a's last
/// prediction when `site` at `position` takes its value from run b.
pub fn patch_deltas(model: &Model<f64>, a: &[f64], b: &[f64], site: Site, position: usize) -> Vec<[f64; 2]> {
    let cfg = &model.cfg;
    let mut out = vec![];
    chunked(model, a, b, |clean_a, clean_b, work| {
        rerun(model, clean_a, work, site, position..position + 1, |seq, t, slot| {
            slot.copy_from_slice(site.slot(cfg, clean_b, seq, t))
        });
        let (before, after) = (last_predictions(cfg, clean_a), last_predictions(cfg, work));
        out.extend(before.iter().zip(&after).map(|(x, y)| [y[0] - x[0], y[1] - x[1]]));
    });
    out
}

/// The effect of patching each of `sites` at each position, averaged over `pairs`.
pub fn patch_effects(model: &Model<f64>, pairs: &Pairs, sites: &[Site]) -> Effects {
    let cfg = &model.cfg;
    let t = cfg.n_ctx;
    let mut shift = vec![vec![0.0; t]; sites.len()];
    let mut norm = vec![vec![0.0; t]; sites.len()];
    let mut used = 0;
    chunked(model, &pairs.a, &pairs.b, |clean_a, clean_b, work| {
        let (pa, pb) = (last_predictions(cfg, clean_a), last_predictions(cfg, clean_b));
        let diff: Vec<[f64; 2]> = pa.iter().zip(&pb).map(|(x, y)| [y[0] - x[0], y[1] - x[1]]).collect();
        let keep: Vec<bool> = diff.iter().map(|d| d.iter().all(|x| x.is_finite()) && d != &[0.0, 0.0]).collect();
        used += keep.iter().filter(|k| **k).count();
        for (i, site) in sites.iter().enumerate() {
            for p in 0..t {
                rerun(model, clean_a, work, *site, p..p + 1, |seq, tt, slot| {
                    slot.copy_from_slice(site.slot(cfg, clean_b, seq, tt))
                });
                for (((x, y), d), _) in
                    pa.iter().zip(last_predictions(cfg, work)).zip(&diff).zip(&keep).filter(|(_, k)| **k)
                {
                    let delta = [y[0] - x[0], y[1] - x[1]];
                    let dd = d[0] * d[0] + d[1] * d[1];
                    shift[i][p] += (delta[0] * d[0] + delta[1] * d[1]) / dd;
                    norm[i][p] += (delta[0] * delta[0] + delta[1] * delta[1]).sqrt() / dd.sqrt();
                }
            }
        }
    });
    let mean = |v: Vec<f64>| v.into_iter().map(|x| if used == 0 { f64::NAN } else { x / used as f64 }).collect();
    let omega0 = omega0_shifts(model, pairs, sites);
    let effects = sites
        .iter()
        .zip(shift.into_iter().zip(norm))
        .zip(omega0.shift.into_iter().zip(omega0.pairs))
        .map(|((site, (s, n)), (w, w_pairs))| Effect {
            activation: site.activation(),
            layer: site.layer(),
            positions: (0..t).collect(),
            head: site.head(),
            prediction_shift: mean(s),
            delta_norm: mean(n),
            omega0_shift: w,
            omega0_pairs: w_pairs,
        })
        .collect();
    Effects { effects, used }
}

/// One heat map: a kind of site over (layer or head) × position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// `residual` (`resid_pre` of each layer, then the last `resid_post`),
    /// `heads` (`attn.result` of each head) or `mlp` (`mlp_out`).
    pub name: String,
    /// The axes of the matrices, rows first: `["layer", "position"]` or `["head", "position"]`.
    pub axes: [String; 2],
    /// One label per row: the activation, with `[h]` for a head.
    pub rows: Vec<String>,
    /// The column axis: positions `0 … T−1`.
    pub positions: Vec<usize>,
    /// `[rows, T]`: `prediction_shift`.
    pub prediction_shift: Vec<Vec<f64>>,
    /// `[rows, T]`: `delta_norm`.
    pub delta_norm: Vec<Vec<f64>>,
    /// `[rows, T]`: `omega0_shift` (`null` where no pair counts).
    pub omega0_shift: Vec<Vec<Option<f64>>>,
}

/// Whether an effect belongs in a heat map.
type Keep = fn(&Effect) -> bool;

/// The effects arranged as heat maps (empty kinds left out).
pub fn heatmaps(effects: &[Effect]) -> Vec<Heatmap> {
    let kinds: [(&str, &str, Keep); 3] = [
        ("residual", "layer", |e| e.activation.ends_with("resid_pre") || e.activation.ends_with("resid_post")),
        ("heads", "head", |e| e.head.is_some()),
        ("mlp", "layer", |e| e.activation.ends_with("mlp_out")),
    ];
    kinds
        .iter()
        .filter_map(|(name, axis, keep)| {
            let rows: Vec<&Effect> = effects.iter().filter(|e| keep(e)).collect();
            let first = rows.first()?;
            Some(Heatmap {
                name: name.to_string(),
                axes: [axis.to_string(), "position".into()],
                rows: rows.iter().map(|e| label(e)).collect(),
                positions: first.positions.clone(),
                prediction_shift: rows.iter().map(|e| e.prediction_shift.clone()).collect(),
                delta_norm: rows.iter().map(|e| e.delta_norm.clone()).collect(),
                omega0_shift: rows
                    .iter()
                    .map(|e| e.omega0_shift.iter().map(|v| v.is_finite().then_some(*v)).collect())
                    .collect(),
            })
        })
        .collect()
}

/// `blocks.0.attn.result[1]` for head 1, else the activation.
pub fn label(e: &Effect) -> String {
    match e.head {
        Some(h) => format!("{}[{h}]", e.activation),
        None => e.activation.clone(),
    }
}
