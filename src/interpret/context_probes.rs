//! Held-out ridge probes across sequences, for in-context models (docs/in-context.md):
//! where the per-sequence parameters live. For every site (an activation
//! written to the residual stream) × position, a ridge probe reads the
//! site's `D` values at that token of each sequence and predicts a
//! per-sequence target; it is fitted on the first half of the sequences
//! and scored (R²) on the second half. The split is by sequence, never by
//! state: no token of a scored sequence is seen in the fit.
//!
//! Sites, in forward order: `blocks.{l}.resid_pre` for every layer, then
//! `blocks.{L−1}.resid_post`; then each head's write to the residual,
//! `blocks.{l}.attn.head{h}` = `z_h · W_O[h]` (the head's slice
//! `[:, :, h, :]` of the cached `blocks.{l}.attn.result`; attention has no
//! output bias, so the heads of a layer sum to its attention output); then
//! `blocks.{l}.mlp_out` with MLP blocks.
//!
//! Targets, per sequence: `omega0`, `gamma`, `omega0_sq`, `tr_M`, `det_M`
//! and the entries `M00 … M11` of its one-step data map `M`
//! ([`System::data_step`], column convention, `M{i}{j}` = `m[i][j]`). The
//! coefficients of the two-step Cayley–Hamilton filter
//! `s_{t+1} = c1 s_t + c2 s_{t−1}` are `c1 = tr M` and `c2 = −det M`; R² does
//! not see the sign, so `tr_M` and `det_M` ARE those filter coefficients.
//! Given the model's own per-sequence filter (the token Jacobians of
//! [`crate::interpret::in_context`]), the targets gain `taps{k}.{i}{j}` =
//! `taps[k][i][j]` for `k` = 0 (the last token) and 1. A target that does
//! not vary across the sequences (standard deviation at most
//! [`CONSTANT_TOL`]` · (1 + |mean|)`, e.g. γ when it is fixed) has R² NaN
//! (`null`) everywhere: there is nothing to explain.
//!
//! A high R² alone does not say the model learned anything: the residual
//! stream carries the input states, and a wide enough random mixing of a
//! few of them already lets a linear probe read ω0 (held-out R² 0.72 for
//! an untrained 8-layer d_model-32 model, 0.68 for a 1-layer d_model-16
//! one, on ω0 ∈ [1, 4], γ ∈ [0, 0.5]). So every probe is also fitted on an
//! untrained control, the same shape at its initial weights, and what the
//! training added is the difference.
//!
//! The probe is [`Ridge::fit`](crate::interpret::probe::Ridge::fit)'s:
//! features standardised on the fit half (near-constant ones, by
//! [`FEATURE_TOL`], dropped), penalty `λ n ‖w‖²` with λ = [`DEFAULT_LAMBDA`].
//! Each (site, position) is fitted once for all targets (one Gram matrix,
//! several right-hand sides) from moments accumulated chunk by chunk, so no
//! site is ever held for all sequences at once.
//!
//! # Shapes
//! N sequences (at most [`MAX_PROBE_SEQUENCES`]), T = `n_ctx`, D = `d_model`,
//! S sites, Q targets: inputs `[N, T, 2]`, taps `[N][T]` 2×2, `r2`
//! `[Q][S][T]`.

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use crate::interpret::probe::DEFAULT_LAMBDA;
use crate::model::{Activations, D_IN, Model, ModelConfig};
use crate::physics::System;
use crate::util::mat2::{self, Mat2};

/// Sequences the probes read at most (the first ones given): 1024 to fit
/// and 1024 to score pin an R² to about ±0.01, and the moments of a
/// d_model-32 site take well under a second.
pub const MAX_PROBE_SEQUENCES: usize = 2048;

/// Fewer sequences than this: every R² is NaN (two to fit, two to score).
pub const MIN_PROBE_SEQUENCES: usize = 4;

/// A target whose standard deviation across the sequences is at most this
/// times `1 + |mean|` is constant; its R² is NaN.
pub const CONSTANT_TOL: f64 = 1e-9;

