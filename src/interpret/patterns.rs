//! Attention patterns (issue 3, item 6): for one exact trajectory of `T`
//! states, every layer's and head's pattern over positions, with its
//! entropy and mean attended offset; and the same two numbers for the last
//! query averaged over a set of states.
//!
//! For query `i` with weights `P[i, j]` over keys `j`: entropy
//! `−Σ_j P ln P` (nats; 0 = one-hot, `ln(i+1)` = uniform over a causal row)
//! and mean attended offset `Σ_j P[i, j] (i − j)` (0 = the token itself,
//! 1 = the previous one; negative only without the causal mask).

use std::fmt::Write as _;

use serde::Serialize;

use crate::model::{Activations, D_IN, Model};
use crate::physics::Oscillator;
use crate::util::mat2::Vec2;
use crate::util::real::Real;

/// One query row of one head's pattern on the trajectory.
#[derive(Clone, Debug, Serialize)]
pub struct PatternRow {
    /// Layer.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// Query position.
    pub query: usize,
    /// Weights over key positions `0 … T−1` (masked keys 0).
    pub weights: Vec<f64>,
    /// Entropy of `weights` in nats.
    pub entropy: f64,
    /// `Σ_j weights[j] (query − j)`.
    pub mean_offset: f64,
}

/// Per layer and head: the last query's pattern and summary numbers.
#[derive(Clone, Debug, Serialize)]
pub struct HeadPatternSummary {
    /// Layer.
    pub layer: usize,
    /// Head.
    pub head: usize,
    /// The last query's weights on the trajectory.
    pub last_query: Vec<f64>,
    /// Entropy of the last query on the trajectory.
    pub entropy_last: f64,
    /// Mean attended offset of the last query on the trajectory.
    pub mean_offset_last: f64,
    /// Entropy averaged over the trajectory's queries.
    pub entropy_mean: f64,
    /// Mean attended offset averaged over the trajectory's queries.
    pub mean_offset_mean: f64,
    /// Entropy of the last query averaged over the validation states (if given).
    pub valid_entropy_last: Option<f64>,
    /// Mean attended offset of the last query averaged over the validation states (if given).
    pub valid_mean_offset_last: Option<f64>,
}

/// The attention of a model along one exact trajectory.
#[derive(Clone, Debug, Serialize)]
pub struct TrajectoryPatterns {
    /// The `T` states fed to the model, column `(x, p)` each.
    pub states: Vec<Vec2>,
    /// Every query row of every layer and head.
    pub rows: Vec<PatternRow>,
    /// One summary per layer and head.
    pub heads: Vec<HeadPatternSummary>,
}

/// Entropy (nats) and mean attended offset of the weights of query `i`.
pub fn row_stats(weights: &[f64], query: usize) -> (f64, f64) {
    let entropy = 0.0 - weights.iter().filter(|w| **w > 0.0).map(|w| w * w.ln()).sum::<f64>();
    let offset = weights.iter().enumerate().map(|(j, w)| w * (query as f64 - j as f64)).sum();
    (entropy, offset)
}

/// Patterns of `model` on the exact trajectory of `osc` from `s0` with step
/// `dt` (`T = n_ctx` states), plus last-query averages over `valid` `[B, T, 2]`
/// when given.
pub fn trajectory_patterns<F: Real>(
    model: &Model<F>,
    osc: &Oscillator,
    dt: f64,
    s0: Vec2,
    valid: Option<&[F]>,
) -> TrajectoryPatterns {
    let cfg = &model.cfg;
    let t = cfg.n_ctx;
    let states = osc.trajectory(s0, dt, t - 1);
    let input: Vec<F> = states.iter().flat_map(|s| [F::of(s[0]), F::of(s[1])]).collect();
    let mut acts = Activations::new(cfg, 1);
    model.forward(&input, &mut acts);
    let mut rows = Vec::new();
    for (l, block) in acts.blocks.iter().enumerate() {
        for h in 0..cfg.n_heads {
            for i in 0..t {
                let weights: Vec<f64> = block.pattern[(h * t + i) * t..][..t].iter().map(|w| w.f64()).collect();
                let (entropy, mean_offset) = row_stats(&weights, i);
                rows.push(PatternRow { layer: l, head: h, query: i, weights, entropy, mean_offset });
            }
        }
    }
    let valid_stats = valid.map(|v| validation_last_query_stats(model, v));
    let heads = (0..cfg.n_layers)
        .flat_map(|l| (0..cfg.n_heads).map(move |h| (l, h)))
        .map(|(l, h)| {
            let mine: Vec<&PatternRow> = rows.iter().filter(|r| r.layer == l && r.head == h).collect();
            let last = mine[t - 1];
            let (vs_e, vs_o) = match &valid_stats {
                Some(s) => (Some(s[l * cfg.n_heads + h].0), Some(s[l * cfg.n_heads + h].1)),
                None => (None, None),
            };
            HeadPatternSummary {
                layer: l,
                head: h,
                last_query: last.weights.clone(),
                entropy_last: last.entropy,
                mean_offset_last: last.mean_offset,
                entropy_mean: mine.iter().map(|r| r.entropy).sum::<f64>() / t as f64,
                mean_offset_mean: mine.iter().map(|r| r.mean_offset).sum::<f64>() / t as f64,
                valid_entropy_last: vs_e,
                valid_mean_offset_last: vs_o,
            }
        })
        .collect();
    TrajectoryPatterns { states, rows, heads }
}

/// `(entropy, mean offset)` of the last query, averaged over the sequences
/// of `inputs` `[B, T, 2]`, for every layer and head (`[L·H]`, layer-major).
pub fn validation_last_query_stats<F: Real>(model: &Model<F>, inputs: &[F]) -> Vec<(f64, f64)> {
    let cfg = &model.cfg;
    let (t, hn) = (cfg.n_ctx, cfg.n_heads);
    let w = t * D_IN;
    let batch = inputs.len() / w;
    let mut sums = vec![(0.0, 0.0); cfg.n_layers * hn];
    let chunk = Activations::<F>::chunk(cfg, batch);
    let mut acts = Activations::new(cfg, chunk);
    for chunk in inputs.chunks(chunk * w) {
        model.forward(chunk, &mut acts);
        for (l, block) in acts.blocks.iter().enumerate() {
            for b in 0..acts.batch {
                for h in 0..hn {
                    let row = ((b * hn + h) * t + t - 1) * t;
                    let weights: Vec<f64> = block.pattern[row..row + t].iter().map(|v| v.f64()).collect();
                    let (e, o) = row_stats(&weights, t - 1);
                    sums[l * hn + h].0 += e;
                    sums[l * hn + h].1 += o;
                }
            }
        }
    }
    let n = batch.max(1) as f64;
    sums.into_iter().map(|(e, o)| (e / n, o / n)).collect()
}

/// The trajectory's patterns as CSV, one row per (layer, head, query, key):
/// `layer,head,query,key,offset,weight,row_entropy,row_mean_offset,x_key,p_key`.
pub fn patterns_csv(p: &TrajectoryPatterns) -> String {
    let mut s = String::from("layer,head,query,key,offset,weight,row_entropy,row_mean_offset,x_key,p_key\n");
    for r in &p.rows {
        for (j, w) in r.weights.iter().enumerate() {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{}",
                r.layer,
                r.head,
                r.query,
                j,
                r.query as i64 - j as i64,
                w,
                r.entropy,
                r.mean_offset,
                p.states[j][0],
                p.states[j][1]
            );
        }
    }
    s
}
