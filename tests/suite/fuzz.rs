//! Property tests over untrusted input: checkpoint bytes and config text.
//! Whatever the bytes, loading returns a value or an error — never a panic.

use std::io::Write;

use physlens::System;
use physlens::config::Config;
use physlens::model::checkpoint;
use physlens::model::{Model, ModelConfig};
use physlens::util::rng::{Rng, Stream};
use proptest::prelude::*;

/// A valid checkpoint of a small positional two-layer model, as bytes.
fn valid_checkpoint() -> Vec<u8> {
    let cfg = ModelConfig { positional: true, n_layers: 2, n_ctx: 3, ..ModelConfig::seed() };
    let model = Model::<f32>::init(&cfg, &mut Rng::new(1, Stream::Init));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &model, System::new(2.0, 0.1, 0.1), &Default::default()).unwrap();
    std::fs::read(path).unwrap()
}

/// Loads `bytes` as a checkpoint file (the result is ignored: only panics matter).
fn load_bytes(bytes: &[u8]) -> bool {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    checkpoint::load(file.path()).is_ok()
}

const VALID_CONFIG: &str = "[system]\nomega0 = 2.0\ngamma = 0.1\ndt = 0.1\n[data]\ncontext = 4\n[model]\nd_model = 4\nattn_scale = \"d_head\"\n[train]\nsteps = 10\ndtype = \"f64\"\n[run]\ncases = [{ name = \"a\", gamma = 0.0 }]\n";

proptest! {
    // PROPTEST_CASES=100000 for a longer fuzzing session.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bytes_never_panic_the_checkpoint_loader(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(!load_bytes(&bytes));
    }

    #[test]
    fn mutated_checkpoints_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut bytes = valid_checkpoint();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let keep = cut.index(bytes.len() + 1).max(bytes.len() * 3 / 4);
        bytes.truncate(keep);
        load_bytes(&bytes);
    }

    #[test]
    fn random_text_never_panics_the_config_parser(text in "\\PC{0,300}") {
        let _ = Config::parse(&text, "fuzz.toml");
    }

    #[test]
    fn config_like_text_never_panics(lines in proptest::collection::vec(
        ("(system|data|model|train|eval|run|sytem)", "[a-z_0-9]{1,14}", prop_oneof![
            Just("1".to_string()), Just("-1".to_string()), Just("0".to_string()), Just("nan".to_string()),
            Just("inf".to_string()), Just("1e400".to_string()), Just("\"f32\"".to_string()), Just("true".to_string()),
            Just("[1, 2]".to_string()), Just("{ a = 1 }".to_string()), Just("18446744073709551616".to_string()),
            "-?[0-9]{1,20}(\\.[0-9]{1,5})?".prop_map(|s| s),
        ]), 0..12)) {
        let mut text = String::new();
        for (section, key, value) in lines {
            text.push_str(&format!("[{section}]\n{key} = {value}\n"));
        }
        let _ = Config::parse(&text, "fuzz.toml");
    }

    #[test]
    fn mutated_valid_configs_never_panic(at in any::<prop::sample::Index>(), insert in "\\PC{0,6}") {
        let mut text = VALID_CONFIG.to_string();
        let mut i = at.index(text.len() + 1);
        while !text.is_char_boundary(i) { i -= 1; }
        text.insert_str(i, &insert);
        let _ = Config::parse(&text, "fuzz.toml");
    }
}

#[test]
fn the_valid_inputs_of_the_fuzzers_are_valid() {
    assert!(load_bytes(&valid_checkpoint()));
    assert!(Config::parse(VALID_CONFIG, "fuzz.toml").is_ok());
}