/// A feature whose standard deviation on the fit half is at most this
/// times `|mean| +` the largest standard deviation of the site is constant
/// (rounding only) and dropped from the probe.
pub const FEATURE_TOL: f64 = 1e-9;

/// The held-out R² of every probe: `in_context.probes` of
/// `physlens interpret --json`.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeGrid {
    /// `[S]` activation names, in forward order (module docs).
    pub sites: Vec<String>,
    /// `[T]` token positions `0 … T−1`.
    pub positions: Vec<usize>,
    /// `[Q]` target names (module docs).
    pub targets: Vec<String>,
    /// `[Q][S][T]`: held-out R² of the probe from `sites[s]` at
    /// `positions[p]` to `targets[q]`; NaN (`null`) for a constant target or
    /// with fewer than [`MIN_PROBE_SEQUENCES`] sequences.
    pub r2: Vec<Vec<Vec<f64>>>,
    /// `[Q][S][T]`: the same probes read from the untrained control (the
    /// model's shape at its initial weights, module docs); all NaN without
    /// one. In `context_probes.csv`, not in the JSON (`untrained_best` and
    /// `best[q].untrained_r2` summarise it there).
    #[serde(skip)]
    pub untrained_r2: Vec<Vec<Vec<f64>>>,
    /// Sequences the probes are fitted on (the first half).
    pub n_fit: usize,
    /// Sequences they are scored on (the rest).
    pub n_score: usize,
    /// Ridge penalty λ (per sequence, on standardised features).
    pub lambda: f64,
    /// `[Q]`: for each target, its best probe.
    pub best: Vec<BestProbe>,
    /// `[Q]`: for each target, the untrained control's best probe (its
    /// `untrained_r2` NaN).
    pub untrained_best: Vec<BestProbe>,
}

/// The probe with the highest held-out R² for one target (the first in
/// forward order, then by position, on ties).
#[derive(Clone, Debug, Serialize)]
pub struct BestProbe {
    /// Target name.
    pub target: String,
    /// Its site; `None` (`null`) when no R² is finite.
    pub site: Option<String>,
    /// Its position; `None` (`null`) when no R² is finite.
    pub position: Option<usize>,
    /// Its held-out R²; NaN (`null`) when none is finite.
    pub r2: f64,
    /// The untrained control's held-out R² at the same site and position;
    /// NaN (`null`) without a control or a best probe.
    pub untrained_r2: f64,
}

/// Held-out ridge probes from every site × position of `model` to the
/// per-sequence targets (module docs) of the first [`MAX_PROBE_SEQUENCES`]
/// sequences: fitted on the first half, scored on the second.
///
/// # Shapes
/// `inputs` `[N, T, 2]` (row-major `(x, p)`), `systems` `[N]`, `taps`
/// `[N][T]` 2×2 with `k = 0` the last token; only the first N of each is
/// read, N the shortest of the three. `control` (same shape as `model`),
/// when given, is probed the same way for `untrained_r2`.
///
/// # Panics
/// If `control`'s shape differs from `model`'s.
pub fn probe_grid(
    model: &Model<f64>,
    control: Option<&Model<f64>>,
    inputs: &[f64],
    systems: &[System],
    taps: Option<&[Vec<Mat2>]>,
) -> ProbeGrid {
    let cfg = &model.cfg;
    let (t, w) = (cfg.n_ctx, cfg.n_ctx * D_IN);
    let n = (inputs.len() / w).min(systems.len()).min(taps.map_or(usize::MAX, <[_]>::len)).min(MAX_PROBE_SEQUENCES);
    let sites = sites(cfg);
    let targets = targets(&systems[..n], taps.map(|p| &p[..n]));
    let grid = |m: &Model<f64>| r2_grid(m, &inputs[..n * w], &sites, &targets);
    let r2 = grid(model);
    let untrained_r2 = match control {
        Some(c) => {
            assert_eq!(c.cfg, *cfg, "the untrained control has the model's shape");
            grid(c)
        }
        None => vec![vec![vec![f64::NAN; t]; sites.len()]; targets.len()],
    };
    let site_names: Vec<String> = sites.iter().map(|s| s.name(cfg)).collect();
    let names: Vec<&str> = targets.iter().map(|(name, _)| name.as_str()).collect();
    let best = names
        .iter()
        .zip(&r2)
        .zip(&untrained_r2)
        .map(|((name, grid), control)| {
            let mut b = best_of(name, grid, &site_names);
            if let (Some(s), Some(p)) = (&b.site, b.position) {
                b.untrained_r2 = control[site_names.iter().position(|n| n == s).expect("a site")][p];
            }
            b
        })
        .collect();
    let untrained_best = names.iter().zip(&untrained_r2).map(|(name, g)| best_of(name, g, &site_names)).collect();
    ProbeGrid {
        sites: site_names,
        positions: (0..t).collect(),
        targets: names.iter().map(|n| n.to_string()).collect(),
        r2,
        untrained_r2,
        n_fit: n / 2,
        n_score: n - n / 2,
        lambda: DEFAULT_LAMBDA,
        best,
        untrained_best,
    }
}

