//! The lane kernels against the reference forward/backward of `model.rs`,
//! and their independence from the thread count, on every instruction set
//! this CPU runs (`Simd::available`: AVX-512, AVX2, portable).

use crate::kernel::Kernel;
use crate::kernel::chunks::{Batch, CHUNK};
use crate::kernel::ctx1::Ctx1Kernel;
use crate::kernel::lanes::{LANES, Simd};
use crate::kernel::seq::CHUNK_SEQ;
use crate::model::{Act, Activations, AttnScale, LossPositions, Model, ModelConfig, Scratch, mse_loss};
use crate::util::real::Real;
use crate::util::rng::{Rng, Stream};

/// A causal, non-positional config with the `d_model` scale.
fn config(d_model: usize, n_heads: usize, d_head: usize, n_layers: usize, n_ctx: usize) -> ModelConfig {
    ModelConfig {
        d_model,
        n_heads,
        d_head,
        n_layers,
        d_mlp: 0,
        act: Act::Gelu,
        n_ctx,
        attn_scale: AttnScale::DModel,
        causal: true,
        positional: false,
        loss_positions: None,
    }
}

fn reference<F: Real>(model: &Model<F>, input: &[F], target: &[F]) -> (f64, Vec<F>) {
    let batch = input.len() / 2;
    let mut acts = Activations::new(&model.cfg, batch);
    let mut scratch = Scratch::new(&model.cfg, batch);
    let mut grads = vec![F::zero(); model.params.len()];
    model.forward(input, &mut acts);
    let loss = mse_loss(&model.cfg, &acts.pred, target, &mut scratch.d_pred);
    model.backward(input, &acts, &mut scratch, &mut grads);
    (loss, grads)
}

/// All of `input`/`target` as one batch, in order.
fn whole<'a, F: Real>(model: &Model<F>, input: &'a [F], target: &'a [F]) -> Batch<'a, F> {
    Batch { inputs: input, targets: target, rows: None, width: model.cfg.n_ctx * 2 }
}

fn random_case<F: Real>(cfg: &ModelConfig, batch: usize, seed: u64) -> (Model<F>, Vec<F>, Vec<F>) {
    let mut rng = Rng::new(seed, Stream::Init);
    let mut model = Model::<F>::init(cfg, &mut rng);
    model.params.iter_mut().for_each(|w| *w = F::of(0.7 * rng.normal()));
    let n = batch * cfg.n_ctx * 2;
    let input = (0..n).map(|_| F::of(rng.normal())).collect();
    let target = (0..n).map(|_| F::of(rng.normal())).collect();
    (model, input, target)
}

fn configs() -> Vec<ModelConfig> {
    vec![
        ModelConfig::seed(),
        config(4, 2, 3, 2, 1),
        ModelConfig { positional: true, attn_scale: AttnScale::DHead, ..config(3, 3, 2, 3, 1) },
        config(16, 2, 8, 1, 1),
    ]
}

