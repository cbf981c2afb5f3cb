//! `physlens export --transformer-lens` and `model::export`
//! (docs/transformer-lens.md): the exported state dict has exactly
//! TransformerLens's keys and shapes, `b_E` folded into `W_pos`, zero
//! attention biases and the right config; the CLI writes it and refuses bad
//! input with exit code 2. (The numerical round trip through TransformerLens
//! itself is `python/tests/test_transformer_lens.py`.)

use std::collections::BTreeMap;
use std::path::Path;

use physlens::System;
use physlens::model::checkpoint;
use physlens::model::export::{
    B_E_KEY, EXPORT_FORMAT, TL_CONFIG_KEY, TlExport, save_transformer_lens, to_transformer_lens,
    transformer_lens_config,
};
use physlens::model::{Act, Activations, AttnScale, Model, ModelConfig};
use physlens::util::real::Real;
use physlens::util::rng::{Rng, Stream};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::common::{config, physlens, stderr, stdout};

/// The configs the tests cover: the seed; 2 layers × 2 heads, context 8,
/// positional; non-causal, context 6, `d_head` scale; an MLP model (relu).
fn configs() -> Vec<ModelConfig> {
    let deep = ModelConfig { positional: true, ..config(8, 2, 4, 2, 8) };
    let non_causal = ModelConfig { causal: false, attn_scale: AttnScale::DHead, ..config(6, 2, 3, 1, 6) };
    let mlp = ModelConfig { d_mlp: 12, act: Act::Relu, positional: true, ..config(6, 2, 3, 2, 4) };
    vec![ModelConfig::seed(), deep, non_causal, mlp]
}

/// A model with every weight random, biases included (init leaves them 0).
fn random_model<F: Real>(cfg: &ModelConfig, seed: u64) -> Model<F> {
    let mut model = Model::<F>::init(cfg, &mut Rng::new(seed, Stream::Init));
    let mut rng = Rng::new(seed + 1, Stream::Init);
    for t in model.layout.tensors(cfg) {
        if t.shape.len() == 1 {
            model.params[t.range].iter_mut().for_each(|w| *w = F::of(rng.normal()));
        }
    }
    model
}

/// The names and shapes TransformerLens's `convert_tl_checkpoint` needs for `cfg`.
fn expected_layout(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, h, k, t, m) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.n_ctx, cfg.d_mlp);
    let mut out = vec![("embed.W_E".to_string(), vec![2, d]), ("pos_embed.W_pos".to_string(), vec![t, d])];
    for l in 0..cfg.n_layers {
        for w in ["W_Q", "W_K", "W_V"] {
            out.push((format!("blocks.{l}.attn.{w}"), vec![h, d, k]));
        }
        out.push((format!("blocks.{l}.attn.W_O"), vec![h, k, d]));
        for b in ["b_Q", "b_K", "b_V"] {
            out.push((format!("blocks.{l}.attn.{b}"), vec![h, k]));
        }
        out.push((format!("blocks.{l}.attn.b_O"), vec![d]));
        if m > 0 {
            out.push((format!("blocks.{l}.mlp.W_in"), vec![d, m]));
            out.push((format!("blocks.{l}.mlp.b_in"), vec![m]));
            out.push((format!("blocks.{l}.mlp.W_out"), vec![m, d]));
            out.push((format!("blocks.{l}.mlp.b_out"), vec![d]));
        }
    }
    out.push(("unembed.W_U".to_string(), vec![d, 2]));
    out.push(("unembed.b_U".to_string(), vec![2]));
    out
}

fn data<'a, F>(export: &'a TlExport<F>, name: &str) -> &'a [F] {
    &export.tensor(name).unwrap_or_else(|| panic!("no tensor `{name}`")).data
}

