//! Steady-state training speed (docs/cli.md): forward + backward + AdamW on one
//! batch, timed step by step after a warm-up, reported as the median.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::model::Act;
use crate::train::Trainer;
use crate::util::error::{Error, Result};
use crate::util::real::Dtype;

/// The benchmark configs, in the order they are run.
pub const CONFIGS: [&str; 4] = ["blog", "wide", "deep", "deep_mlp"];

/// The batches `config` is measured at: 256, 1024 and 16384 for the small
/// models, 64, 256 and 1024 for `deep` and `deep_mlp`.
pub fn batches(config: &str) -> [usize; 3] {
    if config.starts_with("deep") { [64, 256, 1024] } else { [256, 1024, 16384] }
}

/// One row of `physlens bench --json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// `"blog"`, `"wide"`, `"deep"` or `"deep_mlp"`.
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

/// The benchmark config called `name`: `blog` (the seed model, context 1),
/// `wide` (d_model 16, 2 heads of d_head 8, context 16, causal), `deep`
/// (8 layers, d_model 32, 2 heads of d_head 16, context 40, causal,
/// positional) or `deep_mlp` (`deep` with MLP blocks of width 128, gelu).
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
        "deep" | "deep_mlp" => {
            c.model.d_model = 32;
            c.model.n_heads = 2;
            c.model.d_head = 16;
            c.model.n_layers = 8;
            c.model.positional = true;
            c.data.context = 40;
            if name == "deep_mlp" {
                c.model.d_mlp = 128;
                c.model.act = Act::Gelu;
            }
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

/// The (config, batch) rows of docs/cli.md among `configs` (all when empty)
/// and `only_batches` (all when empty), each timed for about `budget`. An
/// unknown config, or filters that leave no row, are an [`Error::Option`].
pub fn run_bench(budget: Duration, configs: &[String], only_batches: &[usize]) -> Result<Vec<BenchRow>> {
    let option = |name: &str, message: String| Error::Option { name: name.into(), message };
    if let Some(bad) = configs.iter().find(|c| !CONFIGS.contains(&c.as_str())) {
        return Err(option("configs", format!("unknown config `{bad}`; the configs are {}", CONFIGS.join(", "))));
    }
    let chosen: Vec<(&str, usize)> = CONFIGS
        .into_iter()
        .filter(|name| configs.is_empty() || configs.iter().any(|c| c == name))
        .flat_map(|name| batches(name).map(|batch| (name, batch)))
        .filter(|(_, batch)| only_batches.is_empty() || only_batches.contains(batch))
        .collect();
    if chosen.is_empty() {
        let listed = CONFIGS.map(|name| format!("{name}: {:?}", batches(name))).join("; ");
        return Err(option("batches", format!("no row has these batches; the rows are {listed}")));
    }
    let mut rows = vec![];
    for (name, batch) in chosen {
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
    Ok(rows)
}
