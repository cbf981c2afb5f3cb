//! What can be patched or ablated — a [`Site`]: the residual stream entering
//! a layer (or leaving the last), one head's write to the residual, one
//! MLP's write — and the one operation everything here is built on:
//! overwrite a site in a copy of a cached forward pass and recompute only
//! what follows ([`rerun`]).
//!
//! # Shapes
//! Every site holds one `D`-vector per token (`[B, T, D]`, or
//! `[B, T, H, D]` for `attn.result`, of which one head is the site).

use std::ops::Range;

use crate::model::resume::Start;
use crate::model::{Activations, D_IN, Model, ModelConfig};
use crate::util::error::{Error, Result};

/// One activation a patch or an ablation replaces, at one or every position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// `blocks.{l}.resid_pre`: the residual stream entering layer `l`.
    ResidPre(usize),
    /// `blocks.{l}.resid_post`: the residual stream leaving layer `l`.
    ResidPost(usize),
    /// `blocks.{l}.attn.result`, head `h`: that head's write to the residual.
    Head(usize, usize),
    /// `blocks.{l}.mlp_out`: the MLP block's write to the residual.
    Mlp(usize),
}

/// The kinds of activation [`sites`] accepts as a filter.
pub const KINDS: [&str; 4] = ["resid_pre", "resid_post", "attn.result", "mlp_out"];

impl Site {
    /// The cache name (see [`Activations::names`]).
    pub fn activation(self) -> String {
        match self {
            Site::ResidPre(l) => format!("blocks.{l}.resid_pre"),
            Site::ResidPost(l) => format!("blocks.{l}.resid_post"),
            Site::Head(l, _) => format!("blocks.{l}.attn.result"),
            Site::Mlp(l) => format!("blocks.{l}.mlp_out"),
        }
    }

    /// The layer.
    pub fn layer(self) -> usize {
        match self {
            Site::ResidPre(l) | Site::ResidPost(l) | Site::Head(l, _) | Site::Mlp(l) => l,
        }
    }

    /// The head, for a head's output.
    pub fn head(self) -> Option<usize> {
        match self {
            Site::Head(_, h) => Some(h),
            _ => None,
        }
    }

    /// Where the forward pass resumes after this site is overwritten.
    pub fn start(self, cfg: &ModelConfig) -> Start {
        match self {
            Site::ResidPre(l) => Start::Layer(l),
            Site::ResidPost(l) if l + 1 < cfg.n_layers => Start::Layer(l + 1),
            Site::ResidPost(_) => Start::Unembed,
            Site::Head(l, _) => Start::HeadSum(l),
            Site::Mlp(l) => Start::MlpSum(l),
        }
    }

    /// The site's `D` values for sequence `b` at position `t` in `acts`.
    pub fn slot<'a>(self, cfg: &ModelConfig, acts: &'a Activations<f64>, b: usize, t: usize) -> &'a [f64] {
        let (buf, at) = self.place(cfg, b, t);
        let buf: &Vec<f64> = match buf {
            Buffer::Resid(l) => &acts.resid[l],
            Buffer::Result(l) => &acts.blocks[l].result,
            Buffer::MlpOut(l) => &acts.blocks[l].mlp_out,
        };
        &buf[at..][..cfg.d_model]
    }

    /// As [`Site::slot`], to overwrite.
    pub fn slot_mut<'a>(self, cfg: &ModelConfig, acts: &'a mut Activations<f64>, b: usize, t: usize) -> &'a mut [f64] {
        let (buf, at) = self.place(cfg, b, t);
        let buf: &mut Vec<f64> = match buf {
            Buffer::Resid(l) => &mut acts.resid[l],
            Buffer::Result(l) => &mut acts.blocks[l].result,
            Buffer::MlpOut(l) => &mut acts.blocks[l].mlp_out,
        };
        &mut buf[at..][..cfg.d_model]
    }

    /// The buffer holding the site and the offset of `(b, t)` in it.
    fn place(self, cfg: &ModelConfig, b: usize, t: usize) -> (Buffer, usize) {
        let (d, token) = (cfg.d_model, b * cfg.n_ctx + t);
        match self {
            Site::ResidPre(l) => (Buffer::Resid(l), token * d),
            Site::ResidPost(l) => (Buffer::Resid(l + 1), token * d),
            Site::Head(l, h) => (Buffer::Result(l), (token * cfg.n_heads + h) * d),
            Site::Mlp(l) => (Buffer::MlpOut(l), token * d),
        }
    }
}

