//! Checkpoint save/load (docs/model-and-checkpoint.md): round trips, files written by hand with the
//! `safetensors` crate, one test per class of bad input, and byte mutations
//! that must never panic.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use physlens::System;
use physlens::model::checkpoint::{self, AnyModel, Checkpoint};
use physlens::model::{AttnScale, Layout, Model, ModelConfig};
use physlens::util::error::Error;
use physlens::util::real::{Dtype, Real};
use physlens::util::rng::{Rng, Stream};
use safetensors::Dtype as StDtype;
use safetensors::tensor::TensorView;

// ---------------------------------------------------------------- helpers

/// Positional embeddings, two layers, two heads, d_head ≠ d_model.
fn wide_cfg() -> ModelConfig {
    ModelConfig {
        d_model: 4,
        n_heads: 2,
        d_head: 3,
        n_layers: 2,
        d_mlp: 0,
        act: physlens::model::Act::Gelu,
        n_ctx: 3,
        attn_scale: AttnScale::DHead,
        causal: false,
        positional: true,
        loss_positions: None,
    }
}

/// A model whose every weight (biases included) is a distinct non-trivial value.
fn model<F: Real>(cfg: &ModelConfig) -> Model<F> {
    let mut m = Model::<F>::init(cfg, &mut Rng::new(7, Stream::Init));
    for (i, w) in m.params.iter_mut().enumerate() {
        *w += F::of(1e-3 * (i as f64 + 0.1).sin() / 3.0);
    }
    m
}

fn system() -> System {
    System::new(2.0, 0.1, 0.1)
}

fn extra() -> BTreeMap<String, String> {
    BTreeMap::from([("step".to_string(), "40000".to_string()), ("note".to_string(), "ünïcode, \"quotes\"".to_string())])
}

/// Every weight as f64 bits (widening is exact, so equal bits ⇔ equal weights).
fn bits(m: &AnyModel) -> Vec<u64> {
    m.to_f64().params.iter().map(|w| w.to_bits()).collect()
}

/// One tensor of a hand-made file.
#[derive(Clone)]
struct Raw {
    name: String,
    dtype: StDtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn f32_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| (*v as f32).to_le_bytes()).collect()
}

fn f64_bytes(values: &[f64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The docs/model-and-checkpoint.md tensors of `cfg` as F32 (or F64) with value `0.01·(flat index + 1)`.
fn raw_tensors(cfg: &ModelConfig, dtype: StDtype) -> Vec<Raw> {
    Layout::new(cfg)
        .tensors(cfg)
        .into_iter()
        .map(|t| {
            let values: Vec<f64> = t.range.clone().map(|i| 0.01 * (i + 1) as f64).collect();
            let data = if dtype == StDtype::F64 { f64_bytes(&values) } else { f32_bytes(&values) };
            Raw { name: t.name, dtype, shape: t.shape, data }
        })
        .collect()
}

fn seed_model_json() -> String {
    // As Python's json.dumps writes it (spaces after separators).
    r#"{"d_model": 2, "n_heads": 1, "d_head": 2, "n_layers": 1, "n_ctx": 1, "attn_scale": "d_model", "causal": true, "positional": false}"#.to_string()
}

fn seed_system_json() -> String {
    r#"{"kind": "damped_oscillator", "omega0": 2.0, "gamma": 0.1, "dt": 0.1}"#.to_string()
}

fn meta(model: &str, system: &str) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), "physlens/1".to_string()),
        ("model".to_string(), model.to_string()),
        ("system".to_string(), system.to_string()),
    ])
}

fn seed_meta() -> HashMap<String, String> {
    meta(&seed_model_json(), &seed_system_json())
}

/// Serialises with the `safetensors` crate's own API.
fn raw_bytes(tensors: &[Raw], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|t| (t.name.clone(), TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap())).collect();
    safetensors::serialize(views, metadata).unwrap()
}

fn write_raw(path: &Path, tensors: &[Raw], metadata: Option<HashMap<String, String>>) {
    fs::write(path, raw_bytes(tensors, metadata)).unwrap();
}