/// `[Q][S][T]`: the held-out R² of every probe of `model` (module docs);
/// NaN for a constant target, or with fewer than [`MIN_PROBE_SEQUENCES`]
/// sequences. `inputs` `[N, T, 2]`, `targets` `[Q]` of `[N]` values.
fn r2_grid(model: &Model<f64>, inputs: &[f64], sites: &[Site], targets: &[(String, Vec<f64>)]) -> Vec<Vec<Vec<f64>>> {
    let t = model.cfg.n_ctx;
    let n = inputs.len() / (t * D_IN);
    let mut r2 = vec![vec![vec![f64::NAN; t]; sites.len()]; targets.len()];
    let vary: Vec<usize> = (0..targets.len()).filter(|&q| varies(&targets[q].1)).collect();
    if n >= MIN_PROBE_SEQUENCES && !vary.is_empty() && !sites.is_empty() {
        let y = DMatrix::from_fn(n, vary.len(), |i, c| targets[vary[c]].1[i]);
        let scores = fit_and_score(model, inputs, sites, &y, n / 2);
        for (c, &q) in vary.iter().enumerate() {
            for (s, row) in r2[q].iter_mut().enumerate() {
                for (p, v) in row.iter_mut().enumerate() {
                    *v = scores[s * t + p][c];
                }
            }
        }
    }
    r2
}

/// `context_probes.csv`: one row per target × site × position (the order
/// of [`ProbeGrid::r2`]), columns `target, site, position, r2,
/// untrained_r2`; an empty cell for NaN (a constant target, no control).
pub fn context_probes_csv(g: &ProbeGrid) -> String {
    let cell = |v: f64| if v.is_finite() { format!("{v:e}") } else { String::new() };
    let mut out = "target,site,position,r2,untrained_r2\n".to_string();
    for (q, target) in g.targets.iter().enumerate() {
        for (s, site) in g.sites.iter().enumerate() {
            for &p in &g.positions {
                let (r2, control) = (g.r2[q][s][p], g.untrained_r2[q][s][p]);
                out.push_str(&format!("{target},{site},{p},{},{}\n", cell(r2), cell(control)));
            }
        }
    }
    out
}

// ─── Sites and targets ───────────────────────────────────────────────────

/// Where a probe reads, each `[B, T, D]` (one head's slice of `attn.result`).
#[derive(Clone, Copy, Debug)]
enum Site {
    /// `acts.resid[i]`: `blocks.{i}.resid_pre`, or `blocks.{L−1}.resid_post` for `i = L`.
    Resid(usize),
    /// Head `h` of layer `l`: `z_h · W_O[h]`.
    Head(usize, usize),
    /// `blocks.{l}.mlp_out`.
    Mlp(usize),
}

impl Site {
    fn name(self, cfg: &ModelConfig) -> String {
        match self {
            Site::Resid(i) if i == cfg.n_layers => format!("blocks.{}.resid_post", i - 1),
            Site::Resid(i) => format!("blocks.{i}.resid_pre"),
            Site::Head(l, h) => format!("blocks.{l}.attn.head{h}"),
            Site::Mlp(l) => format!("blocks.{l}.mlp_out"),
        }
    }

