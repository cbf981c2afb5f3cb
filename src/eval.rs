//! Evaluation: mean squared error on a data set and autoregressive rollouts
//! with the metrics of docs/physics.md.

pub mod in_context;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::data::{Dataset, sample_state};
use crate::model::{Activations, D_IN, Model};
use crate::physics::{Oscillator, System, SystemSpec};
use crate::util::mat2::{Vec2, apply};
use crate::util::real::{Real, max_abs};
use crate::util::rng::Rng;

/// Statistics over trajectories at one rollout step. A number that is not
/// finite (a state that underflowed to zero, or a rollout that diverged) is
/// NaN here; the files write it as `null` (JSON) or an empty field (CSV).
#[derive(Clone, Debug, Serialize)]
pub struct StepStats {
    /// Predicted steps so far (0 = the last given state).
    pub step: usize,
    /// Median over trajectories of `‖ŝₙ − sₙ‖/‖sₙ‖`.
    pub median_rel_err: f64,
    /// 5 % quantile of the relative error.
    pub q05_rel_err: f64,
    /// 95 % quantile of the relative error.
    pub q95_rel_err: f64,
    /// Largest relative error.
    pub max_rel_err: f64,
    /// Median over trajectories of `‖ŝₙ − sₙ‖/‖s₀‖` (s₀ the state at step 0):
    /// unlike the relative error, it stays meaningful after a damped state
    /// has decayed.
    pub median_err_vs_initial: f64,
    /// Largest `‖ŝₙ − sₙ‖/‖s₀‖`.
    pub max_err_vs_initial: f64,
    /// `‖ŝₙ‖` of the rollout started from the zero state: the part of the
    /// model's rollout its offset alone drives (the exact rollout stays at 0).
    /// It converges to the model's fixed point.
    pub zero_start_norm: f64,
    /// Median of the energy drift `(Ê − E)/E_0`.
    pub median_energy_drift: f64,
    /// Largest `|Ê − E|/E_0`.
    pub max_abs_energy_drift: f64,
}

/// The headline rollout numbers (docs/outputs.md `rollout`). NaN (`null` in
/// JSON) where a number is not finite; `diverged_at` then says why.
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
    /// Median `‖ŝₙ − sₙ‖/‖s₀‖` at the last step.
    #[serde(default = "crate::util::json::nan", deserialize_with = "crate::util::json::nan_if_null")]
    pub median_err_vs_initial_final: f64,
    /// Largest `‖ŝₙ − sₙ‖/‖s₀‖` at the last step.
    #[serde(default = "crate::util::json::nan", deserialize_with = "crate::util::json::nan_if_null")]
    pub max_err_vs_initial_final: f64,
    /// Largest `‖ŝₙ − sₙ‖/‖s₀‖` over all steps and trajectories.
    #[serde(default = "crate::util::json::nan", deserialize_with = "crate::util::json::nan_if_null")]
    pub max_err_vs_initial: f64,
    /// The first step from which the relative error is dominated by the
    /// model's fixed point (see [`Rollout::fixed_point_step`]); `None` if it never is
    /// within the rollout, or if the rollout diverged.
    #[serde(default)]
    pub fixed_point_dominated_from: Option<usize>,
    /// The first step at which some model state was not finite; `None` if
    /// the rollout stayed finite.
    #[serde(default)]
    pub diverged_at: Option<usize>,
}

/// Rolled-out trajectories and their exact counterparts.
#[derive(Clone, Debug)]
pub struct Rollout {
    /// `[R][steps + 1]` model states, starting with the last given state.
    pub model: Vec<Vec<Vec2>>,
    /// `[R][steps + 1]` reference states at the same times (exact, or the
    /// data generator's rule).
    pub exact: Vec<Vec<Vec2>>,
    /// `[steps + 1]` the model's rollout from the zero state.
    pub zero_start: Vec<Vec2>,
    /// Per-step statistics, `steps + 1` rows.
    pub stats: Vec<StepStats>,
    /// `[R]` each trajectory's system.
    pub systems: Vec<System>,
}

/// Where one rollout starts: its system (the same for all unless
/// parameters are drawn per sequence) and its first state `s₀`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Start {
    /// The trajectory's system.
    pub system: System,
    /// Its first state.
    pub state: Vec2,
}