/// The message of the `Error::Checkpoint` that loading `path` must give.
fn load_err(path: &Path) -> String {
    match checkpoint::load(path) {
        Err(Error::Checkpoint { file, message }) => {
            assert_eq!(file, path);
            message
        }
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

/// Writes a seed-layout F32 file with `metadata`, loads it, returns the error message.
fn err_with_meta(metadata: Option<HashMap<String, String>>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_raw(&path, &raw_tensors(&ModelConfig::seed(), StDtype::F32), metadata);
    load_err(&path)
}

/// Writes `tensors` with the seed metadata, loads, returns the error message.
fn err_with_tensors(tensors: &[Raw]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_raw(&path, tensors, Some(seed_meta()));
    load_err(&path)
}

#[track_caller]
fn assert_mentions(message: &str, needles: &[&str]) {
    for n in needles {
        assert!(message.contains(n), "message does not mention {n:?}:\n{message}");
    }
}

/// A loaded checkpoint that passed must hold only sensible things.
fn assert_sane(c: &Checkpoint) {
    assert!(c.model.to_f64().params.iter().all(|w| w.is_finite()));
    assert!(c.system.invalid().is_none(), "{:?}", c.system);
    assert!(c.metadata["system"].contains("\"kind\":\"damped_oscillator\""));
    let cfg = c.model.cfg();
    assert!(cfg.d_model >= 1 && cfg.n_heads >= 1 && cfg.d_head >= 1 && cfg.n_layers >= 1 && cfg.n_ctx >= 1);
}

// ---------------------------------------------------------------- round trips

fn round_trip<F: Real>(cfg: &ModelConfig) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("model.safetensors");
    let m = model::<F>(cfg);
    checkpoint::save(&path, &m, system(), &extra()).unwrap();
    let c = checkpoint::load(&path).unwrap();

    assert_eq!(c.model.dtype(), F::DTYPE);
    assert_eq!(c.model.cfg(), cfg);
    let want: Vec<u64> = m.params.iter().map(|w| w.f64().to_bits()).collect();
    assert_eq!(bits(&c.model), want);
    assert_eq!(c.model.to_f64().layout, m.layout);
    assert_eq!(c.system.fixed(), Some(system()));
    for (k, v) in extra() {
        assert_eq!(c.metadata.get(&k), Some(&v), "extra key {k}");
    }
    assert_eq!(c.metadata["format"], "physlens/1");
    assert_eq!(serde_json::from_str::<ModelConfig>(&c.metadata["model"]).unwrap(), *cfg);
    assert_eq!(c.metadata.len(), 3 + extra().len());
    // Only the checkpoint in the folder: no temporary left behind.
    assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    // The model JSON uses exactly the documented keys (docs/model-and-checkpoint.md).
    let json: serde_json::Value = serde_json::from_str(&c.metadata["model"]).unwrap();
    let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["act", "attn_scale", "causal", "d_head", "d_mlp", "d_model", "n_ctx", "n_heads", "n_layers", "positional"]
    );

    // Saving what was loaded gives the same bytes.
    let again = dir.path().join("again.safetensors");
    match &c.model {
        AnyModel::F32(m2) => checkpoint::save(&again, m2, c.system, &extra()).unwrap(),
        AnyModel::F64(m2) => checkpoint::save(&again, m2, c.system, &extra()).unwrap(),
    }
    assert_eq!(fs::read(&again).unwrap(), fs::read(&path).unwrap());
}

#[test]
fn round_trip_seed_f32_is_bit_exact() {
    round_trip::<f32>(&ModelConfig::seed());
}

#[test]
fn round_trip_seed_f64_is_bit_exact() {
    round_trip::<f64>(&ModelConfig::seed());
}

#[test]
fn round_trip_positional_two_layers_two_heads_f32_is_bit_exact() {
    round_trip::<f32>(&wide_cfg());
}

#[test]
fn round_trip_positional_two_layers_two_heads_f64_is_bit_exact() {
    round_trip::<f64>(&wide_cfg());
}

