//! AdamW with decoupled weight decay and bias correction, computed exactly as
//! `torch.optim.AdamW` (single-tensor path) computes it. The learning-rate
//! schedule is [`crate::config::Schedule`].

use rayon::prelude::*;

use crate::config::TrainConfig;
use crate::kernel::chunks::PIECE;
use crate::util::real::Real;

/// AdamW hyper-parameters (the learning rate comes per step from a [`crate::config::Schedule`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Exponential decay of the first moment.
    pub beta1: f64,
    /// Exponential decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// Decoupled weight decay, applied as `w ← w (1 − lr·wd)`.
    pub weight_decay: f64,
}

/// AdamW state: the two moments and the step count.
#[derive(Clone, Debug, PartialEq)]
pub struct AdamW<F> {
    /// Hyper-parameters.
    pub cfg: AdamWConfig,
    /// First moment `[P]`.
    pub m: Vec<F>,
    /// Second moment `[P]`.
    pub v: Vec<F>,
    /// Steps taken so far.
    pub t: u64,
}

impl From<&TrainConfig> for AdamWConfig {
    fn from(t: &TrainConfig) -> Self {
        AdamWConfig { beta1: t.beta1, beta2: t.beta2, eps: t.eps, weight_decay: t.weight_decay }
    }
}

impl<F: Real> AdamW<F> {
    /// Fresh state for `n_params` parameters.
    pub fn new(cfg: AdamWConfig, n_params: usize) -> Self {
        AdamW { cfg, m: vec![F::zero(); n_params], v: vec![F::zero(); n_params], t: 0 }
    }

    /// One update of `params` with `grads` at learning rate `lr`:
    /// ```text
    /// w ← w (1 − lr λ);  m ← m + (1−β1)(g − m);  v ← β2 v + (1−β2) g²
    /// w ← w − (lr / (1−β1ᵗ)) · m / (sqrt(v) / sqrt(1−β2ᵗ) + ε)
    /// ```
    /// in the same order of operations as PyTorch, so f64 results agree to
    /// rounding.
    pub fn step(&mut self, params: &mut [F], grads: &[F], lr: f64) {
        self.t += 1;
        let c = &self.cfg;
        let t = self.t as f64;
        let bias1 = 1.0 - c.beta1.powf(t);
        let bias2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
        let decay = F::of(1.0 - lr * c.weight_decay);
        let (w1, b2, w2) = (F::of(1.0 - c.beta1), F::of(c.beta2), F::of(1.0 - c.beta2));
        let (step_size, bias2_sqrt, eps) = (F::of(lr / bias1), F::of(bias2_sqrt), F::of(c.eps));
        let update = |w: &mut [F], g: &[F], m: &mut [F], v: &mut [F]| {
            for (((w, g), m), v) in w.iter_mut().zip(g).zip(m).zip(v) {
                *w *= decay;
                *m += w1 * (*g - *m);
                *v = *v * b2 + w2 * *g * *g;
                *w -= step_size * (*m / (v.sqrt() / bias2_sqrt + eps));
            }
        };
        // Pieces in parallel: element by element, the same bits whatever the thread count.
        if params.len() > PIECE {
            let pieces = params.par_chunks_mut(PIECE).zip(grads.par_chunks(PIECE));
            let state = self.m.par_chunks_mut(PIECE).zip(self.v.par_chunks_mut(PIECE));
            pieces.zip(state).for_each(|((w, g), (m, v))| update(w, g, m, v));
        } else {
            update(params, grads, &mut self.m, &mut self.v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each parameter's update depends on its own gradient and moments
    /// alone, so a model large enough to be updated in parallel pieces gets
    /// the same bits as one parameter updated at a time.
    #[test]
    fn a_step_in_parallel_pieces_equals_one_parameter_at_a_time() {
        let cfg = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 };
        let n = 2 * PIECE + 3;
        let value = |i: usize, k: f32| ((i as f32) * k).sin();
        let mut params: Vec<f32> = (0..n).map(|i| value(i, 0.37)).collect();
        let mut alone = params.clone();
        let mut opt = AdamW::new(cfg, n);
        let mut singles = vec![AdamW::<f32>::new(cfg, 1); n];
        for step in 0..3 {
            let grads: Vec<f32> = (0..n).map(|i| value(i + step, 1.3) * 1e-2).collect();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(2 + step).build().unwrap();
            pool.install(|| opt.step(&mut params, &grads, 1e-3));
            for ((w, g), single) in alone.iter_mut().zip(&grads).zip(&mut singles) {
                single.step(std::slice::from_mut(w), &[*g], 1e-3);
            }
        }
        assert!(params.iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