impl Start {
    /// Starts of one `system` from each of `states`.
    pub fn all(system: System, states: &[Vec2]) -> Vec<Start> {
        states.iter().map(|&state| Start { system, state }).collect()
    }
}

/// Starts for `n` rollouts from `rng`: each draws its system from `spec`
/// (nothing when fixed), then an energy uniform on `[0, e_max]` and a phase.
pub fn rollout_starts(spec: &SystemSpec, e_max: f64, n: usize, rng: &mut Rng) -> Vec<Start> {
    (0..n)
        .map(|_| {
            let system = spec.draw(rng);
            Start { system, state: sample_state(&system.oscillator(), e_max, rng) }
        })
        .collect()
}

/// The reference trajectory `s_0 … s_{len−1}` of a start: for the exact
/// generator `s_k = exp(A kΔt) s₀`, computed afresh at every step so that it
/// accumulates no rounding; for a rule's data, that rule applied k times.
fn reference(start: &Start, len: usize) -> Vec<Vec2> {
    let (system, s0) = (&start.system, start.state);
    if system.generator.is_exact() {
        let osc = system.oscillator();
        (0..len).map(|k| if k == 0 { s0 } else { apply(&osc.propagator(k as f64 * system.dt), s0) }).collect()
    } else {
        let m = system.data_step();
        std::iter::successors(Some(s0), |s| Some(apply(&m, *s))).take(len).collect()
    }
}

/// Rolls `model` out for `steps` steps. The model first gets the T
/// reference states `s_k`, `k = 0 … T−1`, from each start (step 0 is the
/// last of them: a full context), then is fed its own predictions through a
/// sliding window of the last T. The reference is the data the model was
/// trained on ([`reference`]), each trajectory with its own system. One more
/// rollout, from the zero state, measures what the model's offset alone does.
pub fn rollout<F: Real>(model: &Model<F>, starts: &[Start], steps: usize) -> Rollout {
    let t = model.cfg.n_ctx;
    let n = starts.len() + 1;
    let chunk = Activations::<F>::chunk(&model.cfg, n);
    let mut acts = Activations::new(&model.cfg, chunk);
    let zero = Start { state: [0.0, 0.0], ..starts[0] };
    let references: Vec<Vec<Vec2>> = starts.iter().chain([&zero]).map(|s| reference(s, t + steps)).collect();
    let mut window: Vec<F> = Vec::with_capacity(n * t * D_IN);
    for r in &references {
        for s in &r[..t] {
            window.extend([F::of(s[0]), F::of(s[1])]);
        }
    }
    let exact: Vec<Vec<Vec2>> = references[..starts.len()].iter().map(|r| r[t - 1..].to_vec()).collect();
    let given = |w: &[F]| [w[(t - 1) * D_IN].f64(), w[(t - 1) * D_IN + 1].f64()];
    let mut states: Vec<Vec<Vec2>> = window
        .chunks_exact(t * D_IN)
        .map(|w| {
            let mut states = Vec::with_capacity(steps + 1);
            states.push(given(w));
            states
        })
        .collect();
    for _ in 0..steps {
        for (c, part) in window.chunks_mut(chunk * t * D_IN).enumerate() {
            model.forward(part, &mut acts);
            for (i, seq) in part.chunks_exact_mut(t * D_IN).enumerate() {
                let p = &acts.pred[(i * t + t - 1) * D_IN..][..D_IN];
                seq.copy_within(D_IN.., 0);
                seq[(t - 1) * D_IN..].copy_from_slice(p);
                states[c * chunk + i].push([p[0].f64(), p[1].f64()]);
            }
        }
    }
    let zero_start = states.pop().expect("the zero-state rollout is last");
    let oscillators: Vec<Oscillator> = starts.iter().map(|s| s.system.oscillator()).collect();
    let stats = (0..=steps).map(|n| step_stats(&oscillators, &states, &exact, &zero_start, n)).collect();
    Rollout { model: states, exact, zero_start, stats, systems: starts.iter().map(|s| s.system).collect() }
}