#[test]
fn round_trip_with_mlp_blocks_is_bit_exact_and_names_them_as_transformer_lens() {
    let cfg = ModelConfig { d_mlp: 6, act: physlens::model::Act::Relu, ..wide_cfg() };
    round_trip::<f32>(&cfg);
    round_trip::<f64>(&cfg);
    let names: Vec<String> =
        Layout::new(&cfg).tensors(&cfg).into_iter().map(|t| format!("{} {:?}", t.name, t.shape)).collect();
    let block1: Vec<&str> = names.iter().map(String::as_str).filter(|n| n.starts_with("blocks.1.")).collect();
    assert_eq!(
        block1,
        [
            "blocks.1.attn.W_Q [2, 4, 3]",
            "blocks.1.attn.W_K [2, 4, 3]",
            "blocks.1.attn.W_V [2, 4, 3]",
            "blocks.1.attn.W_O [2, 3, 4]",
            "blocks.1.mlp.W_in [4, 6]",
            "blocks.1.mlp.b_in [6]",
            "blocks.1.mlp.W_out [6, 4]",
            "blocks.1.mlp.b_out [4]",
        ]
    );
}

#[test]
fn round_trip_keeps_awkward_system_values_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let sys = System::new(std::f64::consts::PI, 0.0, 1.0 / 3.0);
    checkpoint::save(&path, &model::<f32>(&ModelConfig::seed()), sys, &BTreeMap::new()).unwrap();
    let c = checkpoint::load(&path).unwrap();
    let back = c.system.fixed().unwrap();
    assert_eq!(back.omega0.to_bits(), sys.omega0.to_bits());
    assert_eq!(back.dt.to_bits(), sys.dt.to_bits());
    assert_eq!(back.oscillator().omega0, std::f64::consts::PI);
    assert_eq!(back.oscillator().gamma, 0.0);
}

#[test]
fn any_model_to_f64_widens_exactly() {
    let m = model::<f32>(&wide_cfg());
    let any = AnyModel::F32(m.clone());
    assert_eq!(any.dtype(), Dtype::F32);
    assert_eq!(any.cfg(), &wide_cfg());
    let wide = any.to_f64();
    assert!(wide.params.iter().zip(&m.params).all(|(a, b)| *a == *b as f64 && *a as f32 == *b));
    let m64 = model::<f64>(&wide_cfg());
    assert_eq!(AnyModel::F64(m64.clone()).to_f64(), m64);
}

#[test]
fn save_is_byte_for_byte_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.safetensors"), dir.path().join("b.safetensors"));
    let m = model::<f64>(&wide_cfg());
    checkpoint::save(&a, &m, system(), &extra()).unwrap();
    checkpoint::save(&b, &m, system(), &extra()).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
}

#[test]
fn saved_file_opens_with_the_safetensors_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let cfg = wide_cfg();
    let m = model::<f32>(&cfg);
    checkpoint::save(&path, &m, system(), &extra()).unwrap();
    let bytes = fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(header_len % 8, 0, "data must start 8-byte aligned");
    let tensors = m.layout.tensors(&cfg);
    assert_eq!(st.len(), tensors.len());
    for t in tensors {
        let view = st.tensor(&t.name).unwrap();
        assert_eq!(view.dtype(), StDtype::F32);
        assert_eq!(view.shape(), t.shape.as_slice());
        assert_eq!(view.data(), f32_bytes(&m.params[t.range].iter().map(|w| *w as f64).collect::<Vec<_>>()));
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = header.metadata().as_ref().unwrap();
    assert_eq!(metadata["format"], "physlens/1");
    assert_eq!(metadata["step"], "40000");
    let system: System = serde_json::from_str(&metadata["system"]).unwrap();
    assert_eq!(system, self::system());
}

// ---------------------------------------------------------------- files written by hand

