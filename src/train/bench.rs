//! Steady-state training speed (docs/cli.md): forward + backward + AdamW on one
//! batch, timed step by step after a warm-up, reported as the median.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::train::Trainer;
use crate::util::real::Dtype;

/// The batches every config is measured at.
pub const BATCHES: [usize; 3] = [256, 1024, 16384];

/// One row of `physlens bench --json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// `"blog"` or `"wide"`.
    pub config: String,
    /// Sequences per step.
    pub batch: usize,
    /// Always `"f32"` here.
    pub dtype: String,
    /// Worker threads available to the step.
    pub threads: usize,
    /// Median wall time of one step in microseconds.
    pub us_per_step: f64,
    /// `batch / (us_per_step · 1e-6)`.
    pub samples_per_sec: f64,
}

/// The benchmark config called `name`: `blog` (the seed model, context 1) or
/// `wide` (d_model 16, 2 heads of d_head 8, context 16, causal).
pub fn bench_config(name: &str, batch: usize) -> Option<Config> {
    let mut c = Config::default();
    match name {
        "blog" => {}
        "wide" => {
            c.model.d_model = 16;
            c.model.n_heads = 2;
            c.model.d_head = 8;
            c.data.context = 16;
        }
        _ => return None,
    }
    c.train.batch_size = batch;
    c.train.schedule = crate::config::Schedule::Constant;
    c.train.steps = u64::MAX;
    c.train.dtype = Dtype::F32;
    c.data.n_train = c.data.n_train.max(batch); // the default, 100 000, as the PyTorch side uses
    c.data.n_valid = 1;
    Some(c)
}

/// Times `config` for about `budget` after a warm-up of a fifth of it;
/// returns the median step time and the thread count.
pub fn time_steps(config: &Config, budget: Duration) -> (Duration, usize) {
    crate::kernel::on_workers(|| {
        let mut trainer = Trainer::<f32>::new(config);
        let warm = Instant::now();
        while warm.elapsed() < budget / 5 {
            trainer.step();
        }
        let mut times = vec![];
        let start = Instant::now();
        while start.elapsed() < budget || times.len() < 10 {
            let t = Instant::now();
            trainer.step();
            times.push(t.elapsed());
        }
        times.sort();
        (times[times.len() / 2], rayon::current_num_threads())
    })
}

/// Every (config, batch) row of docs/cli.md, each timed for about `budget`.
pub fn run_bench(budget: Duration) -> Vec<BenchRow> {
    let mut rows = vec![];
    for name in ["blog", "wide"] {
        for batch in BATCHES {
            let config = bench_config(name, batch).expect("known config");
            let (median, threads) = time_steps(&config, budget);
            let us = median.as_secs_f64() * 1e6;
            rows.push(BenchRow {
                config: name.into(),
                batch,
                dtype: "f32".into(),
                threads,
                us_per_step: us,
                samples_per_sec: batch as f64 / (us * 1e-6),
            });
        }
    }
    rows
}
