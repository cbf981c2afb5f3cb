//! AdamW with decoupled weight decay and bias correction, computed exactly as
//! `torch.optim.AdamW` (single-tensor path) computes it. The learning-rate
//! schedule is [`crate::config::Schedule`].

use crate::config::TrainConfig;
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
        for (((w, g), m), v) in params.iter_mut().zip(grads).zip(&mut self.m).zip(&mut self.v) {
            *w *= decay;
            *m += w1 * (*g - *m);
            *v = *v * b2 + w2 * *g * *g;
            *w -= step_size * (*m / (v.sqrt() / bias2_sqrt + eps));
        }
    }
}