#[test]
fn hand_written_f64_file_loads_with_the_expected_map() {
    // Row convention: R = I + W_V W_O = [[1, -0.2], [0.1, 1]], so the column
    // map is M = Rᵀ = [[1, 0.1], [-0.2, 1]], offset c = b_U.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("by_hand.safetensors");
    let t = |name: &str, shape: Vec<usize>, v: &[f64]| Raw {
        name: name.to_string(),
        dtype: StDtype::F64,
        shape,
        data: f64_bytes(v),
    };
    // Deliberately not in layout order.
    let tensors = vec![
        t("unembed.b_U", vec![2], &[0.5, -0.25]),
        t("blocks.0.attn.W_O", vec![1, 2, 2], &[0.0, -0.2, 0.1, 0.0]),
        t("embed.W_E", vec![2, 2], &[1.0, 0.0, 0.0, 1.0]),
        t("embed.b_E", vec![2], &[0.0, 0.0]),
        t("blocks.0.attn.W_Q", vec![1, 2, 2], &[0.3, 0.0, 0.0, 0.3]),
        t("blocks.0.attn.W_K", vec![1, 2, 2], &[0.0, 0.7, 0.0, 0.0]),
        t("blocks.0.attn.W_V", vec![1, 2, 2], &[1.0, 0.0, 0.0, 1.0]),
        t("unembed.W_U", vec![2, 2], &[1.0, 0.0, 0.0, 1.0]),
    ];
    let mut metadata = seed_meta();
    metadata.insert("written_by".into(), "hand".into());
    write_raw(&path, &tensors, Some(metadata));

    let c = checkpoint::load(&path).unwrap();
    assert_eq!(c.model.dtype(), Dtype::F64);
    assert_eq!(c.model.cfg(), &ModelConfig::seed());
    assert_eq!(c.system.fixed(), Some(system()));
    assert_eq!(c.metadata["written_by"], "hand");
    let m = c.model.to_f64();
    assert_eq!(m.tensor("blocks.0.attn.W_K"), Some(&[0.0, 0.7, 0.0, 0.0][..]));
    let (map, offset) = m.affine_map().unwrap();
    let want = [[1.0, 0.1], [-0.2, 1.0]];
    for i in 0..2 {
        for j in 0..2 {
            assert!((map[i][j] - want[i][j]).abs() < 1e-15, "{map:?}");
        }
    }
    assert_eq!(offset, [0.5, -0.25]);
}

#[test]
fn hand_written_f32_file_with_python_style_metadata_loads() {
    // Integral floats for the dimensions, extra keys inside the JSON objects,
    // an integer omega0: all things a Python writer may produce.
    let cfg = wide_cfg();
    let model_json = r#"{"d_model": 4.0, "n_heads": 2, "d_head": 3, "n_layers": 2.0, "n_ctx": 3,
        "attn_scale": "d_head", "causal": false, "positional": true, "d_in": 2, "act_fn": null}"#;
    let system_json = r#"{"kind": "damped_oscillator", "omega0": 2, "gamma": 0, "dt": 0.05, "mass": 1.0}"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.safetensors");
    write_raw(&path, &raw_tensors(&cfg, StDtype::F32), Some(meta(model_json, system_json)));
    let c = checkpoint::load(&path).unwrap();
    assert_eq!(c.model.cfg(), &cfg);
    assert_eq!(c.system.fixed(), Some(System::new(2.0, 0.0, 0.05)));
    let m = c.model.to_f64();
    assert_eq!(m.tensor("pos_embed.W_pos").unwrap().len(), 12);
    for (i, w) in m.params.iter().enumerate() {
        assert_eq!(*w, (0.01 * (i + 1) as f64) as f32 as f64);
    }
}

// ---------------------------------------------------------------- bad files

#[test]
fn missing_file_is_a_checkpoint_error() {
    let dir = tempfile::tempdir().unwrap();
    let message = load_err(&dir.path().join("nope.safetensors"));
    assert_mentions(&message, &["no such file"]);
}

#[test]
fn directory_is_a_checkpoint_error() {
    let dir = tempfile::tempdir().unwrap();
    assert_mentions(&load_err(dir.path()), &["directory"]);
}

#[test]
fn empty_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    fs::write(&path, b"").unwrap();
    assert_mentions(&load_err(&path), &["safetensors", "8-byte"]);
}

#[test]
fn text_file_is_not_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.safetensors");
    fs::write(&path, "d_model = 2\nthis is a config, not a checkpoint\n").unwrap();
    // It used to report "a 6 732 148 568 816 710 491-byte header".
    let err = load_err(&path);
    assert_mentions(&err, &["not a safetensors file", "\"d_model \""]);
    assert!(!err.contains("-byte header"), "{err}");
}

#[test]
fn truncated_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model::<f32>(&ModelConfig::seed()), system(), &BTreeMap::new()).unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert_mentions(&load_err(&path), &["truncated"]);
    // and trailing garbage
    let mut longer = bytes.clone();
    longer.extend_from_slice(b"junk");
    fs::write(&path, &longer).unwrap();
    assert_mentions(&load_err(&path), &["trailing"]);
}

