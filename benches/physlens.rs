//! `cargo bench`: the hot paths of training and analysis of small models.
//! Speed lives here and in `physlens bench`, never in tests.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use physlens::System;
use physlens::eval::{Start, rollout};
use physlens::interpret::map::interpret_affine;
use physlens::model::{Activations, Model, ModelConfig};
use physlens::train::Trainer;
use physlens::train::bench::bench_config;
use physlens::train::on_workers;
use physlens::util::rng::{Rng, Stream};

/// One training step (forward + backward + AdamW) of the docs/cli.md configs.
fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    for (name, batch) in [("blog", 256), ("blog", 16384), ("wide", 256)] {
        let config = bench_config(name, batch).unwrap();
        let mut trainer = Trainer::<f32>::new(&config);
        group.throughput(Throughput::Elements(batch as u64));
        // Steps run on a pool worker, as in `physlens train` and `physlens bench`.
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter_custom(|iters| {
                on_workers(|| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(trainer.step());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// The reference forward pass with the full named cache.
fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("forward");
    for (name, batch) in [("blog", 4096), ("wide", 256)] {
        let config = bench_config(name, batch).unwrap();
        let cfg = config.model_config();
        let model = Model::<f32>::init(&cfg, &mut Rng::new(0, Stream::Init));
        let mut rng = Rng::new(0, Stream::Train);
        let input: Vec<f32> = (0..batch * cfg.n_ctx * 2).map(|_| rng.normal() as f32).collect();
        let mut acts = Activations::new(&cfg, batch);
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(name, batch), |b| b.iter(|| model.forward(black_box(&input), &mut acts)));
    }
    group.finish();
}

/// 64 rollouts of 200 steps of the seed model.
fn rollouts(c: &mut Criterion) {
    let model = Model::<f32>::init(&ModelConfig::seed(), &mut Rng::new(0, Stream::Init));
    let osc = physlens::physics::Oscillator { omega0: 2.0, gamma: 0.1 };
    let states: Vec<[f64; 2]> = (0..64).map(|i| [0.1 * i as f64, 0.3]).collect();
    let starts = Start::all(System::new(osc.omega0, osc.gamma, 0.1), &states);
    c.bench_function("rollout/seed 64x200", |b| b.iter(|| rollout(&model, black_box(&starts), 200)));
}

/// The interpretation of a context-1 model: map, readouts, best fit, rule distances.
fn interpret(c: &mut Criterion) {
    let model = Model::<f64>::init(&ModelConfig::seed(), &mut Rng::new(0, Stream::Init));
    let system = System::new(2.0, 0.1, 0.1);
    c.bench_function("interpret/seed affine", |b| b.iter(|| interpret_affine(black_box(&model), &system)));
}

criterion_group!(benches, step, forward, rollouts, interpret);
criterion_main!(benches);
