//! Linear probes: ridge regression from a named activation to a physical
//! target, scored by R² on held-out states (issue 3, item 8).
//!
//! A probe reads an activation at the LAST position (the token whose next
//! state is predicted): for `[B, T, …]` activations the slice `[b, T−1, …]`
//! flattened; for `scores` / `pattern` `[B, H, T, T]` the last query's row of
//! every head, `[H, T]`. Targets are functions of that last input state
//! `s = (x, p)`: `x`, `p`, the energy `½(p² + ω0² x²)`, and the intermediates
//! of each candidate rule of docs/physics.md (column convention, `h = Δt`): the
//! powers `(Ah)^k s`, every rule's output `M_rule s`, and the kick / half-kick
//! momenta of symplectic Euler and leapfrog and the explicit half step
//! `(I + Ah/2) s` of Crank–Nicolson. Each component is its own target
//! (`name.x`, `name.p`).
//!
//! Note: in a model whose activations are affine in `s` (any context-1
//! model), every linear target decodes from any activation of rank 2, so
//! probes can only separate rules through nonlinear features.
//!
//! ```
//! use physlens::interpret::probe::held_out_r2;
//! // y = 3 x0 − x1 + 2: perfectly linear.
//! let x: Vec<f64> = (0..200).flat_map(|i| [(i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()]).collect();
//! let y: Vec<f64> = x.chunks(2).map(|r| 3.0 * r[0] - r[1] + 2.0).collect();
//! assert!(held_out_r2(&x, 2, &y, 1e-8) > 1.0 - 1e-9);
//! ```

use std::fmt::Write as _;

use nalgebra::{DMatrix, DVector};
use serde::Serialize;

use crate::model::{Activations, D_IN, Model, ModelConfig};
use crate::physics::Oscillator;
use crate::physics::rules::all_rules;
use crate::util::error::{Error, Result};
use crate::util::mat2::{Mat2, Vec2, apply, identity, mul, scale};
use crate::util::real::Real;

/// Default ridge penalty λ (per sample, on standardised features).
pub const DEFAULT_LAMBDA: f64 = 1e-8;

/// Fraction of the states used to fit; the rest score the probe.
pub const TRAIN_FRACTION: f64 = 0.75;

/// A fitted ridge regression `y ≈ w · (x − mean)/scale + intercept`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ridge {
    /// Feature means on the fitting rows.
    pub mean: Vec<f64>,
    /// Feature standard deviations; 0 marks a constant feature (ignored).
    pub scale: Vec<f64>,
    /// Weights on the standardised features.
    pub weights: Vec<f64>,
    /// The target mean on the fitting rows.
    pub intercept: f64,
}

impl Ridge {
    /// Fits `y` on the rows of `x` `[n, p]` (row-major), minimising
    /// `Σ (y − ŷ)² + λ n ‖w‖²` over standardised features. Constant features
    /// are dropped (weight 0).
    ///
    /// # Panics
    /// If `x.len() != y.len() · p` or `y` is empty.
    pub fn fit(x: &[f64], p: usize, y: &[f64], lambda: f64) -> Ridge {
        let n = y.len();
        assert!(n > 0 && x.len() == n * p, "x must be [n, p] with n = y.len() > 0");
        let mean: Vec<f64> = (0..p).map(|j| (0..n).map(|i| x[i * p + j]).sum::<f64>() / n as f64).collect();
        let scale: Vec<f64> = (0..p)
            .map(|j| {
                let var = (0..n).map(|i| (x[i * p + j] - mean[j]).powi(2)).sum::<f64>() / n as f64;
                let sd = var.sqrt();
                if sd > 1e-13 * mean[j].abs() && sd > 0.0 { sd } else { 0.0 }
            })
            .collect();
        let keep: Vec<usize> = (0..p).filter(|&j| scale[j] > 0.0).collect();
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let mut weights = vec![0.0; p];
        if !keep.is_empty() {
            let z = DMatrix::from_fn(n, keep.len(), |i, c| (x[i * p + keep[c]] - mean[keep[c]]) / scale[keep[c]]);
            let yc = DVector::from_fn(n, |i, _| y[i] - y_mean);
            let mut gram = z.transpose() * &z;
            for c in 0..keep.len() {
                gram[(c, c)] += lambda * n as f64;
            }
            let rhs = z.transpose() * yc;
            let w = match gram.clone().cholesky() {
                Some(ch) => ch.solve(&rhs),
                None => gram.lu().solve(&rhs).unwrap_or_else(|| DVector::zeros(keep.len())),
            };
            for (c, &j) in keep.iter().enumerate() {
                weights[j] = w[c];
            }
        }
        Ridge { mean, scale, weights, intercept: y_mean }
    }

