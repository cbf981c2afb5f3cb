//! The hand-written backward pass against central finite differences in f64,
//! for every switch of the model family.

use crate::common::config;
use physlens::model::{Activations, AttnScale, LossPositions, Model, ModelConfig, Scratch, mse_loss};
use physlens::util::rng::{Rng, Stream};

/// Loss of `model` on (`input`, `target`).
fn loss(model: &Model<f64>, input: &[f64], target: &[f64], batch: usize) -> f64 {
    let mut acts = Activations::new(&model.cfg, batch);
    let mut scratch = Scratch::new(&model.cfg, batch);
    model.forward(input, &mut acts);
    mse_loss(&model.cfg, &acts.pred, target, &mut scratch.d_pred)
}

/// Worst relative error of the analytic gradient against central differences
/// (per tensor: ‖g − g_fd‖ / ‖g_fd‖; tensors whose gradient is exactly zero
/// both ways, such as W_Q at context 1, must agree absolutely).
fn worst_gradient_error(cfg: &ModelConfig, seed: u64) -> f64 {
    let batch = 5;
    let mut rng = Rng::new(seed, Stream::Init);
    let mut model = Model::<f64>::init(cfg, &mut rng);
    // Larger weights than the init so the softmax is far from uniform.
    model.params.iter_mut().for_each(|w| *w = 0.8 * rng.normal());
    let n = batch * cfg.n_ctx * 2;
    let input: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let target: Vec<f64> = (0..n).map(|_| rng.normal()).collect();

    let mut acts = Activations::new(cfg, batch);
    let mut scratch = Scratch::new(cfg, batch);
    let mut grads = vec![0.0; model.params.len()];
    model.forward(&input, &mut acts);
    mse_loss(cfg, &acts.pred, &target, &mut scratch.d_pred);
    model.backward(&input, &acts, &mut scratch, &mut grads);

    let h = 1e-5;
    let mut worst: f64 = 0.0;
    for t in model.layout.tensors(cfg) {
        let (mut diff2, mut ref2) = (0.0, 0.0);
        for i in t.range.clone() {
            let w = model.params[i];
            model.params[i] = w + h;
            let up = loss(&model, &input, &target, batch);
            model.params[i] = w - h;
            let down = loss(&model, &input, &target, batch);
            model.params[i] = w;
            let fd = (up - down) / (2.0 * h);
            diff2 += (grads[i] - fd).powi(2);
            ref2 += fd * fd;
        }
        let err = if ref2 > 1e-20 { (diff2 / ref2).sqrt() } else { diff2.sqrt() };
        assert!(err.is_finite(), "{}: non-finite error", t.name);
        worst = worst.max(err);
    }
    worst
}

fn assert_gradients(cfg: ModelConfig) {
    for seed in 0..3 {
        let err = worst_gradient_error(&cfg, seed);
        assert!(err <= 1e-6, "{cfg:?} seed {seed}: relative gradient error {err}");
    }
}

#[test]
fn gradients_of_the_seed_model() {
    assert_gradients(ModelConfig::seed());
}

#[test]
fn gradients_two_layers_two_heads_context_8() {
    assert_gradients(config(4, 2, 3, 2, 8));
}

#[test]
fn gradients_without_causal_mask() {
    assert_gradients(ModelConfig { causal: false, ..config(3, 2, 2, 1, 4) });
}

#[test]
fn gradients_with_the_causal_mask_and_only_the_last_position_scored() {
    assert_gradients(ModelConfig { loss_positions: Some(LossPositions::Last), ..config(3, 2, 2, 2, 4) });
}

#[test]
fn gradients_with_positional_embeddings() {
    assert_gradients(ModelConfig { positional: true, ..config(3, 1, 3, 2, 6) });
}

#[test]
fn gradients_with_scale_by_d_head() {
    assert_gradients(ModelConfig { attn_scale: AttnScale::DHead, positional: true, ..config(5, 3, 2, 1, 5) });
}

#[test]
fn gradients_with_heads_wider_than_the_stream() {
    // n_heads · d_head need not equal d_model.
    assert_gradients(config(2, 3, 4, 1, 3));
}
