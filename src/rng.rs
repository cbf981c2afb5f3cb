//! One seed, many independent random streams.
//!
//! Every random choice in physlens (weight init, training data, validation
//! data, batch order, rollout starts) draws from its own ChaCha8 stream keyed by
//! the run's single seed, so changing how much one consumer draws never shifts
//! another. ChaCha8 is portable: the same seed gives the same numbers on every
//! platform and thread count.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

/// The independent consumers of randomness in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Weight initialisation.
    Init = 1,
    /// Training samples (fixed set, or fresh samples every step).
    Train = 2,
    /// Validation samples.
    Valid = 3,
    /// Order of the fixed training set.
    Shuffle = 4,
    /// Initial states of rollouts.
    Rollout = 5,
}

/// A seeded generator for one [`Stream`].
#[derive(Clone, Debug)]
pub struct Rng {
    inner: ChaCha8Rng,
}

impl Rng {
    /// The generator for `stream` under `seed`.
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream as u64);
        Rng { inner }
    }

    /// Position in the stream, in 32-bit words (saved to resume a run).
    pub fn position(&self) -> u128 {
        self.inner.get_word_pos()
    }

    /// Moves to a position returned by [`Rng::position`].
    pub fn set_position(&mut self, pos: u128) {
        self.inner.set_word_pos(pos);
    }

    /// Uniform on `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.inner.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform on `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal, by the Box–Muller transform.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in `0..n` (`n > 0`), without bias: Lemire's
    /// multiply-and-reject method, which needs a division only on the rare
    /// rejection path.
    pub fn below(&mut self, n: u64) -> u64 {
        let mut m = u128::from(self.inner.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.inner.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Shuffles `xs` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}
