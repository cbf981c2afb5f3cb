//! Evaluation: mean squared error on a data set and autoregressive rollouts
//! with the metrics of docs/physics.md.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, sample_state};
use crate::model::{Activations, D_IN, Model};
use crate::physics::Oscillator;
use crate::util::mat2::{Vec2, apply};
use crate::util::real::Real;
use crate::util::rng::Rng;

/// Statistics over trajectories at one rollout step.
#[derive(Clone, Debug, Serialize)]
pub struct StepStats {
    /// Predicted steps so far (0 = the last given state).
    pub step: usize,
    /// Median over trajectories of `‖ŝ − s‖/‖s‖`.
    pub median_rel_err: f64,
    /// 5 % quantile of the relative error.
    pub q05_rel_err: f64,
    /// 95 % quantile of the relative error.
    pub q95_rel_err: f64,
    /// Largest relative error.
    pub max_rel_err: f64,
    /// Median of the energy drift `(Ê − E)/E_0`.
    pub median_energy_drift: f64,
    /// Largest `|Ê − E|/E_0`.
    pub max_abs_energy_drift: f64,
}

/// The headline rollout numbers (docs/outputs.md `rollout`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutSummary {
    /// Autoregressive steps.
    pub steps: usize,
    /// Median relative error at the last step.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub median_rel_err_final: f64,
    /// Largest relative error at the last step.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub max_rel_err_final: f64,
    /// Largest relative error over all steps and trajectories.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub max_rel_err: f64,
}

/// Rolled-out trajectories and their exact counterparts.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// `[R][steps + 1]` model states, starting with the last given state.
    pub model: Vec<Vec<Vec2>>,
    /// `[R][steps + 1]` exact states at the same times.
    pub exact: Vec<Vec<Vec2>>,
    /// Per-step statistics, `steps + 1` rows.
    pub stats: Vec<StepStats>,
}

/// Initial states for `n` rollouts: energies uniform on `[0, e_max]`, from `rng`.
pub fn rollout_starts(osc: &Oscillator, e_max: f64, n: usize, rng: &mut Rng) -> Vec<Vec2> {
    (0..n).map(|_| sample_state(osc, e_max, rng)).collect()
}

/// Rolls `model` out for `steps` steps. The model first gets the T exact
/// states `exp(A kΔt) s₀`, `k = 0 … T−1`, for each start `s₀` (step 0 is the
/// last of them), then is fed its own predictions through a sliding window of
/// the last T. The exact reference at step n is `exp(A (T−1+n)Δt) s₀`,
/// computed afresh at every step so that it accumulates no rounding.
pub fn rollout<F: Real>(model: &Model<F>, osc: &Oscillator, dt: f64, starts: &[Vec2], steps: usize) -> Rollout {
    let t = model.cfg.n_ctx;
    let mut acts = Activations::new(&model.cfg, starts.len());
    let exact_at = |s0: &Vec2, k: usize| if k == 0 { *s0 } else { apply(&osc.propagator(k as f64 * dt), *s0) };
    let mut window: Vec<F> = Vec::with_capacity(starts.len() * t * D_IN);
    for s0 in starts {
        for k in 0..t {
            let s = exact_at(s0, k);
            window.extend([F::of(s[0]), F::of(s[1])]);
        }
    }
    let exact: Vec<Vec<Vec2>> =
        starts.iter().map(|s0| (0..=steps).map(|n| exact_at(s0, t - 1 + n)).collect()).collect();
    let given = |w: &[F]| [w[(t - 1) * D_IN].f64(), w[(t - 1) * D_IN + 1].f64()];
    let mut states: Vec<Vec<Vec2>> = window.chunks_exact(t * D_IN).map(|w| vec![given(w)]).collect();
    for _ in 0..steps {
        model.forward(&window, &mut acts);
        for (i, seq) in window.chunks_exact_mut(t * D_IN).enumerate() {
            let p = &acts.pred[(i * t + t - 1) * D_IN..][..D_IN];
            seq.copy_within(D_IN.., 0);
            seq[(t - 1) * D_IN..].copy_from_slice(p);
            states[i].push([p[0].f64(), p[1].f64()]);
        }
    }
    let stats = (0..=steps).map(|n| step_stats(osc, &states, &exact, n)).collect();
    Rollout { model: states, exact, stats }
}

