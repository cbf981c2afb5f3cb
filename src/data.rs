//! Training and validation data: states sampled by energy (docs/physics.md) and
//! short trajectories, each of its own system when parameters are drawn per
//! sequence, cut into (input, target) sequences (docs/physics.md).
//!
//! # Shapes
//! A data set of `N` sequences of `T` tokens holds `inputs` `[N, T, 2]` (the
//! states `s_0 … s_{T-1}` of one trajectory) and `targets` `[N, T, 2]` (the
//! next states `s_1 … s_T`), both row-major `(x, p)` pairs.

use std::f64::consts::TAU;

use crate::physics::{Oscillator, System, SystemSpec};
use crate::util::mat2::{Mat2, Vec2, apply};
use crate::util::real::Real;
use crate::util::rng::Rng;

/// One state with energy uniform on `[0, e_max]` and phase uniform on `[0, 2π)`:
/// `x = sqrt(2E)/ω0 · cos φ`, `p = sqrt(2E) · sin φ`.
pub fn sample_state(osc: &Oscillator, e_max: f64, rng: &mut Rng) -> Vec2 {
    let e = rng.uniform_in(0.0, e_max);
    let phi = rng.uniform_in(0.0, TAU);
    osc.state_from_energy_phase(e, phi)
}

/// How sequences are drawn: the systems (fixed, or drawn per sequence), the
/// energies, the tokens per sequence and the observation noise on the inputs.
#[derive(Clone, Debug)]
pub struct Sampler {
    spec: SystemSpec,
    /// The one system and its data step, when no parameter is drawn.
    fixed: Option<(System, Mat2)>,
    e_max: f64,
    noise: f64,
    context: usize,
}

impl Sampler {
    /// Sequences of `context` tokens from the systems of `spec`, energies
    /// uniform on `[0, e_max]`, and Gaussian noise of standard deviation
    /// `noise · sqrt(2E)` added to each input coordinate (0: clean inputs).
    pub fn new(spec: &SystemSpec, e_max: f64, noise: f64, context: usize) -> Self {
        let fixed = spec.fixed().map(|s| (s, s.data_step()));
        Sampler { spec: *spec, fixed, e_max, noise, context }
    }

    /// Draws one sequence from `rng` and hands each token's `(input,
    /// target)` to `push`; returns the sequence's system and clean first
    /// state. Draw order: the ranged parameters (ω0, γ, Δt), energy, phase,
    /// then two normals per token when there is noise, so that a fixed spec
    /// without noise draws exactly the energy and phase.
    fn draw(&self, rng: &mut Rng, mut push: impl FnMut(Vec2, Vec2)) -> (System, Vec2) {
        let (system, step) = match self.fixed {
            Some(fixed) => fixed,
            None => {
                let s = self.spec.draw(rng);
                (s, s.data_step())
            }
        };
        let osc = system.oscillator();
        let start = sample_state(&osc, self.e_max, rng);
        // σ·sqrt(2E), only when there is noise (fresh batches are drawn every step).
        let sigma = (self.noise > 0.0).then(|| self.noise * (2.0 * osc.energy(start)).sqrt());
        let mut s = start;
        for _ in 0..self.context {
            let next = apply(&step, s);
            let input = match sigma {
                Some(sigma) => [s[0] + sigma * rng.normal(), s[1] + sigma * rng.normal()],
                None => s,
            };
            push(input, next);
            s = next;
        }
        (system, start)
    }
}

/// Sequences of `context` consecutive states and their successors.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<F> {
    /// Tokens per sequence T.
    pub context: usize,
    /// `[N, T, 2]`: the states `s_0 … s_{T-1}`, with the observation noise.
    pub inputs: Vec<F>,
    /// `[N, T, 2]`: `targets[n, t] = M_n · s_t`, clean.
    pub targets: Vec<F>,
    /// `[N]`: each sequence's system (the same for all when none is drawn).
    pub systems: Vec<System>,
    /// `[N]`: each sequence's clean first state `s_0`, in f64.
    pub starts: Vec<Vec2>,
}

impl<F: Real> Dataset<F> {
    /// `n` sequences drawn by `sampler` from `rng`.
    pub fn generate(sampler: &Sampler, n: usize, rng: &mut Rng) -> Self {
        let mut data = Self::empty(sampler.context);
        data.refill(sampler, n, rng);
        data
    }

    /// A set with no sequence of `context` tokens.
    pub fn empty(context: usize) -> Self {
        Dataset { context, inputs: vec![], targets: vec![], systems: vec![], starts: vec![] }
    }

    /// Replaces the contents with `n` new sequences, as [`Dataset::generate`]
    /// draws them (reusing the buffers).
    pub fn refill(&mut self, sampler: &Sampler, n: usize, rng: &mut Rng) {
        let Dataset { inputs, targets, systems, starts, .. } = self;
        for v in [&mut *inputs, &mut *targets] {
            v.clear();
            // Exactly the room needed (growing by doubling could hold twice that).
            v.reserve_exact(n.saturating_mul(sampler.context).saturating_mul(2));
        }
        systems.clear();
        starts.clear();
        for _ in 0..n {
            let (system, start) = sampler.draw(rng, |input, target| {
                inputs.extend([F::of(input[0]), F::of(input[1])]);
                targets.extend([F::of(target[0]), F::of(target[1])]);
            });
            systems.push(system);
            starts.push(start);
        }
    }

    /// The clean states `s_0 … s_T` of sequence `n` in f64, stepped afresh
    /// from its first state with its system's data step.
    pub fn clean_states(&self, n: usize) -> Vec<Vec2> {
        let m = self.systems[n].data_step();
        std::iter::successors(Some(self.starts[n]), |s| Some(apply(&m, *s))).take(self.context + 1).collect()
    }

    /// Number of sequences N.
    pub fn len(&self) -> usize {
        self.inputs.len() / (2 * self.context)
    }

    /// True when the set holds no sequence.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }
}

/// Hands out batches of a fixed training set in a shuffled order, reshuffling
/// each epoch (an incomplete last batch of an epoch is dropped).
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<u32>,
    next: usize,
    rng: Rng,
}

impl Batches {
    /// Batches over `n` sequences, shuffled with `rng`.
    pub fn new(n: usize, rng: Rng) -> Self {
        Batches { order: (0..n as u32).collect(), next: n, rng }
    }

    /// The state to resume from: the current order, the position in it and
    /// the shuffling generator's position.
    pub fn state(&self) -> (&[u32], usize, u128) {
        (&self.order, self.next, self.rng.position())
    }

    /// Batches continuing from a [`Batches::state`]; `rng` must be the stream
    /// the run was started with.
    pub fn restore(order: Vec<u32>, next: usize, mut rng: Rng, position: u128) -> Self {
        rng.set_position(position);
        Batches { order, next, rng }
    }

    /// The indices of the next batch of `size` sequences (`size ≤ n`).
    pub fn next_batch(&mut self, size: usize) -> &[u32] {
        if self.next + size > self.order.len() {
            self.rng.shuffle(&mut self.order);
            self.next = 0;
        }
        self.next += size;
        &self.order[self.next - size..self.next]
    }
}
