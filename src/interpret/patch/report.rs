//! Everything `physlens patch` reports for a checkpoint: the effects of
//! patching every site at every position (`effects`, docs/outputs.md), the same as
//! heat maps, the ablations, and the readable summary and files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Sampler};
use crate::interpret::full::checkpoint_e_max;
use crate::interpret::patch::ablate::{Ablations, ablations};
use crate::interpret::patch::effects::{Effect, Heatmap, heatmaps, label, patch_effects};
use crate::interpret::patch::pairs::{PairOptions, PairSource, make_pairs};
use crate::interpret::patch::site::{Site, sites};
use crate::model::checkpoint::Checkpoint;
use crate::model::{Activations, D_IN, ModelConfig, chunk_sequences};
use crate::physics::System;
use crate::util::error::{Error, Result};
use crate::util::io::{write_json, write_text};
use crate::util::memory::{Bytes, Estimate, available};
use crate::util::rng::{Rng, Stream};

/// Validation sequences of the ablations by default.
pub const DEFAULT_ABLATION_SEQUENCES: usize = 1024;

/// Settings of [`patch_checkpoint`].
#[derive(Clone, Debug, PartialEq)]
pub struct PatchOptions {
    /// The pairs, and the seed and largest energy of every draw.
    pub pairs: PairOptions,
    /// Sites to patch: kinds (`resid_pre`, `resid_post`, `attn.result`,
    /// `mlp_out`) or cache names; empty: all.
    pub activations: Vec<String>,
    /// Validation sequences of the ablations (from the training ranges); 0: no ablations.
    pub n_valid: usize,
}

impl Default for PatchOptions {
    fn default() -> Self {
        PatchOptions { pairs: PairOptions::default(), activations: vec![], n_valid: DEFAULT_ABLATION_SEQUENCES }
    }
}

/// `pairs` of `physlens patch --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairsInfo {
    /// `drawn` (from the training ranges) or `fixed` (`--a`, `--b`).
    pub source: PairSource,
    /// Pairs made.
    pub n_pairs: usize,
    /// Pairs averaged: those whose clean last predictions differ.
    pub n_used: usize,
    /// Run a's system, when fixed.
    pub a: Option<System>,
    /// Run b's system, when fixed.
    pub b: Option<System>,
    /// Seed of the draws.
    pub seed: u64,
    /// Energies uniform on `[0, e_max]` (a single fixed pair: energy 1, phase 0).
    pub e_max: f64,
}

/// `physlens patch --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchReport {
    /// docs/outputs.md: one entry per site, its arrays over `positions`.
    pub effects: Vec<Effect>,
    /// The effects as named matrices: residual (layer × position), heads (head × position), MLPs.
    pub heatmaps: Vec<Heatmap>,
    /// The pairs.
    pub pairs: PairsInfo,
    /// Zero- and mean-ablation of each head and MLP; `null` when not asked.
    pub ablation: Option<Ablations>,
    /// The checkpoint, as given.
    pub model: String,
}

/// Patches the checkpoint `ckpt` read from `file` (the name is only reported).
///
/// # Errors
/// [`Error::Option`] as [`make_pairs`] and [`sites`]; `n_valid` or `pairs` when they need more memory than there is.
pub fn patch_checkpoint(ckpt: &Checkpoint, file: &str, opts: &PatchOptions) -> Result<PatchReport> {
    let model = ckpt.model.to_f64();
    let cfg = &model.cfg;
    let patched = sites(cfg, &opts.activations)?;
    check_memory(cfg, opts)?;
    let pairs = make_pairs(&ckpt.system, cfg.n_ctx, &opts.pairs)?;
    let effects = patch_effects(&model, &pairs, &patched);
    let fixed = pairs.source == PairSource::Fixed;
    let ablation = (opts.n_valid > 0).then(|| {
        let sampler = Sampler::new(&ckpt.system, opts.pairs.e_max, 0.0, cfg.n_ctx);
        let data = Dataset::<f64>::generate(&sampler, opts.n_valid, &mut Rng::new(opts.pairs.seed, Stream::Valid));
        let components: Vec<Site> = sites(cfg, &[])
            .expect("no filter")
            .into_iter()
            .filter(|s| matches!(s, Site::Head(..) | Site::Mlp(_)))
            .collect();
        ablations(&model, &data.inputs, &data.targets, &components)
    });
    Ok(PatchReport {
        heatmaps: heatmaps(&effects.effects),
        pairs: PairsInfo {
            source: pairs.source,
            n_pairs: pairs.len(),
            n_used: effects.used,
            a: fixed.then(|| pairs.systems[0].0),
            b: fixed.then(|| pairs.systems[0].1),
            seed: opts.pairs.seed,
            e_max: opts.pairs.e_max,
        },
        effects: effects.effects,
        ablation,
        model: file.into(),
    })
}

