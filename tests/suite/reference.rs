//! The Rust model against fixtures dumped by the PyTorch reference
//! (`tools/reference/reference.py`): forward activations, loss, every gradient,
//! and the weights after five AdamW steps.

use crate::common::{Fixture, load_fixture, max_rel_diff, model_from, to};
use physlens::model::{Activations, Model, Scratch, mse_loss};
use physlens::train::optim::{AdamW, AdamWConfig};
use physlens::util::real::Real;

const NAMES: [&str; 5] = ["seed", "deep", "noncausal", "mlp", "mlp_relu"];

fn tol<F: Real>() -> f64 {
    match F::DTYPE {
        physlens::util::real::Dtype::F64 => 1e-10,
        physlens::util::real::Dtype::F32 => 1e-5,
    }
}

fn loss_and_grads<F: Real>(model: &Model<F>, fx: &Fixture) -> (f64, Vec<F>, Activations<F>) {
    let input: Vec<F> = to(&fx.inputs.data);
    let target: Vec<F> = to(&fx.targets.data);
    let batch = fx.inputs.shape[0];
    let mut acts = Activations::new(&model.cfg, batch);
    let mut scratch = Scratch::new(&model.cfg, batch);
    let mut grads = vec![F::zero(); model.params.len()];
    model.forward(&input, &mut acts);
    let loss = mse_loss(&model.cfg, &acts.pred, &target, &mut scratch.d_pred);
    model.backward(&input, &acts, &mut scratch, &mut grads);
    (loss, grads, acts)
}

fn check_forward_and_grads<F: Real>(dtype: &str) {
    for name in NAMES {
        let fx = load_fixture(&format!("{name}_{dtype}.json"));
        let model: Model<F> = model_from(&fx.config, &fx.params);
        let (loss, grads, acts) = loss_and_grads(&model, &fx);
        assert!((loss - fx.loss).abs() / fx.loss <= tol::<F>(), "{name}: loss {loss} vs {}", fx.loss);
        let out = max_rel_diff(&acts.pred, &fx.outputs.data);
        assert!(out <= tol::<F>(), "{name}: outputs differ by {out}");
        for (cache_name, want) in &fx.cache {
            let (got, shape) =
                acts.get(&model.cfg, cache_name).unwrap_or_else(|| panic!("no cache entry {cache_name}"));
            assert_eq!(shape, want.shape, "{name}: shape of {cache_name}");
            let diff = max_rel_diff(got, &want.data);
            assert!(diff <= tol::<F>(), "{name}: {cache_name} differs by {diff}");
        }
        for t in model.layout.tensors(&model.cfg) {
            let diff = max_rel_diff(&grads[t.range.clone()], &fx.grads[&t.name].data);
            assert!(diff <= tol::<F>(), "{name}: grad of {} differs by {diff}", t.name);
        }
    }
}

fn check_adamw<F: Real>(dtype: &str) {
    for name in NAMES {
        let fx = load_fixture(&format!("{name}_{dtype}.json"));
        let mut model: Model<F> = model_from(&fx.config, &fx.params);
        let a = &fx.adamw;
        let cfg = AdamWConfig { beta1: a.beta1, beta2: a.beta2, eps: a.eps, weight_decay: a.weight_decay };
        let mut opt = AdamW::new(cfg, model.params.len());
        for step in 0..a.steps {
            let (loss, grads, _) = loss_and_grads(&model, &fx);
            let want = fx.losses[step];
            assert!((loss - want).abs() / want <= tol::<F>(), "{name}: loss before step {step}: {loss} vs {want}");
            opt.step(&mut model.params, &grads, a.lr);
        }
        for t in model.layout.tensors(&model.cfg) {
            let diff = max_rel_diff(&model.params[t.range.clone()], &fx.params_after[&t.name].data);
            assert!(diff <= tol::<F>(), "{name}: {} after AdamW differs by {diff}", t.name);
        }
    }
}

#[test]
fn forward_cache_loss_and_grads_match_pytorch_f64() {
    check_forward_and_grads::<f64>("f64");
}

#[test]
fn forward_cache_loss_and_grads_match_pytorch_f32() {
    check_forward_and_grads::<f32>("f32");
}

#[test]
fn adamw_steps_match_torch_optim_adamw_f64() {
    check_adamw::<f64>("f64");
}

#[test]
fn adamw_steps_match_torch_optim_adamw_f32() {
    check_adamw::<f32>("f32");
}