#[test]
fn header_length_past_the_end_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut bytes = raw_bytes(&raw_tensors(&ModelConfig::seed(), StDtype::F32), Some(seed_meta()));
    let past = bytes.len() as u64 + 100;
    bytes[..8].copy_from_slice(&past.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert_mentions(&load_err(&path), &[&format!("{past}-byte header"), "truncated"]);
    // A huge declared length must not be trusted (nor allocated).
    bytes[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    fs::write(&path, &bytes).unwrap();
    assert_mentions(&load_err(&path), &["not a safetensors file"]);
}

#[test]
fn header_that_is_not_json_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut bytes = raw_bytes(&raw_tensors(&ModelConfig::seed(), StDtype::F32), Some(seed_meta()));
    bytes[8] = b'[';
    fs::write(&path, &bytes).unwrap();
    assert_mentions(&load_err(&path), &["JSON"]);
}

#[test]
fn missing_metadata_is_rejected() {
    assert_mentions(&err_with_meta(None), &["__metadata__", "physlens/1"]);
}

#[test]
fn missing_metadata_keys_are_named() {
    for key in ["format", "model", "system"] {
        let mut m = seed_meta();
        m.remove(key);
        let message = err_with_meta(Some(m));
        assert_mentions(&message, &[&format!("no `{key}` key")]);
    }
}

#[test]
fn unknown_format_version_is_rejected() {
    let mut m = seed_meta();
    m.insert("format".into(), "physlens/2".into());
    assert_mentions(&err_with_meta(Some(m)), &["`format`", "physlens/2", "unsupported format version", "physlens/1"]);
    let mut m = seed_meta();
    m.insert("format".into(), "pt".into());
    assert_mentions(&err_with_meta(Some(m)), &["`format`", "\"pt\"", "physlens/1"]);
}

#[test]
fn model_metadata_that_is_not_json_is_rejected() {
    let m = meta("d_model=2, n_heads=1", &seed_system_json());
    assert_mentions(&err_with_meta(Some(m)), &["`model`", "not valid JSON", "d_model=2, n_heads=1", "attn_scale"]);
    let m = meta("[2, 1, 2]", &seed_system_json());
    assert_mentions(&err_with_meta(Some(m)), &["`model`", "[2, 1, 2]"]);
}

#[test]
fn model_metadata_with_a_missing_field_is_rejected() {
    for field in ["d_model", "n_heads", "d_head", "n_layers", "n_ctx", "attn_scale", "causal", "positional"] {
        let mut json: serde_json::Value = serde_json::from_str(&seed_model_json()).unwrap();
        json.as_object_mut().unwrap().remove(field);
        let message = err_with_meta(Some(meta(&json.to_string(), &seed_system_json())));
        assert_mentions(&message, &["`model`", &format!("missing field `{field}`")]);
    }
}

#[test]
fn model_metadata_with_a_bad_value_is_rejected() {
    let bad = seed_model_json().replace("\"attn_scale\": \"d_model\"", "\"attn_scale\": \"dmodel\"");
    assert_mentions(&err_with_meta(Some(meta(&bad, &seed_system_json()))), &["`model`", "dmodel", "d_head"]);
    let bad = seed_model_json().replace("\"n_heads\": 1", "\"n_heads\": -1");
    assert_mentions(&err_with_meta(Some(meta(&bad, &seed_system_json()))), &["`model`", "-1"]);
    let bad = seed_model_json().replace("\"n_heads\": 1", "\"n_heads\": 1.5");
    assert_mentions(&err_with_meta(Some(meta(&bad, &seed_system_json()))), &["`model`", "1.5"]);
    let bad = seed_model_json().replace("\"causal\": true", "\"causal\": 1");
    assert_mentions(&err_with_meta(Some(meta(&bad, &seed_system_json()))), &["`model`", "bool"]);
}

#[test]
fn model_metadata_with_zero_dimensions_is_rejected() {
    for field in ["d_model", "n_heads", "d_head", "n_layers", "n_ctx"] {
        let mut json: serde_json::Value = serde_json::from_str(&seed_model_json()).unwrap();
        json[field] = serde_json::Value::from(0);
        let message = err_with_meta(Some(meta(&json.to_string(), &seed_system_json())));
        assert_mentions(&message, &["`model`", &format!("{field} = 0"), "≥ 1"]);
    }
}