#[test]
fn the_export_has_exactly_transformer_lens_keys_and_shapes() {
    for cfg in configs() {
        let export = to_transformer_lens(&random_model::<f64>(&cfg, 1));
        let got: Vec<(String, Vec<usize>)> = export.tensors.iter().map(|t| (t.name.clone(), t.shape.clone())).collect();
        assert_eq!(got, expected_layout(&cfg), "{cfg:?}");
        for t in &export.tensors {
            assert_eq!(t.data.len(), t.shape.iter().product::<usize>(), "{}", t.name);
        }
        assert!(export.tensor("embed.b_E").is_none(), "b_E is folded away");
    }
}

#[test]
fn b_e_is_folded_into_w_pos_and_the_attention_biases_are_zero() {
    for cfg in configs() {
        let model = random_model::<f64>(&cfg, 2);
        let export = to_transformer_lens(&model);
        let (d, t) = (cfg.d_model, cfg.n_ctx);
        let b_e = model.tensor("embed.b_E").unwrap();
        let w_pos = data(&export, "pos_embed.W_pos");
        for pos in 0..t {
            for j in 0..d {
                let own = model.tensor("pos_embed.W_pos").map_or(0.0, |w| w[pos * d + j]);
                assert_eq!(w_pos[pos * d + j], own + b_e[j], "W_pos[{pos}, {j}] of {cfg:?}");
            }
        }
        for l in 0..cfg.n_layers {
            for b in ["b_Q", "b_K", "b_V", "b_O"] {
                assert!(data(&export, &format!("blocks.{l}.attn.{b}")).iter().all(|x| *x == 0.0), "{b}");
            }
        }
        // Every other tensor is physlens's own, bit for bit.
        for info in model.layout.tensors(&cfg) {
            if !matches!(info.name.as_str(), "embed.b_E" | "pos_embed.W_pos") {
                assert_eq!(data(&export, &info.name), &model.params[info.range], "{}", info.name);
            }
        }
    }
}

/// TransformerLens's residual entering layer 0 is `s W_E + W_pos'`; it must be
/// physlens's `resid_pre` exactly (the rest of the forward pass uses the same
/// tensors).
#[test]
fn inputs_embeds_plus_folded_w_pos_is_physlens_resid_pre() {
    for cfg in configs() {
        let model = random_model::<f64>(&cfg, 3);
        let export = to_transformer_lens(&model);
        let (d, t, batch) = (cfg.d_model, cfg.n_ctx, 3);
        let mut rng = Rng::new(9, Stream::Init);
        let input: Vec<f64> = (0..batch * t * 2).map(|_| rng.normal()).collect();
        let mut acts = Activations::new(&cfg, batch);
        model.forward(&input, &mut acts);
        let (w_e, w_pos) = (data(&export, "embed.W_E"), data(&export, "pos_embed.W_pos"));
        for n in 0..batch * t {
            for j in 0..d {
                let embeds = input[2 * n] * w_e[j] + input[2 * n + 1] * w_e[d + j];
                let tl = embeds + w_pos[(n % t) * d + j];
                let physlens = acts.resid[0][n * d + j];
                assert!((tl - physlens).abs() <= 1e-15 * physlens.abs().max(1.0), "{tl} vs {physlens} ({cfg:?})");
            }
        }
    }
}

#[test]
fn the_config_names_every_transformer_bridge_kwarg() {
    let [seed, deep, non_causal, mlp] = configs().try_into().unwrap();
    let c = transformer_lens_config(&seed);
    assert_eq!(c["d_model"], 2);
    assert_eq!(c["d_head"], 2);
    assert_eq!(c["n_heads"], 1);
    assert_eq!(c["n_layers"], 1);
    assert_eq!(c["n_ctx"], 1);
    assert_eq!(c["d_vocab"], 2);
    assert_eq!(c["d_vocab_out"], 2);
    assert_eq!(c["d_mlp"], Value::Null);
    assert_eq!(c["attn_only"], true);
    assert_eq!(c["normalization_type"], Value::Null);
    assert_eq!(c["positional_embedding_type"], "standard");
    assert_eq!(c["use_attn_scale"], true);
    assert_eq!(c["attn_scale"], 2f64.sqrt());
    assert_eq!(c["attention_dir"], "causal");
    assert_eq!(c["architecture"], "TransformerLensNative");
    assert_eq!(c["act_fn"], "gelu");

    let c = transformer_lens_config(&deep);
    assert_eq!((c["n_layers"].clone(), c["n_heads"].clone(), c["n_ctx"].clone()), (2.into(), 2.into(), 8.into()));
    assert_eq!(c["attn_scale"], 8f64.sqrt(), "√d_model");

    let c = transformer_lens_config(&non_causal);
    assert_eq!(c["attn_scale"], 3f64.sqrt(), "√d_head");
    assert_eq!(c["attention_dir"], "bidirectional");

    let c = transformer_lens_config(&mlp);
    assert_eq!(c["d_mlp"], 12);
    assert_eq!(c["attn_only"], false);
    assert_eq!(c["act_fn"], "relu");
    assert_eq!(transformer_lens_config(&ModelConfig { act: Act::Gelu, ..mlp })["act_fn"], "gelu", "exact erf gelu");
}