#[test]
fn fused_kernel_matches_the_reference_backward_in_f64() {
    // Batches that exercise a partial lane group and several chunks.
    for batch in [1, LANES - 1, 37, CHUNK + 3, 3 * CHUNK] {
        for (i, cfg) in configs().iter().enumerate() {
            let (model, input, target) = random_case::<f64>(cfg, batch, i as u64);
            let (want_loss, want) = reference(&model, &input, &target);
            for simd in Simd::available() {
                let mut kernel = Ctx1Kernel::new(&model, batch, simd);
                let mut got = vec![0.0; model.params.len()];
                let loss = kernel.loss_and_grad(&model, &whole(&model, &input, &target), &mut got);
                let at = format!("{simd:?}, batch {batch}, {cfg:?}");
                assert!((loss - want_loss).abs() <= 1e-12 * want_loss, "{at}: loss {loss} vs {want_loss}");
                let scale = want.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
                for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-12 * scale, "{at}: grad {j}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn fused_kernel_matches_the_reference_backward_in_f32() {
    for (i, cfg) in configs().iter().enumerate() {
        let (model, input, target) = random_case::<f32>(cfg, 1000, 10 + i as u64);
        let (want_loss, want) = reference(&model, &input, &target);
        for simd in Simd::available() {
            let mut kernel = Ctx1Kernel::new(&model, 1000, simd);
            let mut got = vec![0.0f32; model.params.len()];
            let loss = kernel.loss_and_grad(&model, &whole(&model, &input, &target), &mut got);
            assert!((loss - want_loss).abs() <= 1e-5 * want_loss, "{simd:?}, {cfg:?}: loss {loss} vs {want_loss}");
            let scale = want.iter().fold(0.0f32, |m, g| m.max(g.abs()));
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-5 * scale, "{simd:?}, {cfg:?}: {a} vs {b}");
            }
        }
    }
}

#[test]
fn fused_kernel_is_bit_identical_across_thread_counts() {
    let cfg = config(4, 2, 3, 2, 1);
    let batch = 5 * CHUNK + 17;
    let (model, input, target) = random_case::<f32>(&cfg, batch, 99);
    for simd in Simd::available() {
        let one = step_bits(&model, &input, &target, simd, 1);
        assert_eq!(one, step_bits(&model, &input, &target, simd, 2), "{simd:?}");
        assert_eq!(one, step_bits(&model, &input, &target, simd, 4), "{simd:?}");
    }
}

/// The bits of the loss and gradient of one kernel step on all of
/// `input`/`target`, on `simd` with `threads` worker threads.
fn step_bits(model: &Model<f32>, input: &[f32], target: &[f32], simd: Simd, threads: usize) -> (u64, Vec<u32>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let batch = whole(model, input, target);
        let mut kernel = Kernel::with_simd(model, batch.len(), simd);
        let mut g = vec![0.0f32; model.params.len()];
        let loss = kernel.loss_and_grad(model, &batch, &mut g);
        (loss.to_bits(), g.iter().map(|x| x.to_bits()).collect())
    })
}

fn seq_configs() -> Vec<ModelConfig> {
    vec![
        config(2, 1, 2, 1, 2),
        config(4, 2, 3, 2, 5),
        ModelConfig { causal: false, positional: true, ..config(3, 2, 2, 1, 4) },
        ModelConfig { attn_scale: AttnScale::DHead, positional: true, ..config(5, 3, 2, 2, 6) },
        config(16, 2, 8, 1, 16),
        // blocks of four (d_model and d_head multiples of 4) over two layers, both masks
        ModelConfig { causal: false, positional: true, ..config(8, 2, 4, 2, 6) },
        ModelConfig { positional: true, ..config(8, 3, 4, 2, 7) },
        // attention tiles of four by four with rows left over, both masks
        ModelConfig { causal: false, positional: true, ..config(8, 2, 4, 1, 10) },
        ModelConfig { positional: true, ..config(8, 1, 8, 2, 11) },
        // the causal mask with only the last position scored (`loss_positions = "last"`)
        ModelConfig { loss_positions: Some(LossPositions::Last), positional: true, ..config(4, 2, 2, 2, 5) },
        // MLP blocks: gelu in blocks of one and of four, relu without the mask, and context 1
        ModelConfig { d_mlp: 5, positional: true, ..config(4, 2, 3, 2, 5) },
        ModelConfig { d_mlp: 8, positional: true, ..config(8, 2, 4, 2, 6) },
        ModelConfig {
            d_mlp: 12,
            act: Act::Relu,
            causal: false,
            positional: true,
            loss_positions: Some(LossPositions::Last),
            ..config(8, 3, 4, 1, 4)
        },
        ModelConfig { d_mlp: 4, ..config(2, 1, 2, 1, 1) },
    ]
}

/// The kernel's loss and gradient against the reference, relative to the largest gradient.
fn kernel_error<F: Real>(cfg: &ModelConfig, batch: usize, seed: u64, simd: Simd) -> (f64, f64) {
    let (model, input, target) = random_case::<F>(cfg, batch, seed);
    let (want_loss, want) = reference(&model, &input, &target);
    let mut kernel = Kernel::with_simd(&model, batch, simd);
    let mut got = vec![F::zero(); model.params.len()];
    let loss = kernel.loss_and_grad(&model, &whole(&model, &input, &target), &mut got);
    let scale = want.iter().fold(1e-300f64, |m, g| m.max(g.f64().abs()));
    let grad_err = got.iter().zip(&want).map(|(a, b)| (a.f64() - b.f64()).abs() / scale).fold(0.0, f64::max);
    ((loss - want_loss).abs() / want_loss, grad_err)
}