/// The activation buffers a site lives in.
enum Buffer {
    Resid(usize),
    Result(usize),
    MlpOut(usize),
}

/// The sites of `cfg` in forward order — each layer's `resid_pre`, its heads
/// and its MLP, then the last layer's `resid_post` — keeping those `filter`
/// names: a kind of [`KINDS`] or a full cache name (`blocks.1.attn.result`);
/// an empty filter keeps all.
///
/// # Errors
/// [`Error::Option`] `activations` for a name the model does not have.
pub fn sites(cfg: &ModelConfig, filter: &[String]) -> Result<Vec<Site>> {
    let mut all = vec![];
    for l in 0..cfg.n_layers {
        all.push(Site::ResidPre(l));
        all.extend((0..cfg.n_heads).map(|h| Site::Head(l, h)));
        if cfg.has_mlp() {
            all.push(Site::Mlp(l));
        }
    }
    all.push(Site::ResidPost(cfg.n_layers - 1));
    let names: Vec<String> = all.iter().map(|s| s.activation()).collect();
    if let Some(bad) = filter.iter().find(|f| !KINDS.contains(&f.as_str()) && !names.contains(f)) {
        let mut known: Vec<&str> = KINDS.to_vec();
        known.extend(names.iter().map(String::as_str));
        return Err(Error::Option {
            name: "activations".into(),
            message: format!("`{bad}` is not an activation this model can patch; accepted: {}", known.join(", ")),
        });
    }
    let keep = |s: &Site| {
        let name = s.activation();
        filter.is_empty() || filter.iter().any(|f| *f == name || name.ends_with(&format!(".{f}")))
    };
    Ok(all.into_iter().filter(keep).collect())
}

/// Makes `work` the forward pass of `clean` with `site` overwritten by `edit`
/// (called with the sequence, the position and the slot) at each position
/// of `positions` of every sequence, recomputing only what follows the site:
/// the resumed pass reads the site's layer inputs, copied from `clean`.
pub fn rerun(
    model: &Model<f64>,
    clean: &Activations<f64>,
    work: &mut Activations<f64>,
    site: Site,
    positions: Range<usize>,
    mut edit: impl FnMut(usize, usize, &mut [f64]),
) {
    let cfg = &model.cfg;
    let start = site.start(cfg);
    work.batch = clean.batch;
    let (n, d) = (clean.batch * cfg.n_ctx, cfg.d_model);
    let copy = |from: &[f64], into: &mut [f64], len: usize| into[..len].copy_from_slice(&from[..len]);
    match start {
        Start::Layer(l) => copy(&clean.resid[l], &mut work.resid[l], n * d),
        Start::HeadSum(l) => {
            copy(&clean.resid[l], &mut work.resid[l], n * d);
            copy(&clean.blocks[l].result, &mut work.blocks[l].result, n * cfg.n_heads * d);
        }
        Start::MlpSum(l) => {
            copy(&clean.blocks[l].mid, &mut work.blocks[l].mid, n * d);
            copy(&clean.blocks[l].mlp_out, &mut work.blocks[l].mlp_out, n * d);
        }
        Start::Unembed => copy(&clean.resid[cfg.n_layers], &mut work.resid[cfg.n_layers], n * d),
    }
    for b in 0..clean.batch {
        for t in positions.clone() {
            edit(b, t, site.slot_mut(cfg, work, b, t));
        }
    }
    model.resume(work, start);
}

/// The last position's prediction of each sequence in `acts`, `[B]` of `(x, p)`.
pub fn last_predictions(cfg: &ModelConfig, acts: &Activations<f64>) -> Vec<[f64; 2]> {
    let t = cfg.n_ctx;
    (0..acts.batch).map(|b| [acts.pred[((b + 1) * t - 1) * D_IN], acts.pred[((b + 1) * t - 1) * D_IN + 1]]).collect()
}