/// Statistics at step `n` over all trajectories.
fn step_stats(
    oscillators: &[Oscillator],
    model: &[Vec<Vec2>],
    exact: &[Vec<Vec2>],
    zero_start: &[Vec2],
    n: usize,
) -> StepStats {
    let mut rel: Vec<f64> = vec![];
    let mut vs_initial: Vec<f64> = vec![];
    let mut drift: Vec<f64> = vec![];
    for ((m, e), osc) in model.iter().zip(exact).zip(oscillators) {
        let (s_hat, s) = (m[n], e[n]);
        let err = norm([s_hat[0] - s[0], s_hat[1] - s[1]]);
        rel.push(err / norm(s));
        vs_initial.push(err / norm(e[0]));
        drift.push((osc.energy(s_hat) - osc.energy(s)) / osc.energy(e[0]));
    }
    // A state that is no longer finite has an unbounded error (NaN from inf − inf
    // counts as +inf): it sorts last whatever the NaN's sign bit, so a maximum
    // over it is never finite while a median over mostly finite states stays
    // finite. Sorting NaN with total_cmp put a negative NaN first, and gave a
    // finite maximum beside a NaN median.
    let [rel, vs_initial, drift] = [rel, vs_initial, drift].map(|mut xs| {
        for x in &mut xs {
            if x.is_nan() {
                *x = f64::INFINITY;
            }
        }
        xs.sort_by(f64::total_cmp);
        xs
    });
    StepStats {
        step: n,
        median_rel_err: finite(quantile(&rel, 0.5)),
        q05_rel_err: finite(quantile(&rel, 0.05)),
        q95_rel_err: finite(quantile(&rel, 0.95)),
        max_rel_err: finite(rel[rel.len() - 1]),
        median_err_vs_initial: finite(quantile(&vs_initial, 0.5)),
        max_err_vs_initial: finite(vs_initial[vs_initial.len() - 1]),
        zero_start_norm: finite(norm(zero_start[n])),
        median_energy_drift: finite(quantile(&drift, 0.5)),
        max_abs_energy_drift: max_abs(&drift),
    }
}

/// `x`, or NaN where it is not finite (the one "not meaningful" value).
fn finite(x: f64) -> f64 {
    if x.is_finite() { x } else { f64::NAN }
}

fn norm(v: Vec2) -> f64 {
    v[0].hypot(v[1])
}