#[test]
fn sequence_kernel_matches_the_reference_backward_in_f64() {
    for batch in [1, LANES + 3, CHUNK_SEQ * 2 + 5] {
        for (i, cfg) in seq_configs().iter().enumerate() {
            for simd in Simd::available() {
                let (loss_err, grad_err) = kernel_error::<f64>(cfg, batch, 20 + i as u64, simd);
                let at = format!("{simd:?}, batch {batch}, {cfg:?}");
                assert!(loss_err <= 1e-12 && grad_err <= 1e-12, "{at}: {loss_err:e} {grad_err:e}");
            }
        }
    }
}

#[test]
fn sequence_kernel_matches_the_reference_backward_in_f32() {
    // Both f32 passes are measured against the f64 reference on the same
    // (f32) weights and data: the kernel must be as accurate as the readable
    // f32 pass (random weights over two layers cancel enough to lose ~1e-5).
    for (i, cfg) in seq_configs().iter().enumerate() {
        let (model, input, target) = random_case::<f32>(cfg, 70, 40 + i as u64);
        let widen = |x: &[f32]| x.iter().map(|v| f64::from(*v)).collect::<Vec<_>>();
        let (truth_loss, truth) = reference(&model.to_f64(), &widen(&input), &widen(&target));
        let (ref_loss, ref_grad) = reference(&model, &input, &target);
        let scale = truth.iter().fold(1e-300f64, |m, g| m.max(g.abs()));
        let err = |g: &[f32]| g.iter().zip(&truth).map(|(a, b)| (f64::from(*a) - b).abs() / scale).fold(0.0, f64::max);
        let ref_err = err(&ref_grad);
        let ref_loss_err = (ref_loss - truth_loss).abs() / truth_loss;
        for simd in Simd::available() {
            let mut kernel = Kernel::with_simd(&model, 70, simd);
            let mut got = vec![0.0f32; model.params.len()];
            let loss = kernel.loss_and_grad(&model, &whole(&model, &input, &target), &mut got);
            let (grad_err, loss_err) = (err(&got), (loss - truth_loss).abs() / truth_loss);
            let at = format!("{simd:?}, {cfg:?}");
            assert!(
                grad_err <= (4.0 * ref_err).max(1e-5),
                "{at}: gradient {grad_err:e} vs the f32 reference's {ref_err:e}"
            );
            assert!(loss_err <= (4.0 * ref_loss_err).max(1e-5), "{at}: loss {loss_err:e} vs {ref_loss_err:e}");
        }
    }
}

#[test]
fn sequence_kernel_is_bit_identical_across_thread_counts() {
    // 259 sequences: chunks of 64; 61: chunks of 16 (small batches are cut finer)
    let cases = [
        (ModelConfig { positional: true, ..config(4, 2, 3, 2, 5) }, 4 * CHUNK_SEQ + 3),
        (ModelConfig { d_mlp: 8, ..config(8, 2, 4, 2, 6) }, 4 * CHUNK_SEQ + 3),
        (ModelConfig { d_mlp: 8, ..config(8, 2, 4, 2, 6) }, 61),
    ];
    for (cfg, batch) in cases {
        let (model, input, target) = random_case::<f32>(&cfg, batch, 7);
        for simd in Simd::available() {
            let one = step_bits(&model, &input, &target, simd, 1);
            assert_eq!(one, step_bits(&model, &input, &target, simd, 2), "{simd:?}, {cfg:?}");
            assert_eq!(one, step_bits(&model, &input, &target, simd, 3), "{simd:?}, {cfg:?}");
        }
    }
}

#[test]
fn the_two_fma_instruction_sets_give_bit_identical_steps() {
    // AVX-512 and AVX2 run the same operations in the same order, each
    // multiply-add rounded once: the docs promise identical results.
    let levels: Vec<Simd> = Simd::available().into_iter().filter(|s| *s != Simd::Portable).collect();
    for cfg in [
        ModelConfig::seed(),
        config(16, 2, 8, 1, 16),
        ModelConfig { positional: true, ..config(5, 3, 2, 2, 6) },
        ModelConfig { d_mlp: 8, ..config(8, 2, 4, 2, 6) },
    ] {
        let (model, input, target) = random_case::<f32>(&cfg, 150, 3);
        for pair in levels.windows(2) {
            let [a, b] = [pair[0], pair[1]].map(|simd| step_bits(&model, &input, &target, simd, 2));
            assert_eq!(a, b, "{pair:?}, {cfg:?}");
        }
    }
}

