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
    /// Validation samples from the wider parameter ranges of the in-context
    /// evaluation.
    Wide = 6,
    /// The random points of a sweep (`[sweep] seed`).
    Sweep = 7,
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
    /// multiply-and-reject method on one 32-bit draw, which needs a division
    /// only on the rare rejection path.
    pub fn below(&mut self, n: u32) -> u32 {
        let n64 = u64::from(n);
        let mut m = u64::from(self.inner.next_u32()) * n64;
        if (m as u32) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u32) < threshold {
                m = u64::from(self.inner.next_u32()) * n64;
            }
        }
        (m >> 32) as u32
    }

    /// Shuffles `xs` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(u32::try_from(i + 1).expect("shuffles fewer than 2³² items")) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's χ² of `counts` against equal expected counts.
    fn chi2(counts: &[u64]) -> f64 {
        let expected = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
        counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
    }

    #[test]
    fn bounded_integers_stay_in_range_and_are_uniform() {
        let mut rng = Rng::new(1, Stream::Shuffle);
        // 3·2³⁰ rejects a quarter of the raw draws: the rejection path runs.
        for n in [1, 2, 3, 7, 1000, 3 << 30, u32::MAX] {
            assert!((0..10_000).all(|_| rng.below(n) < n), "n = {n}");
        }
        let mut counts = [0u64; 6];
        (0..60_000).for_each(|_| counts[rng.below(6) as usize] += 1);
        assert!(chi2(&counts) < 20.5, "χ² = {} over {counts:?} (5 dof, p = 0.001 at 20.5)", chi2(&counts));
        // Halves of the large range are equally likely (a biased method favours the low one).
        let n = 3u32 << 30;
        let low = (0..60_000).filter(|_| rng.below(n) < n / 2).count() as u64;
        assert!(chi2(&[low, 60_000 - low]) < 10.8, "{low} of 60000 in the lower half");
    }

    #[test]
    fn shuffles_are_uniform_permutations() {
        let mut rng = Rng::new(2, Stream::Shuffle);
        let mut counts = [0u64; 24];
        for _ in 0..48_000 {
            let mut xs = [0u8, 1, 2, 3];
            rng.shuffle(&mut xs);
            // The permutation's index in 0..24 (Lehmer code).
            let code = (0..4).fold(0, |acc, i| acc * (4 - i) + xs[i + 1..].iter().filter(|&&x| x < xs[i]).count());
            counts[code] += 1;
        }
        assert!(chi2(&counts) < 49.7, "χ² = {} over {counts:?} (23 dof, p = 0.001 at 49.7)", chi2(&counts));
    }
}