/// TransformerLens refuses `attn_scale = 1` with `d_head > 1`: the scale
/// moves into `W_Q`.
#[test]
fn a_unit_attention_scale_moves_into_w_q() {
    let cfg = config(1, 2, 4, 1, 3);
    let model = random_model::<f64>(&cfg, 4);
    let export = to_transformer_lens(&model);
    assert_eq!(export.config["attn_scale"], 2.0, "√d_head");
    let w_q: Vec<f64> = model.tensor("blocks.0.attn.W_Q").unwrap().iter().map(|w| 2.0 * w).collect();
    assert_eq!(data(&export, "blocks.0.attn.W_Q"), w_q.as_slice());
    // d_head = 1: TL accepts attn_scale = 1, nothing moves.
    let cfg = config(1, 2, 1, 1, 3);
    let model = random_model::<f64>(&cfg, 4);
    let export = to_transformer_lens(&model);
    assert_eq!(export.config["attn_scale"], 1.0);
    assert_eq!(data(&export, "blocks.0.attn.W_Q"), model.tensor("blocks.0.attn.W_Q").unwrap());
}

#[test]
fn saving_refuses_non_finite_values_and_reserved_keys() {
    let cfg = ModelConfig::seed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tl.safetensors");
    let mut model = random_model::<f32>(&cfg, 5);
    model.params[3] = f32::NAN;
    let err = save_transformer_lens(&path, &to_transformer_lens(&model), &cfg, &BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("tl.safetensors") && err.to_string().contains("non-finite"), "{err}");
    assert!(!path.exists());
    let model = random_model::<f32>(&cfg, 5);
    let extra = BTreeMap::from([(TL_CONFIG_KEY.to_string(), "{}".to_string())]);
    let err = save_transformer_lens(&path, &to_transformer_lens(&model), &cfg, &extra).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

// ---------------------------------------------------------------- CLI

/// Saves `model` as a checkpoint `name` in `dir`.
fn save<F: Real>(dir: &Path, name: &str, model: &Model<F>) -> std::path::PathBuf {
    let path = dir.join(name);
    checkpoint::save(&path, model, System::new(2.0, 0.1, 0.1), &BTreeMap::new()).unwrap();
    path
}

/// One tensor of a file: dtype name, shape, values as f64.
type Stored = (String, Vec<usize>, Vec<f64>);

/// The tensors and metadata of the safetensors file at `path`.
fn read(path: &Path) -> (BTreeMap<String, Stored>, BTreeMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta: BTreeMap<String, String> = header.metadata().clone().unwrap().into_iter().collect();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => {
                    view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64).collect()
                }
                safetensors::Dtype::F64 => {
                    view.data().chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap())).collect()
                }
                other => panic!("dtype {other}"),
            };
            (name, (view.dtype().to_string(), view.shape().to_vec(), values))
        })
        .collect();
    (tensors, meta)
}

