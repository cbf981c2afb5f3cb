//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use physlens::model::{AttnScale, Model, ModelConfig};
use physlens::util::real::Real;
use serde::Deserialize;

/// A tensor in a fixture file: shape and flat row-major data.
#[derive(Deserialize, Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// AdamW settings of a fixture.
#[derive(Deserialize, Clone, Debug)]
pub struct AdamWFixture {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub steps: usize,
}

/// One file written by `tools/reference/reference.py`.
#[derive(Deserialize, Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub dtype: String,
    pub config: ModelConfig,
    pub params: BTreeMap<String, Tensor>,
    pub inputs: Tensor,
    pub targets: Tensor,
    pub outputs: Tensor,
    pub loss: f64,
    pub grads: BTreeMap<String, Tensor>,
    pub cache: BTreeMap<String, Tensor>,
    pub adamw: AdamWFixture,
    pub losses: Vec<f64>,
    pub params_after: BTreeMap<String, Tensor>,
}

pub fn load_fixture(file: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A model with the named tensors copied in (every tensor of the layout must be present).
pub fn model_from<F: Real>(cfg: &ModelConfig, tensors: &BTreeMap<String, Tensor>) -> Model<F> {
    let mut model = Model::<F>::zeros(cfg);
    let infos = model.layout.tensors(cfg);
    assert_eq!(infos.len(), tensors.len(), "tensor count");
    for t in infos {
        let src = &tensors[&t.name];
        assert_eq!(src.shape, t.shape, "{}", t.name);
        for (w, x) in model.params[t.range].iter_mut().zip(&src.data) {
            *w = F::of(*x);
        }
    }
    model
}

/// `max |a − b| / max(1, |b|)`.
pub fn max_rel_diff<F: Real>(a: &[F], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x.f64() - y).abs() / y.abs().max(1.0)).fold(0.0, f64::max)
}

pub fn to<F: Real>(xs: &[f64]) -> Vec<F> {
    xs.iter().map(|x| F::of(*x)).collect()
}

/// Small configs that cover every switch of the model family.
pub fn config(d_model: usize, n_heads: usize, d_head: usize, n_layers: usize, n_ctx: usize) -> ModelConfig {
    ModelConfig {
        d_model,
        n_heads,
        d_head,
        n_layers,
        d_mlp: 0,
        act: physlens::model::Act::Gelu,
        n_ctx,
        attn_scale: AttnScale::DModel,
        causal: true,
        positional: false,
        loss_positions: None,
    }
}

/// A 2×2 matrix, row-major, for tests that must not lean on `physlens::util::mat2`.
pub type M = [[f64; 2]; 2];

/// `a b`, written independently of the crate.
pub fn mm(a: &M, b: &M) -> M {
    let mut c = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    c
}

/// `a v`, written independently of the crate.
pub fn mv(a: &M, v: [f64; 2]) -> [f64; 2] {
    [a[0][0] * v[0] + a[0][1] * v[1], a[1][0] * v[0] + a[1][1] * v[1]]
}

/// Runs the `physlens` binary with `args` in `cwd`.
pub fn physlens(args: &[&str], cwd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_physlens"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the binary runs")
}

/// What a finished command wrote to stderr.
pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What a finished command wrote to stdout.
pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The keys docs/outputs.md requires in `physlens interpret --json`.
pub const STABLE_INTERPRET_KEYS: [&str; 11] = [
    "effective_map",
    "offset",
    "eigenvalues",
    "learned",
    "best_fit",
    "truth",
    "methods",
    "nearest_method",
    "margin",
    "identifiable",
    "error_vs_exact",
];

/// The key and message of a config error (panics on anything else).
pub fn config_error(text: &str) -> (String, String) {
    match physlens::Config::parse(text, "test.toml") {
        Err(physlens::Error::Config { file, key, message }) => {
            assert_eq!(file, "test.toml");
            (key, message)
        }
        other => panic!("expected a config error for {text:?}, got {other:?}"),
    }
}

/// Asserts that `text` is refused naming `key`, with `needle` in the message.
pub fn assert_config_refused(text: &str, key: &str, needle: &str) {
    let (k, message) = config_error(text);
    assert_eq!(k, key, "{text}: {message}");
    assert!(message.contains(needle), "{text}: {message}");
}