#[test]
fn model_metadata_with_huge_dimensions_is_rejected_without_allocating() {
    let cases = [
        // overflows the parameter count
        (1u64 << 40, 1u64 << 40, 1u64 << 40, 1u64, "overflow"),
        // fits in usize, but the file cannot hold it
        (1 << 20, 1 << 10, 1 << 20, 1, "embed.W_E"),
        (2, 1, 2, 1 << 50, "blocks.1.attn.W_Q"),
        (2, 1, 2, u64::MAX, "overflow"),
    ];
    for (d_model, n_heads, d_head, n_layers, needle) in cases {
        let json = format!(
            r#"{{"d_model": {d_model}, "n_heads": {n_heads}, "d_head": {d_head}, "n_layers": {n_layers}, "n_ctx": 1, "attn_scale": "d_model", "causal": true, "positional": false}}"#
        );
        let message = err_with_meta(Some(meta(&json, &seed_system_json())));
        assert_mentions(&message, &[needle]);
    }
}

#[test]
fn system_of_another_kind_is_rejected() {
    let m = meta(&seed_model_json(), &seed_system_json().replace("damped_oscillator", "pendulum"));
    assert_mentions(&err_with_meta(Some(m)), &["`system`", "pendulum", "damped_oscillator"]);
}

#[test]
fn system_metadata_with_a_missing_field_is_rejected() {
    for field in ["kind", "omega0", "gamma", "dt"] {
        let mut json: serde_json::Value = serde_json::from_str(&seed_system_json()).unwrap();
        json.as_object_mut().unwrap().remove(field);
        let message = err_with_meta(Some(meta(&seed_model_json(), &json.to_string())));
        assert_mentions(&message, &["`system`", &format!("missing field `{field}`")]);
    }
    let message = err_with_meta(Some(meta(&seed_model_json(), "not json")));
    assert_mentions(&message, &["`system`", "not json"]);
}

#[test]
fn system_with_non_positive_omega0_or_dt_is_rejected() {
    for field in ["omega0", "dt"] {
        for value in ["0", "0.0", "-2.0", "-0.0"] {
            let sys = format!(
                r#"{{"kind": "damped_oscillator", "omega0": {}, "gamma": 0.1, "dt": {}}}"#,
                if field == "omega0" { value } else { "2.0" },
                if field == "dt" { value } else { "0.1" },
            );
            let message = err_with_meta(Some(meta(&seed_model_json(), &sys)));
            assert_mentions(&message, &["`system`", &format!("{field} = "), "> 0"]);
        }
    }
}

#[test]
fn system_with_non_finite_values_is_rejected() {
    // Python's json.dumps writes NaN and Infinity, which are not JSON.
    for (field, value) in [("omega0", "NaN"), ("dt", "Infinity"), ("gamma", "NaN"), ("omega0", "1e999")] {
        let sys = r#"{"kind": "damped_oscillator", "omega0": 2.0, "gamma": 0.1, "dt": 0.1}"#
            .replace(&format!("\"{field}\": "), &format!("\"{field}\": {value}, \"was_{field}\": "));
        let message = err_with_meta(Some(meta(&seed_model_json(), &sys)));
        assert_mentions(&message, &["`system`", value]);
    }
}

#[test]
fn system_with_negative_gamma_is_rejected() {
    let m = meta(&seed_model_json(), &seed_system_json().replace("\"gamma\": 0.1", "\"gamma\": -0.1"));
    assert_mentions(&err_with_meta(Some(m)), &["`system`", "gamma = -0.1", "≥ 0"]);
}

#[test]
fn missing_tensor_is_named() {
    let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
    tensors.retain(|t| t.name != "blocks.0.attn.W_V");
    assert_mentions(&err_with_tensors(&tensors), &["missing tensor", "`blocks.0.attn.W_V`"]);
}

