//! Training and validation data: states sampled by energy (docs/physics.md) and
//! short exact trajectories cut into (input, target) sequences (docs/physics.md).
//!
//! # Shapes
//! A data set of `N` sequences of `T` tokens holds `inputs` `[N, T, 2]` (the
//! states `s_0 … s_{T-1}` of one trajectory) and `targets` `[N, T, 2]` (the
//! next states `s_1 … s_T`), both row-major `(x, p)` pairs.

use std::f64::consts::TAU;

use crate::physics::Oscillator;
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

/// Sequences of `context` consecutive states and their successors.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<F> {
    /// Tokens per sequence T.
    pub context: usize,
    /// `[N, T, 2]`.
    pub inputs: Vec<F>,
    /// `[N, T, 2]`: `targets[n, t] = M · inputs[n, t]`.
    pub targets: Vec<F>,
}

impl<F: Real> Dataset<F> {
    /// `n` sequences whose first states are drawn by [`sample_state`] and
    /// propagated exactly with the one-step map `step` (`exp(AΔt)`).
    pub fn generate(osc: &Oscillator, step: &Mat2, e_max: f64, n: usize, context: usize, rng: &mut Rng) -> Self {
        let mut data = Self::empty(context);
        data.refill(osc, step, e_max, n, rng);
        data
    }

    /// A set with no sequence of `context` tokens.
    pub fn empty(context: usize) -> Self {
        Dataset { context, inputs: vec![], targets: vec![] }
    }

    /// Replaces the contents with `n` new sequences, as [`Dataset::generate`]
    /// draws them (reusing the buffers).
    pub fn refill(&mut self, osc: &Oscillator, step: &Mat2, e_max: f64, n: usize, rng: &mut Rng) {
        self.inputs.clear();
        self.targets.clear();
        // Exactly the room needed (growing by doubling could hold twice that).
        let len = n.saturating_mul(self.context).saturating_mul(2);
        self.inputs.reserve_exact(len);
        self.targets.reserve_exact(len);
        for _ in 0..n {
            let mut s = sample_state(osc, e_max, rng);
            for _ in 0..self.context {
                let next = apply(step, s);
                self.inputs.extend([F::of(s[0]), F::of(s[1])]);
                self.targets.extend([F::of(next[0]), F::of(next[1])]);
                s = next;
            }
        }
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