/// Statistics at step `n` over all trajectories.
fn step_stats(osc: &Oscillator, model: &[Vec<Vec2>], exact: &[Vec<Vec2>], n: usize) -> StepStats {
    let mut rel: Vec<f64> = vec![];
    let mut drift: Vec<f64> = vec![];
    for (m, e) in model.iter().zip(exact) {
        let (s_hat, s) = (m[n], e[n]);
        let err = ((s_hat[0] - s[0]).powi(2) + (s_hat[1] - s[1]).powi(2)).sqrt();
        rel.push(err / (s[0] * s[0] + s[1] * s[1]).sqrt());
        drift.push((osc.energy(s_hat) - osc.energy(s)) / osc.energy(e[0]));
    }
    rel.sort_by(f64::total_cmp);
    drift.sort_by(f64::total_cmp);
    StepStats {
        step: n,
        median_rel_err: quantile(&rel, 0.5),
        q05_rel_err: quantile(&rel, 0.05),
        q95_rel_err: quantile(&rel, 0.95),
        max_rel_err: rel[rel.len() - 1],
        median_energy_drift: quantile(&drift, 0.5),
        max_abs_energy_drift: drift.iter().fold(0.0, |a: f64, d| a.max(d.abs())),
    }
}

/// Linear-interpolated quantile of sorted, non-empty `xs`.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
}

impl Rollout {
    /// The docs/outputs.md headline numbers.
    pub fn summary(&self) -> RolloutSummary {
        let last = self.stats.last().expect("a rollout has at least step 0");
        RolloutSummary {
            steps: last.step,
            median_rel_err_final: last.median_rel_err,
            max_rel_err_final: last.max_rel_err,
            max_rel_err: self.stats.iter().map(|s| s.max_rel_err).fold(0.0, f64::max),
        }
    }

    /// Per-step statistics as CSV (`rollout.csv`).
    pub fn stats_csv(&self) -> String {
        let mut out = String::from(
            "step,median_rel_err,q05_rel_err,q95_rel_err,max_rel_err,median_energy_drift,max_abs_energy_drift\n",
        );
        for s in &self.stats {
            writeln!(
                out,
                "{},{:e},{:e},{:e},{:e},{:e},{:e}",
                s.step,
                s.median_rel_err,
                s.q05_rel_err,
                s.q95_rel_err,
                s.max_rel_err,
                s.median_energy_drift,
                s.max_abs_energy_drift
            )
            .expect("write to String");
        }
        out
    }

    /// The first `n` trajectories, model and exact, as CSV (`trajectories.csv`).
    pub fn trajectories_csv(&self, n: usize, dt: f64) -> String {
        let mut out = String::from("trajectory,step,t,x,p,x_exact,p_exact\n");
        for (i, (m, e)) in self.model.iter().zip(&self.exact).take(n).enumerate() {
            for (step, (s_hat, s)) in m.iter().zip(e).enumerate() {
                writeln!(out, "{i},{step},{},{:e},{:e},{:e},{:e}", step as f64 * dt, s_hat[0], s_hat[1], s[0], s[1])
                    .expect("write to String");
            }
        }
        out
    }
}

/// Sequences per forward pass in [`error_vs_energy_csv`].
const CHUNK: usize = 4096;

/// `error_vs_energy.csv`: for every validation sequence, the energy of the
/// last input state, and the squared and relative error `‖ŝ − s‖/‖s‖` of the
/// model's prediction of the state after it.
pub fn error_vs_energy_csv<F: Real>(model: &Model<F>, valid: &Dataset<F>, osc: &Oscillator) -> String {
    let t = model.cfg.n_ctx;
    let w = t * D_IN;
    let mut acts = Activations::new(&model.cfg, CHUNK.min(valid.len()).max(1));
    let mut out = String::from("energy,sq_err,rel_err\n");
    for (inputs, targets) in valid.inputs.chunks(CHUNK * w).zip(valid.targets.chunks(CHUNK * w)) {
        model.forward(inputs, &mut acts);
        for ((seq, target), pred) in inputs.chunks_exact(w).zip(targets.chunks_exact(w)).zip(acts.pred.chunks_exact(w))
        {
            let last = (t - 1) * D_IN;
            let s = [seq[last].f64(), seq[last + 1].f64()];
            let y = [target[last].f64(), target[last + 1].f64()];
            let sq = (pred[last].f64() - y[0]).powi(2) + (pred[last + 1].f64() - y[1]).powi(2);
            let rel = sq.sqrt() / y[0].hypot(y[1]);
            writeln!(out, "{:e},{sq:e},{rel:e}", osc.energy(s)).expect("write to String");
        }
    }
    out
}