#[test]
fn a_batch_read_by_row_index_equals_the_same_rows_copied_out() {
    for cfg in [ModelConfig::seed(), config(4, 2, 3, 2, 5)] {
        let (model, input, target) = random_case::<f32>(&cfg, 300, 5);
        let rows: Vec<u32> = (0..200u32).map(|i| (i * 7919) % 300).collect();
        let w = cfg.n_ctx * 2;
        let pick = |xs: &[f32]| -> Vec<f32> { rows.iter().flat_map(|&r| xs[r as usize * w..][..w].to_vec()).collect() };
        let (inp, tgt) = (pick(&input), pick(&target));
        let mut kernel = Kernel::new(&model, 200);
        let (mut a, mut b) = (vec![0.0f32; model.params.len()], vec![0.0f32; model.params.len()]);
        let indexed = Batch { inputs: &input, targets: &target, rows: Some(&rows), width: w };
        let la = kernel.loss_and_grad(&model, &indexed, &mut a);
        let lb = kernel.loss_and_grad(&model, &whole(&model, &inp, &tgt), &mut b);
        assert_eq!(la.to_bits(), lb.to_bits());
        assert_eq!(a, b);
    }
}

#[test]
fn a_kernel_step_leaves_the_callers_floating_point_mode_alone() {
    // Chunks flush subnormal numbers to zero (kernel/denormal.rs); a batch
    // of one chunk runs on the calling thread, which must get its mode back.
    let subnormal_survives = || std::hint::black_box(f32::MIN_POSITIVE) * std::hint::black_box(0.5f32) > 0.0;
    assert!(subnormal_survives());
    for cfg in [ModelConfig::seed(), config(4, 2, 3, 2, 5)] {
        let (model, input, target) = random_case::<f32>(&cfg, 3, 1);
        let mut kernel = Kernel::new(&model, 3);
        let mut g = vec![0.0f32; model.params.len()];
        kernel.loss_and_grad(&model, &whole(&model, &input, &target), &mut g);
        assert!(subnormal_survives(), "{cfg:?}");
    }
}

#[test]
fn subnormal_gradients_are_flushed_to_zero_the_same_way_on_every_thread_count() {
    // Without biases, inputs of 1e-20 and targets of 0 make the activations
    // and errors ~1e-20 and the weight gradients (activation × error) ~1e-40:
    // subnormal in f32. The reference keeps them; the kernels flush them.
    let subnormal = |g: &f32| *g != 0.0 && g.abs() < f32::MIN_POSITIVE;
    for cfg in [ModelConfig::seed(), ModelConfig { d_mlp: 8, ..config(8, 2, 4, 2, 6) }] {
        let (mut model, input, target) = random_case::<f32>(&cfg, 4 * CHUNK_SEQ + 3, 11);
        let lay = model.layout.clone();
        let mlp_biases =
            lay.blocks.iter().filter_map(|b| b.mlp.as_ref()).flat_map(|m| [m.b_in.clone(), m.b_out.clone()]);
        for range in [lay.b_e, lay.b_u].into_iter().chain(lay.w_pos).chain(mlp_biases) {
            model.params[range].fill(0.0);
        }
        let input: Vec<f32> = input.iter().map(|x| x * 1e-20).collect();
        let target = vec![0.0f32; target.len()];
        let (_, want) = reference(&model, &input, &target);
        assert!(want.iter().any(subnormal), "{cfg:?}: the reference has subnormal gradients");
        for simd in Simd::available() {
            let one = step_bits(&model, &input, &target, simd, 1);
            assert!(!one.1.iter().map(|b| f32::from_bits(*b)).any(|g| subnormal(&g)), "{simd:?}, {cfg:?}");
            assert_eq!(one, step_bits(&model, &input, &target, simd, 2), "{simd:?}, {cfg:?}");
            assert_eq!(one, step_bits(&model, &input, &target, simd, 3), "{simd:?}, {cfg:?}");
        }
    }
}