    /// The prediction for one feature row.
    pub fn predict(&self, row: &[f64]) -> f64 {
        let mut y = self.intercept;
        for (j, &v) in row.iter().enumerate() {
            if self.scale[j] > 0.0 {
                y += self.weights[j] * (v - self.mean[j]) / self.scale[j];
            }
        }
        y
    }
}

/// `1 − Σ(y − ŷ)² / Σ(y − ȳ)²`; NaN when `y` is constant.
pub fn r_squared(pred: &[f64], y: &[f64]) -> f64 {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = pred.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    if ss_tot > 0.0 { 1.0 - ss_res / ss_tot } else { f64::NAN }
}

/// Fits a [`Ridge`] probe on the first [`TRAIN_FRACTION`] of the rows of `x`
/// `[n, p]` and returns its R² on the rest (NaN with fewer than 4 rows).
pub fn held_out_r2(x: &[f64], p: usize, y: &[f64], lambda: f64) -> f64 {
    let n = y.len();
    if n < 4 {
        return f64::NAN;
    }
    let n_fit = ((n as f64 * TRAIN_FRACTION) as usize).clamp(1, n - 1);
    let ridge = Ridge::fit(&x[..n_fit * p], p, &y[..n_fit], lambda);
    let pred: Vec<f64> = (n_fit..n).map(|i| ridge.predict(&x[i * p..(i + 1) * p])).collect();
    r_squared(&pred, &y[n_fit..])
}

/// A named scalar target, one value per state.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    /// e.g. `energy`, `leapfrog.p_half`, `(Ah)^2 s.x`.
    pub name: String,
    /// One value per state.
    pub values: Vec<f64>,
}

/// `x`, `p`, `energy` and every rule intermediate (module docs) for the
/// states `s` of `osc` at step `dt`.
pub fn rule_targets(osc: &Oscillator, dt: f64, states: &[Vec2]) -> Vec<Target> {
    let mut out = vec![
        Target { name: "x".into(), values: states.iter().map(|s| s[0]).collect() },
        Target { name: "p".into(), values: states.iter().map(|s| s[1]).collect() },
        Target { name: "energy".into(), values: states.iter().map(|s| osc.energy(*s)).collect() },
    ];
    let linear = |name: String, m: &Mat2| {
        let images: Vec<Vec2> = states.iter().map(|s| apply(m, *s)).collect();
        [
            Target { name: format!("{name}.x"), values: images.iter().map(|v| v[0]).collect() },
            Target { name: format!("{name}.p"), values: images.iter().map(|v| v[1]).collect() },
        ]
    };
    let ah = scale(&osc.generator(), dt);
    let mut power = identity();
    for k in 1..=4 {
        power = mul(&power, &ah);
        out.extend(linear(format!("(Ah)^{k} s"), &power));
    }
    for (name, m) in all_rules(osc, dt) {
        out.extend(linear(name.to_string(), &m));
    }
    let w2 = osc.omega0 * osc.omega0;
    let kick = |tau: f64| -> Mat2 { [[1.0, 0.0], [-tau * w2, 1.0 - 2.0 * osc.gamma * tau]] };
    let component = |name: &str, m: Mat2, c: usize| Target {
        name: name.into(),
        values: states.iter().map(|s| apply(&m, *s)[c]).collect(),
    };
    out.push(component("symplectic_euler.p_kick", kick(dt), 1));
    out.push(component("leapfrog.p_half", kick(0.5 * dt), 1));
    out.push(component("leapfrog.x_drift", mul(&[[1.0, dt], [0.0, 1.0]], &kick(0.5 * dt)), 0));
    let half = crate::util::mat2::add(&identity(), &scale(&ah, 0.5));
    out.extend(linear("crank_nicolson.explicit_half".into(), &half));
    out
}

/// One row of the probe table.
#[derive(Clone, Debug, Serialize)]
pub struct ProbeResult {
    /// Activation name (at the last position).
    pub activation: String,
    /// Target name.
    pub target: String,
    /// Held-out R².
    pub r2: f64,
    /// Features the activation has at the last position.
    pub n_features: usize,
    /// States used to fit.
    pub n_fit: usize,
    /// States used to score.
    pub n_test: usize,
}