/// Refuses pair and validation counts whose sequences and predictions
/// would not fit in the memory available.
fn check_memory(cfg: &ModelConfig, opts: &PatchOptions) -> Result<()> {
    let pairs = opts.pairs.pairs.unwrap_or(crate::interpret::patch::pairs::DEFAULT_PAIRS);
    let components = cfg.n_layers * (cfg.n_heads + 1);
    let mut e = Estimate::default();
    e.add("the pairs", Bytes::of_values(&[pairs, cfg.n_ctx, 2 * D_IN], 8));
    e.add("the validation sequences", Bytes::of_values(&[opts.n_valid, cfg.n_ctx, 2 * D_IN], 8));
    e.add("the ablated predictions", Bytes::of_values(&[opts.n_valid, 2 * components + 1, D_IN], 8));
    e.add("the activations", Activations::<f64>::bytes(cfg, chunk_sequences(cfg, pairs.max(opts.n_valid), 8), 8) * 3);
    let (name, advice) = if opts.n_valid >= pairs {
        ("n_valid", "Use fewer validation sequences")
    } else {
        ("pairs", "Use fewer pairs")
    };
    match e.refusal("patching the model", &available(), advice) {
        Some(message) => Err(Error::Option { name: name.into(), message }),
        None => Ok(()),
    }
}

/// A number for CSV: empty when not finite.
fn csv(x: f64) -> String {
    if x.is_finite() { x.to_string() } else { String::new() }
}

impl PatchReport {
    /// `effects.csv`: one row per activation × head × position.
    pub fn effects_csv(&self) -> String {
        let mut out =
            "activation,layer,head,position,prediction_shift,delta_norm,omega0_shift,omega0_pairs\n".to_string();
        for e in &self.effects {
            for (i, p) in e.positions.iter().enumerate() {
                let head = e.head.map_or(String::new(), |h| h.to_string());
                let (s, n, w) = (csv(e.prediction_shift[i]), csv(e.delta_norm[i]), csv(e.omega0_shift[i]));
                let _ = writeln!(out, "{},{},{head},{p},{s},{n},{w},{}", e.activation, e.layer, e.omega0_pairs[i]);
            }
        }
        out
    }

    /// `ablation.csv`: one row per head and MLP (only a header without ablations).
    pub fn ablation_csv(&self) -> String {
        let mut out =
            "activation,layer,head,zero_median_rel_err,zero_change,mean_median_rel_err,mean_change\n".to_string();
        for c in self.ablation.iter().flat_map(|a| &a.components) {
            let head = c.head.map_or(String::new(), |h| h.to_string());
            let _ = writeln!(
                out,
                "{},{},{head},{},{},{},{}",
                c.activation,
                c.layer,
                csv(c.zero_median_rel_err),
                csv(c.zero_change),
                csv(c.mean_median_rel_err),
                csv(c.mean_change)
            );
        }
        out
    }