fn round_trip<F: Real>(cfg: &ModelConfig, dtype: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model = random_model::<F>(cfg, 6);
    let ckpt = save(dir.path(), "model.safetensors", &model);
    let o = physlens(
        &["export", "--transformer-lens", "--model", "model.safetensors", "--out", "tl.safetensors"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("tl.safetensors"), "{}", stdout(&o));
    let (tensors, meta) = read(&dir.path().join("tl.safetensors"));
    let export = to_transformer_lens(&model);
    assert_eq!(tensors.len(), export.tensors.len());
    for t in &export.tensors {
        let (got_dtype, shape, values) = &tensors[&t.name];
        assert_eq!(got_dtype, dtype, "{}: the checkpoint's dtype is kept", t.name);
        assert_eq!(shape, &t.shape, "{}", t.name);
        assert_eq!(values, &t.data.iter().map(|x| x.f64()).collect::<Vec<_>>(), "{}", t.name);
    }
    assert_eq!(meta["format"], EXPORT_FORMAT);
    let tl: Value = serde_json::from_str(&meta[TL_CONFIG_KEY]).unwrap();
    assert_eq!(tl, transformer_lens_config(cfg));
    let source = checkpoint::load(&ckpt).unwrap();
    assert_eq!(meta["physlens_system"], source.metadata["system"]);
    let b_e: Vec<f64> = serde_json::from_str(&meta[B_E_KEY]).unwrap();
    assert_eq!(b_e, model.tensor("embed.b_E").unwrap().iter().map(|x| x.f64()).collect::<Vec<_>>(), "b_E exactly");
    let physlens_model: ModelConfig = serde_json::from_str(&meta["physlens_model"]).unwrap();
    assert_eq!(&physlens_model, cfg);
    // Deterministic: the same checkpoint gives the same bytes.
    let o = physlens(
        &["export", "--transformer-lens", "--model", "model.safetensors", "--out", "again.safetensors"],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(dir.path().join("tl.safetensors")).unwrap(),
        std::fs::read(dir.path().join("again.safetensors")).unwrap()
    );
}

#[test]
fn cli_export_round_trips_f32_and_f64() {
    let [seed, deep, non_causal, mlp] = configs().try_into().unwrap();
    round_trip::<f32>(&seed, "F32");
    round_trip::<f64>(&deep, "F64");
    round_trip::<f64>(&non_causal, "F64");
    round_trip::<f32>(&mlp, "F32");
}

#[test]
fn cli_export_refuses_bad_input_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = save(dir.path(), "model.safetensors", &random_model::<f32>(&ModelConfig::seed(), 7));
    let before = std::fs::read(&ckpt).unwrap();
    let run = |args: &[&str]| physlens(&[&["export"], args].concat(), dir.path());

    // No format: the formats that exist are named.
    let o = run(&["--model", "model.safetensors", "--out", "tl.safetensors"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--transformer-lens"), "{}", stderr(&o));
    assert!(!dir.path().join("tl.safetensors").exists());

    // A missing or malformed checkpoint is named.
    let o = run(&["--transformer-lens", "--model", "missing.safetensors", "--out", "tl.safetensors"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.safetensors"), "{}", stderr(&o));
    std::fs::write(dir.path().join("junk.safetensors"), b"not a safetensors file at all").unwrap();
    let o = run(&["--transformer-lens", "--model", "junk.safetensors", "--out", "tl.safetensors"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.safetensors"), "{}", stderr(&o));

    // The output is a folder, or the checkpoint itself.
    std::fs::create_dir(dir.path().join("folder")).unwrap();
    let o = run(&["--transformer-lens", "--model", "model.safetensors", "--out", "folder"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("folder"), "{}", stderr(&o));
    let o = run(&["--transformer-lens", "--model", "model.safetensors", "--out", "./model.safetensors"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&ckpt).unwrap(), before, "the checkpoint is untouched");

    // An exported file is not a physlens checkpoint: interpret refuses it, naming it.
    let o = run(&["--transformer-lens", "--model", "model.safetensors", "--out", "tl.safetensors"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = physlens(&["interpret", "--model", "tl.safetensors"], dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("tl.safetensors"), "{}", stderr(&o));
}