/// Linear-interpolated quantile of sorted, non-empty `xs`.
fn quantile(xs: &[f64], q: f64) -> f64 {
    let pos = q * (xs.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if lo == hi {
        return xs[lo]; // no interpolation (towards an infinite neighbour it would give NaN)
    }
    xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
}

impl Rollout {
    /// The docs/outputs.md headline numbers.
    pub fn summary(&self) -> RolloutSummary {
        let last = self.stats.last().expect("a rollout has at least step 0");
        let max_over_steps = |f: fn(&StepStats) -> f64| {
            let xs = self.stats.iter().map(f);
            if self.diverged_at().is_some() { f64::NAN } else { xs.fold(0.0, f64::max) }
        };
        RolloutSummary {
            steps: last.step,
            median_rel_err_final: last.median_rel_err,
            max_rel_err_final: last.max_rel_err,
            max_rel_err: max_over_steps(|s| s.max_rel_err),
            median_err_vs_initial_final: last.median_err_vs_initial,
            max_err_vs_initial_final: last.max_err_vs_initial,
            max_err_vs_initial: max_over_steps(|s| s.max_err_vs_initial),
            fixed_point_dominated_from: self.fixed_point_step(),
            diverged_at: self.diverged_at(),
        }
    }

    /// The first step at which some model state is not finite.
    pub fn diverged_at(&self) -> Option<usize> {
        let steps = self.model.first().map_or(0, Vec::len);
        (0..steps).find(|&n| self.model.iter().any(|m| !(m[n][0].is_finite() && m[n][1].is_finite())))
    }

    /// The first step from which the relative error is dominated by the
    /// model's fixed point: the exact state has decayed below a tenth of its
    /// initial size (median over trajectories), and the zero-start rollout
    /// `‖ŝₙ(0)‖`, divided by the median exact state norm, is at least half the
    /// median relative error. From there on `‖ŝₙ − sₙ‖/‖sₙ‖` grows because
    /// `sₙ` decays while the model's rollout settles at its own fixed point
    /// (`s* = (I − M)⁻¹ c` for an affine model): it measures that offset, not
    /// the dynamics, and the error relative to the initial state is the one to
    /// read. `None` if that never happens within the rollout, if the model has
    /// no offset, or if the rollout diverged (it has no fixed point to settle at).
    pub fn fixed_point_step(&self) -> Option<usize> {
        if self.diverged_at().is_some() {
            return None;
        }
        let median_norm = |n: usize| {
            let mut norms: Vec<f64> = self.exact.iter().map(|e| norm(e[n])).collect();
            norms.sort_by(f64::total_cmp);
            quantile(&norms, 0.5)
        };
        let initial = median_norm(0);
        self.stats.iter().find_map(|s| {
            let now = median_norm(s.step);
            let decayed = now < 0.1 * initial;
            let pull = s.zero_start_norm / now;
            let dominated = s.median_rel_err.is_nan() || pull >= 0.5 * s.median_rel_err;
            (s.zero_start_norm > 0.0 && decayed && dominated).then_some(s.step)
        })
    }

    /// Per-step statistics as CSV (`rollout.csv`); a number that is not
    /// finite is an empty field.
    pub fn stats_csv(&self) -> String {
        let mut out = String::from(
            "step,median_rel_err,q05_rel_err,q95_rel_err,max_rel_err,median_err_vs_initial,max_err_vs_initial,\
             zero_start_norm,median_energy_drift,max_abs_energy_drift\n",
        );
        for s in &self.stats {
            let values = [
                s.median_rel_err,
                s.q05_rel_err,
                s.q95_rel_err,
                s.max_rel_err,
                s.median_err_vs_initial,
                s.max_err_vs_initial,
                s.zero_start_norm,
                s.median_energy_drift,
                s.max_abs_energy_drift,
            ];
            write!(out, "{}", s.step).expect("write to String");
            for v in values {
                write!(out, ",{}", csv_number(v)).expect("write to String");
            }
            out.push('\n');
        }
        out
    }

    /// The first `n` trajectories, model and exact, as CSV (`trajectories.csv`).
    pub fn trajectories_csv(&self, n: usize) -> String {
        let mut out = String::from("trajectory,step,t,x,p,x_exact,p_exact,omega0,gamma\n");
        for (i, ((m, e), system)) in self.model.iter().zip(&self.exact).zip(&self.systems).take(n).enumerate() {
            let (dt, omega0, gamma) = (system.dt, system.omega0, system.gamma);
            for (step, (s_hat, s)) in m.iter().zip(e).enumerate() {
                let [x, p, xe, pe] = [s_hat[0], s_hat[1], s[0], s[1]].map(csv_number);
                writeln!(out, "{i},{step},{},{x},{p},{xe},{pe},{omega0},{gamma}", step as f64 * dt)
                    .expect("write to String");
            }
        }
        out
    }
}

/// `x` in full precision, or an empty field where it is not finite.
fn csv_number(x: f64) -> String {
    if x.is_finite() { format!("{x:e}") } else { String::new() }
}

/// `error_vs_energy.csv`: for every validation sequence, the energy of the
/// last input state, and the squared and relative error `‖ŝ − s‖/‖s‖` of the
/// model's prediction of the state after it.
pub fn error_vs_energy_csv<F: Real>(model: &Model<F>, valid: &Dataset<F>) -> String {
    let t = model.cfg.n_ctx;
    let w = t * D_IN;
    let chunk = Activations::<F>::chunk(&model.cfg, valid.len());
    let mut acts = Activations::new(&model.cfg, chunk);
    let mut out = String::from("energy,sq_err,rel_err\n");
    let chunks = valid.inputs.chunks(chunk * w).zip(valid.targets.chunks(chunk * w)).zip(valid.systems.chunks(chunk));
    for ((inputs, targets), systems) in chunks {
        model.forward(inputs, &mut acts);
        let rows = inputs.chunks_exact(w).zip(targets.chunks_exact(w)).zip(acts.pred.chunks_exact(w));
        for (((seq, target), pred), system) in rows.zip(systems) {
            let osc = system.oscillator();
            let last = (t - 1) * D_IN;
            let s = [seq[last].f64(), seq[last + 1].f64()];
            let y = [target[last].f64(), target[last + 1].f64()];
            let sq = (pred[last].f64() - y[0]).powi(2) + (pred[last + 1].f64() - y[1]).powi(2);
            let rel = sq.sqrt() / y[0].hypot(y[1]);
            let [e, sq, rel] = [osc.energy(s), sq, rel].map(csv_number);
            writeln!(out, "{e},{sq},{rel}").expect("write to String");
        }
    }
    out
}