/// The activations probed when none are named: `embed` and each layer's
/// `attn.z`, `mlp.post` (with MLP blocks) and `resid_post`.
pub fn default_probe_names(cfg: &ModelConfig) -> Vec<String> {
    let mut names = vec!["embed".to_string()];
    for l in 0..cfg.n_layers {
        names.push(format!("blocks.{l}.attn.z"));
        if cfg.has_mlp() {
            names.push(format!("blocks.{l}.mlp.post"));
        }
        names.push(format!("blocks.{l}.resid_post"));
    }
    names
}

/// The features of activation `name` at the last position of every
/// sequence of `acts`, row-major `[B, P]`, and `P`; `None` for an unknown name.
pub fn last_position_features<F: Real>(
    acts: &Activations<F>,
    cfg: &ModelConfig,
    name: &str,
) -> Option<(Vec<f64>, usize)> {
    let (data, shape) = acts.get(cfg, name)?;
    let (b, t) = (acts.batch, cfg.n_ctx);
    let mut out = Vec::new();
    if name.ends_with(".scores") || name.ends_with(".pattern") {
        let h = shape[1];
        for bb in 0..b {
            for hh in 0..h {
                let row = ((bb * h + hh) * t + t - 1) * t;
                out.extend(data[row..row + t].iter().map(|v| v.f64()));
            }
        }
        Some((out, h * t))
    } else {
        let per_token: usize = shape[2..].iter().product();
        for bb in 0..b {
            let at = (bb * t + t - 1) * per_token;
            out.extend(data[at..at + per_token].iter().map(|v| v.f64()));
        }
        Some((out, per_token))
    }
}

/// The held-out R² of a ridge probe from each activation in `names` (at the
/// last position) to each target of [`rule_targets`] of the last input states.
///
/// # Shapes
/// `inputs` `[B, T, 2]`, row-major `(x, p)` pairs.
///
/// # Errors
/// [`Error::Option`] (`probe_names`) naming an activation that is not one
/// of [`Activations::names`].
pub fn probe_table<F: Real>(
    model: &Model<F>,
    inputs: &[F],
    osc: &Oscillator,
    dt: f64,
    names: &[String],
    lambda: f64,
) -> Result<Vec<ProbeResult>> {
    let cfg = &model.cfg;
    let valid = Activations::<F>::names(cfg);
    if let Some(bad) = names.iter().find(|n| !valid.contains(n)) {
        return Err(Error::Option {
            name: "probe_names".into(),
            message: format!("`{bad}` is not an activation of this model; available: {}", valid.join(", ")),
        });
    }
    let w = cfg.n_ctx * D_IN;
    let batch = inputs.len() / w;
    let last: Vec<Vec2> = (0..batch).map(|b| [inputs[(b * w) + w - 2].f64(), inputs[(b * w) + w - 1].f64()]).collect();
    let targets = rule_targets(osc, dt, &last);
    let mut features: Vec<(Vec<f64>, usize)> = vec![(Vec::new(), 0); names.len()];
    let chunk = Activations::<F>::chunk(cfg, batch);
    let mut acts = Activations::new(cfg, chunk);
    for chunk in inputs.chunks(chunk * w) {
        model.forward(chunk, &mut acts);
        for (slot, name) in features.iter_mut().zip(names) {
            let (rows, p) = last_position_features(&acts, cfg, name).expect("name checked above");
            slot.0.extend(rows);
            slot.1 = p;
        }
    }
    let n_fit = if batch < 4 { 0 } else { ((batch as f64 * TRAIN_FRACTION) as usize).clamp(1, batch - 1) };
    let mut out = Vec::new();
    for ((x, p), name) in features.iter().zip(names) {
        for target in &targets {
            out.push(ProbeResult {
                activation: name.clone(),
                target: target.name.clone(),
                r2: held_out_r2(x, *p, &target.values, lambda),
                n_features: *p,
                n_fit,
                n_test: batch - n_fit,
            });
        }
    }
    Ok(out)
}

/// The probe table as CSV: `activation,target,r2,n_features,n_fit,n_test`.
pub fn probes_csv(results: &[ProbeResult]) -> String {
    let mut s = String::from("activation,target,r2,n_features,n_fit,n_test\n");
    for r in results {
        let _ = writeln!(s, "{},{},{},{},{},{}", r.activation, r.target, r.r2, r.n_features, r.n_fit, r.n_test);
    }
    s
}