    /// Writes `patch.json`, `effects.csv` and `ablation.csv` into `dir`; returns the files.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let files = [dir.join("patch.json"), dir.join("effects.csv"), dir.join("ablation.csv")];
        write_json(&files[0], self)?;
        write_text(&files[1], &self.effects_csv())?;
        write_text(&files[2], &self.ablation_csv())?;
        Ok(files.to_vec())
    }

    /// The readable summary: the pairs, the `top` largest effects, the ablations.
    pub fn text(&self, top: usize) -> String {
        let mut out = String::new();
        let p = &self.pairs;
        let system = |s: &Option<System>| {
            s.map_or(String::new(), |s| format!("ω0 = {}, γ = {}, Δt = {}", s.omega0, s.gamma, s.dt))
        };
        let _ = match p.source {
            PairSource::Drawn => writeln!(
                out,
                "{}: {} pairs drawn from the training ranges (seed {}), {} with different predictions",
                self.model, p.n_pairs, p.seed, p.n_used
            ),
            PairSource::Fixed => {
                writeln!(out, "{}: {} pair(s), a: {}; b: {}", self.model, p.n_pairs, system(&p.a), system(&p.b))
            }
        };
        let mut all: Vec<(String, usize, &Effect)> = self
            .effects
            .iter()
            .flat_map(|e| e.positions.iter().map(move |&t| (label(e), t, e)))
            .filter(|(_, t, e)| e.prediction_shift[*t].is_finite())
            .collect();
        all.sort_by(|(_, s, a), (_, t, b)| b.prediction_shift[*t].abs().total_cmp(&a.prediction_shift[*s].abs()));
        let _ = writeln!(
            out,
            "largest effects on a's last prediction (shift: 0 none, 1 moved fully to b's; ω0 shift: median over the \
             pairs n, 0 a's dynamics, 1 b's):\n  {:<32} {:>8} {:>12} {:>12} {:>10} {:>5}",
            "activation", "position", "shift", "‖Δ‖/‖ŝb−ŝa‖", "ω0 shift", "n"
        );
        for (name, t, e) in all.iter().take(top) {
            let w = e.omega0_shift[*t];
            let w = if w.is_finite() { format!("{w:.3}") } else { "-".into() };
            let (s, n) = (e.prediction_shift[*t], e.delta_norm[*t]);
            let _ = writeln!(out, "  {name:<32} {t:>8} {s:>12.4} {n:>12.4} {w:>10} {:>5}", e.omega0_pairs[*t]);
        }
        if let Some(a) = &self.ablation {
            let _ = writeln!(
                out,
                "ablation on {} validation sequences (clean median relative error {:.3e}):\n  {:<32} {:>12} {:>12}",
                a.n_sequences, a.median_rel_err, "component", "zero Δerr", "mean Δerr"
            );
            let mut rows: Vec<_> = a.components.iter().collect();
            rows.sort_by(|x, y| y.zero_change.abs().total_cmp(&x.zero_change.abs()));
            for c in rows {
                let name = c.head.map_or(c.activation.clone(), |h| format!("{}[{h}]", c.activation));
                let _ = writeln!(out, "  {name:<32} {:>+12.3e} {:>+12.3e}", c.zero_change, c.mean_change);
            }
        }
        out
    }
}

/// [`patch_checkpoint`] on the file at `path`, with the energies of the
/// pairs and the ablations on `[0, e_max]`: as given, else those the
/// checkpoint was validated on ([`checkpoint_e_max`]), else
/// `opts.pairs.e_max`. A model trained on E ≤ 1 patched at E ≤ 4 would be
/// read outside what it learned.
///
/// # Errors
/// [`crate::util::error::Error::Checkpoint`] for an unreadable file; as [`patch_checkpoint`].
pub fn patch_file(path: &Path, opts: &PatchOptions, e_max: Option<f64>) -> Result<PatchReport> {
    let ckpt = crate::model::checkpoint::load(path)?;
    let mut opts = opts.clone();
    opts.pairs.e_max = checkpoint_e_max(&ckpt, e_max, opts.pairs.e_max);
    patch_checkpoint(&ckpt, &path.display().to_string(), &opts)
}