    /// The `D` values of sequence `b` at position `pos` in the last forward pass.
    fn row<'a>(self, acts: &'a Activations<f64>, cfg: &ModelConfig, b: usize, pos: usize) -> &'a [f64] {
        let (d, token) = (cfg.d_model, b * cfg.n_ctx + pos);
        match self {
            Site::Resid(i) => &acts.resid[i][token * d..][..d],
            Site::Head(l, h) => &acts.blocks[l].result[(token * cfg.n_heads + h) * d..][..d],
            Site::Mlp(l) => &acts.blocks[l].mlp_out[token * d..][..d],
        }
    }
}

/// The sites of `cfg` in forward order (module docs); none without layers.
fn sites(cfg: &ModelConfig) -> Vec<Site> {
    let l = cfg.n_layers;
    if l == 0 {
        return vec![];
    }
    let mut out: Vec<Site> = (0..=l).map(Site::Resid).collect();
    out.extend((0..l).flat_map(|l| (0..cfg.n_heads).map(move |h| Site::Head(l, h))));
    if cfg.has_mlp() {
        out.extend((0..l).map(Site::Mlp));
    }
    out
}

/// The targets (module docs) with their values `[N]`.
fn targets(systems: &[System], taps: Option<&[Vec<Mat2>]>) -> Vec<(String, Vec<f64>)> {
    let maps: Vec<Mat2> = systems.iter().map(System::data_step).collect();
    let of = |f: &dyn Fn(&System, &Mat2) -> f64| systems.iter().zip(&maps).map(|(s, m)| f(s, m)).collect::<Vec<f64>>();
    let mut out = vec![
        ("omega0".to_string(), of(&|s, _| s.omega0)),
        ("gamma".into(), of(&|s, _| s.gamma)),
        ("omega0_sq".into(), of(&|s, _| s.omega0 * s.omega0)),
        ("tr_M".into(), of(&|_, m| mat2::trace(m))),
        ("det_M".into(), of(&|_, m| mat2::det(m))),
    ];
    const ENTRIES: [(usize, usize); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];
    out.extend(ENTRIES.map(|(i, j)| (format!("M{i}{j}"), of(&|_, m| m[i][j]))));
    if let Some(taps) = taps {
        let k_max = taps.iter().map(Vec::len).min().unwrap_or(0).min(2);
        for k in 0..k_max {
            out.extend(ENTRIES.map(|(i, j)| (format!("taps{k}.{i}{j}"), taps.iter().map(|p| p[k][i][j]).collect())));
        }
    }
    out
}

/// Whether `values` vary beyond [`CONSTANT_TOL`] (false when one is not finite).
fn varies(values: &[f64]) -> bool {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    sd > CONSTANT_TOL * (1.0 + mean.abs())
}

/// The highest finite R² of `grid` `[S][T]` and where it is.
fn best_of(target: &str, grid: &[Vec<f64>], sites: &[String]) -> BestProbe {
    let none = BestProbe { target: target.into(), site: None, position: None, r2: f64::NAN, untrained_r2: f64::NAN };
    let mut best = none;
    for (s, row) in grid.iter().enumerate() {
        for (p, &v) in row.iter().enumerate() {
            if v.is_finite() && (best.r2.is_nan() || v > best.r2) {
                best = BestProbe { site: Some(sites[s].clone()), position: Some(p), r2: v, ..best };
            }
        }
    }
    best
}

// ─── Fitting and scoring ─────────────────────────────────────────────────

/// Runs `model` over `inputs` `[B, T, 2]` in chunks; `visit(acts, first)`
/// sees each chunk's activations, `first` its first sequence.
fn for_each_chunk(model: &Model<f64>, inputs: &[f64], mut visit: impl FnMut(&Activations<f64>, usize)) {
    let w = model.cfg.n_ctx * D_IN;
    let chunk = Activations::<f64>::chunk(&model.cfg, inputs.len() / w);
    let mut acts = Activations::new(&model.cfg, chunk);
    for (i, part) in inputs.chunks(chunk * w).enumerate() {
        model.forward(part, &mut acts);
        visit(&acts, i * chunk);
    }
}

