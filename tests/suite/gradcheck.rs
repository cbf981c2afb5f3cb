//! The hand-written backward pass against central finite differences in f64,
//! for every switch of the model family.

use crate::common::config;
use physlens::model::{Act, Activations, AttnScale, LossPositions, Model, ModelConfig, Scratch, mse_loss};
use physlens::util::real::Real;
use physlens::util::rng::{Rng, Stream};

/// Loss of `model` on (`input`, `target`).
fn loss(model: &Model<f64>, input: &[f64], target: &[f64], batch: usize) -> f64 {
    let mut acts = Activations::new(&model.cfg, batch);
    let mut scratch = Scratch::new(&model.cfg, batch);
    model.forward(input, &mut acts);
    mse_loss(&model.cfg, &acts.pred, target, &mut scratch.d_pred)
}

/// The analytic gradient of `model` in `F` on (`input`, `target`), widened to f64.
fn analytic<F: Real>(model: &Model<F>, input: &[f64], target: &[f64], batch: usize) -> Vec<f64> {
    let cfg = &model.cfg;
    let narrow = |xs: &[f64]| xs.iter().map(|x| F::of(*x)).collect::<Vec<F>>();
    let (input, target) = (narrow(input), narrow(target));
    let mut acts = Activations::new(cfg, batch);
    let mut scratch = Scratch::new(cfg, batch);
    let mut grads = vec![F::zero(); model.params.len()];
    model.forward(&input, &mut acts);
    mse_loss(cfg, &acts.pred, &target, &mut scratch.d_pred);
    model.backward(&input, &acts, &mut scratch, &mut grads);
    grads.iter().map(|g| g.f64()).collect()
}

/// Worst relative error of the analytic gradient (computed in `F`) against
/// central differences of the f64 loss (per tensor: ‖g − g_fd‖ / ‖g_fd‖;
/// tensors whose gradient is exactly zero both ways, such as W_Q at context
/// 1, must agree absolutely). Weights and data are drawn in f64 and rounded
/// to `F` once, so both sides see the same model.
fn worst_gradient_error<F: Real>(cfg: &ModelConfig, seed: u64) -> f64 {
    let batch = 5;
    let mut rng = Rng::new(seed, Stream::Init);
    let mut model = Model::<f64>::init(cfg, &mut rng);
    // Larger weights than the init so the softmax is far from uniform.
    model.params.iter_mut().for_each(|w| *w = F::of(0.8 * rng.normal()).f64());
    let n = batch * cfg.n_ctx * 2;
    let input: Vec<f64> = (0..n).map(|_| F::of(rng.normal()).f64()).collect();
    let target: Vec<f64> = (0..n).map(|_| F::of(rng.normal()).f64()).collect();
    let narrow = Model::<F> { params: model.params.iter().map(|w| F::of(*w)).collect(), ..Model::zeros(cfg) };
    let grads = analytic(&narrow, &input, &target, batch);

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
        let err = worst_gradient_error::<f64>(&cfg, seed);
        assert!(err <= 1e-6, "{cfg:?} seed {seed}: relative gradient error {err}");
    }
}

#[test]
fn gradients_with_gelu_mlp_blocks() {
    assert_gradients(ModelConfig { d_mlp: 6, positional: true, ..config(4, 2, 3, 2, 5) });
    assert_gradients(ModelConfig { d_mlp: 3, ..ModelConfig::seed() });
}

#[test]
fn gradients_with_relu_mlp_blocks_and_no_mask() {
    let cfg = config(3, 1, 2, 2, 4);
    assert_gradients(ModelConfig { d_mlp: 5, act: Act::Relu, causal: false, ..cfg });
}

#[test]
fn gradients_of_mlp_blocks_in_f32() {
    // The f32 backward against f64 differences of the same (f32) weights:
    // within f32 rounding of the f64 truth.
    for cfg in [
        ModelConfig { d_mlp: 6, positional: true, ..config(4, 2, 3, 2, 5) },
        ModelConfig { d_mlp: 5, act: Act::Relu, ..config(3, 1, 2, 2, 4) },
    ] {
        for seed in 0..2 {
            let err = worst_gradient_error::<f32>(&cfg, seed);
            assert!(err <= 1e-4, "{cfg:?} seed {seed}: relative gradient error {err}");
        }
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
