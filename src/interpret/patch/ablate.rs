//! Zero- and mean-ablation: each head's output and each MLP's output
//! replaced, at every position, by zero or by its mean over the validation
//! sequences (at that position), and the change in the median relative
//! error `‖ŝ_T − s_T‖/‖s_T‖` of the last prediction.

use serde::{Deserialize, Serialize};

use crate::interpret::patch::site::{Site, last_predictions, rerun};
use crate::model::{Activations, D_IN, Model};
use crate::util::json::nan_if_null;

/// One component's ablations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AblationEffect {
    /// `blocks.{l}.attn.result` or `blocks.{l}.mlp_out`.
    pub activation: String,
    /// Its layer.
    pub layer: usize,
    /// The head, for `attn.result`; `null` for an MLP.
    pub head: Option<usize>,
    /// The median relative error with the output set to zero.
    #[serde(deserialize_with = "nan_if_null")]
    pub zero_median_rel_err: f64,
    /// Its change from the clean median (positive: worse).
    #[serde(deserialize_with = "nan_if_null")]
    pub zero_change: f64,
    /// The median relative error with the output set to its mean.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_median_rel_err: f64,
    /// Its change from the clean median.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_change: f64,
}

/// `ablation` of `physlens patch --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ablations {
    /// Validation sequences.
    pub n_sequences: usize,
    /// The clean model's median relative error at the last position.
    #[serde(deserialize_with = "nan_if_null")]
    pub median_rel_err: f64,
    /// One per head and MLP, in forward order.
    pub components: Vec<AblationEffect>,
}

/// `[T, D]`: the mean of `site` over the sequences `inputs` `[N, T, 2]`, per position.
pub fn site_means(model: &Model<f64>, inputs: &[f64], sites: &[Site]) -> Vec<Vec<f64>> {
    let cfg = &model.cfg;
    let (t, d, w) = (cfg.n_ctx, cfg.d_model, cfg.n_ctx * D_IN);
    let n = inputs.len() / w;
    let mut sums = vec![vec![0.0; t * d]; sites.len()];
    let mut acts = Activations::<f64>::new(cfg, Activations::<f64>::chunk(cfg, n));
    for chunk in inputs.chunks(acts.capacity(cfg) * w) {
        model.forward(chunk, &mut acts);
        for (site, sum) in sites.iter().zip(&mut sums) {
            for b in 0..acts.batch {
                for p in 0..t {
                    sum[p * d..][..d].iter_mut().zip(site.slot(cfg, &acts, b, p)).for_each(|(s, x)| *s += *x);
                }
            }
        }
    }
    sums.into_iter().map(|s| s.into_iter().map(|x| x / n.max(1) as f64).collect()).collect()
}

/// The last predictions on `inputs` `[N, T, 2]` with `site` replaced at every
/// position `p` by `with[p]` (`with` `[T, D]`: zeros, or [`site_means`]).
pub fn ablated_last_predictions(model: &Model<f64>, inputs: &[f64], site: Site, with: &[f64]) -> Vec<[f64; 2]> {
    let cfg = &model.cfg;
    let (d, w) = (cfg.d_model, cfg.n_ctx * D_IN);
    let chunk = Activations::<f64>::chunk(cfg, inputs.len() / w);
    let (mut clean, mut work) = (Activations::new(cfg, chunk), Activations::new(cfg, chunk));
    let mut out = vec![];
    for part in inputs.chunks(chunk * w) {
        model.forward(part, &mut clean);
        rerun(model, &clean, &mut work, site, 0..cfg.n_ctx, |_, p, slot| slot.copy_from_slice(&with[p * d..][..d]));
        out.extend(last_predictions(cfg, &work));
    }
    out
}

/// Zero- and mean-ablation of each of `components` on `inputs` with the
/// next states `targets` (both `[N, T, 2]`; the means are taken over `inputs`).
pub fn ablations(model: &Model<f64>, inputs: &[f64], targets: &[f64], components: &[Site]) -> Ablations {
    let cfg = &model.cfg;
    let (t, d) = (cfg.n_ctx, cfg.d_model);
    let truth: Vec<[f64; 2]> =
        targets.chunks_exact(t * D_IN).map(|s| [s[(t - 1) * D_IN], s[(t - 1) * D_IN + 1]]).collect();
    let median_err = |preds: &[[f64; 2]]| {
        let errs: Vec<f64> = preds
            .iter()
            .zip(&truth)
            .map(|(p, s)| ((p[0] - s[0]).powi(2) + (p[1] - s[1]).powi(2)).sqrt() / s[0].hypot(s[1]))
            .collect();
        median(errs)
    };
    let means = site_means(model, inputs, components);
    let zeros = vec![0.0; t * d];
    let chunk = Activations::<f64>::chunk(cfg, truth.len());
    let (mut clean, mut work) = (Activations::new(cfg, chunk), Activations::new(cfg, chunk));
    // The clean run once per chunk; each ablation recomputes from its layer on.
    let mut base = vec![];
    let mut ablated = vec![[vec![], vec![]]; components.len()];
    for part in inputs.chunks(chunk * t * D_IN) {
        model.forward(part, &mut clean);
        base.extend(last_predictions(cfg, &clean));
        for ((site, mean), preds) in components.iter().zip(&means).zip(&mut ablated) {
            for (with, preds) in [&zeros, mean].into_iter().zip(preds) {
                rerun(model, &clean, &mut work, *site, 0..t, |_, p, slot| slot.copy_from_slice(&with[p * d..][..d]));
                preds.extend(last_predictions(cfg, &work));
            }
        }
    }
    let baseline = median_err(&base);
    let components = components
        .iter()
        .zip(&ablated)
        .map(|(site, [zero, mean])| {
            let (zero, mean) = (median_err(zero), median_err(mean));
            AblationEffect {
                activation: site.activation(),
                layer: site.layer(),
                head: site.head(),
                zero_median_rel_err: zero,
                zero_change: zero - baseline,
                mean_median_rel_err: mean,
                mean_change: mean - baseline,
            }
        })
        .collect();
    Ablations { n_sequences: truth.len(), median_rel_err: baseline, components }
}

/// The median of the finite values (NaN when there is none).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.retain(|x| x.is_finite());
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}