/// One site × position's features on the fit half, as moments of
/// `x − shift` (`shift` its first row, against cancellation).
///
/// # Shapes
/// `shift`, `sum` `[D]`; `gram` `[D, D]`; `cross` `[D, Q]`.
struct Moments {
    shift: DVector<f64>,
    sum: DVector<f64>,
    gram: DMatrix<f64>,
    cross: DMatrix<f64>,
}

/// A fitted probe: `ŷ = ȳ_fit + (x − center) · beta`.
///
/// # Shapes
/// `center` `[D]` (the feature means), `beta` `[D, Q]` (0 for dropped features).
struct Probe {
    center: DVector<f64>,
    beta: DMatrix<f64>,
}

/// The rows `[B, D]` of `site` at `pos` in `acts`, minus `shift`.
fn features(acts: &Activations<f64>, cfg: &ModelConfig, site: Site, pos: usize, shift: &DVector<f64>) -> DMatrix<f64> {
    let rows = (0..acts.batch).flat_map(|b| site.row(acts, cfg, b, pos).iter().zip(shift.iter()).map(|(v, s)| v - s));
    DMatrix::from_row_iterator(acts.batch, cfg.d_model, rows)
}

impl Moments {
    /// Adds the rows `x` `[B, D]` with their centred targets `y` `[B, Q]`.
    fn add(&mut self, x: &DMatrix<f64>, y: &DMatrix<f64>) {
        self.sum += x.row_sum().transpose();
        self.gram.gemm_tr(1.0, x, x, 1.0);
        self.cross.gemm_tr(1.0, x, y, 1.0);
    }

    /// The ridge probe of [`Ridge::fit`](crate::interpret::probe::Ridge::fit)
    /// on these `n` rows: `(C̃ + λ I) w = c̃` on the standardised kept
    /// features (`C̃` their correlations, `c̃` their covariances with the
    /// targets over their standard deviations), NaN when that fails.
    fn solve(&self, n: usize, lambda: f64) -> Probe {
        let (d, q, nf) = (self.gram.nrows(), self.cross.ncols(), n as f64);
        let mean = &self.sum / nf;
        let cov = &self.gram / nf - &mean * mean.transpose();
        let center = &self.shift + &mean;
        let sd: Vec<f64> = (0..d).map(|j| cov[(j, j)].max(0.0).sqrt()).collect();
        let sd_max = sd.iter().copied().fold(0.0, f64::max);
        let keep: Vec<usize> = (0..d).filter(|&j| sd[j] > FEATURE_TOL * (center[j].abs() + sd_max)).collect();
        let mut beta = DMatrix::zeros(d, q);
        if keep.is_empty() {
            return Probe { center, beta };
        }
        let k = keep.len();
        let mut corr = DMatrix::from_fn(k, k, |a, b| cov[(keep[a], keep[b])] / (sd[keep[a]] * sd[keep[b]]));
        for a in 0..k {
            corr[(a, a)] += lambda;
        }
        // The targets are centred on the fit half: Σ (x − x̄) y = Σ x y.
        let rhs = DMatrix::from_fn(k, q, |a, c| self.cross[(keep[a], c)] / nf / sd[keep[a]]);
        let w = match corr.clone().cholesky() {
            Some(ch) => Some(ch.solve(&rhs)),
            None => corr.lu().solve(&rhs),
        };
        match w {
            Some(w) => {
                for (a, &j) in keep.iter().enumerate() {
                    for c in 0..q {
                        beta[(j, c)] = w[(a, c)] / sd[j];
                    }
                }
            }
            None => beta.fill(f64::NAN),
        }
        Probe { center, beta }
    }
}