#[test]
fn missing_layers_are_named() {
    // The metadata claims 3 layers, the file holds 1.
    let cfg3 = ModelConfig { n_layers: 3, ..ModelConfig::seed() };
    let model_json = serde_json::to_string(&cfg3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_raw(&path, &raw_tensors(&ModelConfig::seed(), StDtype::F32), Some(meta(&model_json, &seed_system_json())));
    assert_mentions(
        &load_err(&path),
        &["missing tensor", "`blocks.1.attn.W_Q`", "`blocks.2.attn.W_O`", "n_layers = 3"],
    );
}

#[test]
fn unexpected_tensors_are_named() {
    let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
    tensors.push(Raw {
        name: "blocks.0.attn.b_Q".into(),
        dtype: StDtype::F32,
        shape: vec![1, 2],
        data: f32_bytes(&[0.0, 0.0]),
    });
    tensors.push(Raw {
        name: "pos_embed.W_pos".into(),
        dtype: StDtype::F32,
        shape: vec![1, 2],
        data: f32_bytes(&[0.0, 0.0]),
    });
    let message = err_with_tensors(&tensors);
    assert_mentions(&message, &["unexpected tensor", "`blocks.0.attn.b_Q`", "`pos_embed.W_pos`", "positional = false"]);
}

#[test]
fn renamed_tensor_is_reported_as_missing_and_unexpected() {
    let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
    tensors[0].name = "W_E".into();
    assert_mentions(&err_with_tensors(&tensors), &["missing tensor(s) `embed.W_E`", "unexpected tensor(s) `W_E`"]);
}

#[test]
fn wrong_shape_is_named_with_expected_and_found() {
    let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
    let w_e = tensors.iter_mut().find(|t| t.name == "embed.W_E").unwrap();
    w_e.shape = vec![4];
    assert_mentions(&err_with_tensors(&tensors), &["`embed.W_E`", "[4]", "[2, 2]", "d_model"]);
    // Transposed W_O of a wider model: same element count, wrong shape.
    let cfg = wide_cfg();
    let mut tensors = raw_tensors(&cfg, StDtype::F32);
    let w_o = tensors.iter_mut().find(|t| t.name == "blocks.1.attn.W_O").unwrap();
    w_o.shape = vec![2, 4, 3];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let model_json = serde_json::to_string(&cfg).unwrap();
    write_raw(&path, &tensors, Some(meta(&model_json, &seed_system_json())));
    assert_mentions(&load_err(&path), &["`blocks.1.attn.W_O`", "[2, 4, 3]", "[2, 3, 4]", "n_heads, d_head, d_model"]);
}

#[test]
fn unsupported_dtypes_are_named() {
    for (dtype, bytes_per) in [(StDtype::F16, 2), (StDtype::BF16, 2), (StDtype::I32, 4), (StDtype::I64, 8)] {
        let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
        let b_u = tensors.iter_mut().find(|t| t.name == "unembed.b_U").unwrap();
        b_u.dtype = dtype;
        b_u.data = vec![0; 2 * bytes_per];
        let message = err_with_tensors(&tensors);
        assert_mentions(&message, &["`unembed.b_U`", &format!("dtype {dtype}"), "F32 or F64"]);
    }
}

#[test]
fn mixed_dtypes_are_rejected() {
    let mut tensors = raw_tensors(&ModelConfig::seed(), StDtype::F32);
    let w_u = tensors.iter_mut().find(|t| t.name == "unembed.W_U").unwrap();
    w_u.dtype = StDtype::F64;
    w_u.data = f64_bytes(&[1.0, 2.0, 3.0, 4.0]);
    assert_mentions(&err_with_tensors(&tensors), &["mixed dtypes", "`unembed.W_U`", "F64", "F32", "one dtype"]);
}

#[test]
fn non_finite_tensor_values_are_named() {
    for (dtype, bad) in [(StDtype::F32, f64::NAN), (StDtype::F64, f64::INFINITY), (StDtype::F32, f64::NEG_INFINITY)] {
        let mut tensors = raw_tensors(&ModelConfig::seed(), dtype);
        let w_v = tensors.iter_mut().find(|t| t.name == "blocks.0.attn.W_V").unwrap();
        let values = [0.1, 0.2, bad, 0.4];
        w_v.data = if dtype == StDtype::F64 { f64_bytes(&values) } else { f32_bytes(&values) };
        let message = err_with_tensors(&tensors);
        assert_mentions(&message, &["`blocks.0.attn.W_V`", "non-finite", "index 2"]);
    }
}

// ---------------------------------------------------------------- save refuses

#[test]
fn save_refuses_nan_weights_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut m = model::<f32>(&wide_cfg());
    let at = m.layout.blocks[1].w_k.start + 3;
    m.params[at] = f32::NAN;
    match checkpoint::save(&path, &m, system(), &extra()) {
        Err(Error::Checkpoint { file, message }) => {
            assert_eq!(file, path);
            assert_mentions(&message, &["`blocks.1.attn.W_K`", "NaN", "index 3"]);
        }
        other => panic!("expected Error::Checkpoint, got {other:?}"),
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");

    let mut m = model::<f64>(&ModelConfig::seed());
    m.params[0] = f64::INFINITY;
    assert!(matches!(checkpoint::save(&path, &m, system(), &extra()), Err(Error::Checkpoint { .. })));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing may be written");
}

#[test]
fn save_of_nan_weights_keeps_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let good = model::<f32>(&ModelConfig::seed());
    checkpoint::save(&path, &good, system(), &extra()).unwrap();
    let before = fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad.params[5] = f32::NAN;
    assert!(checkpoint::save(&path, &bad, system(), &extra()).is_err());
    assert_eq!(fs::read(&path).unwrap(), before);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn save_refuses_reserved_extra_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    for key in ["format", "model", "system"] {
        let extra = BTreeMap::from([(key.to_string(), "x".to_string())]);
        match checkpoint::save(&path, &model::<f32>(&ModelConfig::seed()), system(), &extra) {
            Err(Error::Checkpoint { message, .. }) => assert_mentions(&message, &[&format!("`{key}`"), "reserved"]),
            other => panic!("expected Error::Checkpoint, got {other:?}"),
        }
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn save_refuses_a_system_that_would_not_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let m = model::<f32>(&ModelConfig::seed());
    for (sys, needle) in [
        (System::new(f64::NAN, 0.1, 0.1), "omega0"),
        (System::new(2.0, -1.0, 0.1), "gamma"),
        (System::new(2.0, 0.1, 0.0), "dt"),
    ] {
        match checkpoint::save(&path, &m, sys, &BTreeMap::new()) {
            Err(Error::Checkpoint { message, .. }) => assert_mentions(&message, &[needle]),
            other => panic!("expected Error::Checkpoint, got {other:?}"),
        }
    }
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

// ---------------------------------------------------------------- byte mutations

/// Loads `bytes` from a file: never panics; `Err` is a checkpoint error and
/// `Ok` is a sane checkpoint. Returns whether it loaded.
fn load_mutated(path: &Path, bytes: &[u8]) -> bool {
    fs::write(path, bytes).unwrap();
    match checkpoint::load(path) {
        Ok(c) => {
            assert_sane(&c);
            true
        }
        Err(Error::Checkpoint { message, .. }) => {
            assert!(!message.is_empty());
            false
        }
        Err(other) => panic!("expected Error::Checkpoint, got {other:?}"),
    }
}

fn valid_file() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model::<f32>(&wide_cfg()), system(), &extra()).unwrap();
    fs::read(&path).unwrap()
}

#[test]
fn truncation_at_every_length_is_an_error() {
    let bytes = valid_file();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    for len in 0..bytes.len() {
        assert!(!load_mutated(&path, &bytes[..len]), "a file truncated to {len} bytes loaded");
    }
    assert!(load_mutated(&path, &bytes));
}

#[test]
fn header_byte_flips_never_panic() {
    let bytes = valid_file();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut loaded = 0;
    for i in 0..header_end {
        let original = bytes[i];
        for v in [0x00, 0xFF, b'0', b'9', b'"', b'{', b'}', b',', b' ', b'-', original ^ 0x01, original ^ 0x80] {
            if v == original {
                continue;
            }
            let mut mutated = bytes.clone();
            mutated[i] = v;
            loaded += usize::from(load_mutated(&path, &mutated));
        }
    }
    // Some flips are harmless (inside the free-text metadata or padding).
    assert!(loaded > 0);
}

#[test]
fn data_byte_flips_never_panic_and_never_load_non_finite_weights() {
    let bytes = valid_file();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let (mut loaded, mut refused) = (0, 0);
    for i in header_end..bytes.len() {
        for v in [0xFF, 0x7F, 0x00] {
            let mut mutated = bytes.clone();
            mutated[i] = v;
            if load_mutated(&path, &mutated) {
                loaded += 1;
            } else {
                refused += 1;
            }
        }
    }
    assert!(loaded > 0 && refused > 0, "loaded {loaded}, refused {refused}");
}