/// Per site × position `[S·T]` (site-major), the held-out R² `[Q]` of the
/// probes fitted on the first `n_fit` sequences and scored on the rest.
///
/// # Shapes
/// `inputs` `[N, T, 2]`, `y` `[N, Q]`.
fn fit_and_score(model: &Model<f64>, inputs: &[f64], sites: &[Site], y: &DMatrix<f64>, n_fit: usize) -> Vec<Vec<f64>> {
    let cfg = &model.cfg;
    let (t, d, q) = (cfg.n_ctx, cfg.d_model, y.ncols());
    let (fit_in, score_in) = inputs.split_at(n_fit * t * D_IN);
    let y_mean = y.rows(0, n_fit).row_mean();
    let centred = DMatrix::from_fn(y.nrows(), q, |i, c| y[(i, c)] - y_mean[c]);
    let cells = || sites.iter().flat_map(|&s| (0..t).map(move |p| (s, p)));
    let mut moments: Vec<Moments> = cells()
        .map(|_| Moments {
            shift: DVector::zeros(d),
            sum: DVector::zeros(d),
            gram: DMatrix::zeros(d, d),
            cross: DMatrix::zeros(d, q),
        })
        .collect();
    for_each_chunk(model, fit_in, |acts, first| {
        let ys = centred.rows(first, acts.batch).into_owned();
        for ((site, pos), m) in cells().zip(&mut moments) {
            if first == 0 {
                m.shift = DVector::from_column_slice(site.row(acts, cfg, 0, pos));
            }
            m.add(&features(acts, cfg, site, pos, &m.shift), &ys);
        }
    });
    let probes: Vec<Probe> = moments.iter().map(|m| m.solve(n_fit, DEFAULT_LAMBDA)).collect();
    let mut ss_res = vec![vec![0.0; q]; probes.len()];
    for_each_chunk(model, score_in, |acts, first| {
        let ys = centred.rows(n_fit + first, acts.batch);
        for (((site, pos), probe), ss) in cells().zip(&probes).zip(&mut ss_res) {
            let pred = features(acts, cfg, site, pos, &probe.center) * &probe.beta;
            for (c, s) in ss.iter_mut().enumerate() {
                *s += (0..acts.batch).map(|b| (ys[(b, c)] - pred[(b, c)]).powi(2)).sum::<f64>();
            }
        }
    });
    let score = y.rows(n_fit, y.nrows() - n_fit);
    let ss_tot: Vec<f64> = (0..q)
        .map(|c| {
            let col = score.column(c);
            let mean = col.mean();
            col.iter().map(|v| (v - mean).powi(2)).sum()
        })
        .collect();
    ss_res
        .iter()
        .map(|r| r.iter().zip(&ss_tot).map(|(res, tot)| if *tot > 0.0 { 1.0 - res / tot } else { f64::NAN }).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The moments' probe is the probe of `Ridge::fit` on the same rows.
    #[test]
    fn the_probe_from_moments_is_the_ridge_fit() {
        let (n, d) = (40, 3);
        let x = DMatrix::from_fn(n, d, |i, j| ((i * 7 + j * 3) as f64 * 0.37).sin() + if j == 2 { 5.0 } else { 0.0 });
        let y: Vec<f64> = (0..n).map(|i| 2.0 * x[(i, 0)] - x[(i, 1)] + 0.3 * (i as f64).cos()).collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let yc = DMatrix::from_fn(n, 1, |i, _| y[i] - y_mean);
        let shift = x.row(0).transpose();
        let mut m = Moments {
            shift: shift.clone(),
            sum: DVector::zeros(d),
            gram: DMatrix::zeros(d, d),
            cross: DMatrix::zeros(d, 1),
        };
        for start in [0, 17] {
            let len = if start == 0 { 17 } else { n - 17 };
            let part = DMatrix::from_fn(len, d, |i, j| x[(start + i, j)] - shift[j]);
            m.add(&part, &yc.rows(start, len).into_owned());
        }
        let probe = m.solve(n, 1e-3);
        let flat: Vec<f64> = (0..n).flat_map(|i| (0..d).map(move |j| (i, j))).map(|(i, j)| x[(i, j)]).collect();
        let ridge = crate::interpret::probe::Ridge::fit(&flat, d, &y, 1e-3);
        for i in 0..n {
            let row: Vec<f64> = (0..d).map(|j| x[(i, j)]).collect();
            let ours = y_mean + (0..d).map(|j| (row[j] - probe.center[j]) * probe.beta[(j, 0)]).sum::<f64>();
            assert!((ours - ridge.predict(&row)).abs() < 1e-9, "row {i}: {ours} vs {}", ridge.predict(&row));
        }
    }
}
