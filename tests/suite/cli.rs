//! The `physlens` binary: commands, outputs and exit codes (docs/cli.md).

use crate::common::{STABLE_INTERPRET_KEYS, physlens, stderr};

const SMALL: &str = "[system]\ngamma = 0.05\n[data]\nn_train = 5000\nn_valid = 256\n[train]\nsteps = 1500\nlr = 1e-2\nbatch_size = 64\nlog_every = 500\n[eval]\nrollout_steps = 50\nn_rollouts = 8\n";

#[test]
fn train_eval_rollout_interpret_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.toml"), SMALL).unwrap();
    let out = physlens(&["train", "--config", "small.toml", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("runs/small");
    for file in ["config.toml", "metrics.csv", "model.safetensors"] {
        assert!(run.join(file).is_file(), "{file} missing");
    }
    // The checkpoint carries its provenance in the metadata.
    let ckpt = physlens::model::checkpoint::load(&run.join("model.safetensors")).unwrap();
    assert_eq!(ckpt.metadata["step"], "1500");
    assert_eq!(ckpt.metadata["seed"], "0");
    assert!(ckpt.metadata["config"].contains("gamma = 0.05"));
    // The resolved config lists every key, including the ones the file left out.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(resolved.contains("gamma = 0.05") && resolved.contains("weight_decay"));

    let out = physlens(&["eval", "--run", "runs/small"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid MSE"));
    assert!(run.join("eval.json").is_file());

    // A rollout of another length writes its own files; the evaluation's stay as they were.
    let evaluated = std::fs::read(run.join("rollout.csv")).unwrap();
    let out = physlens(&["rollout", "--run", "runs/small", "--steps", "30"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(run.join("rollout_30.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 31, "header and steps 0..=30");
    assert!(run.join("trajectories_30.csv").is_file());
    assert_eq!(std::fs::read(run.join("rollout.csv")).unwrap(), evaluated, "rollout rewrote eval's rollout.csv");

    let out = physlens(&["interpret", "--model", "runs/small/model.safetensors", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in STABLE_INTERPRET_KEYS {
        assert!(!json[key].is_null(), "interpret --json lacks {key}");
    }
    assert_eq!(json["truth"]["gamma"], 0.05);
    assert_eq!(json["methods"].as_array().unwrap().len(), 9);
    let d: Vec<f64> = json["methods"].as_array().unwrap().iter().map(|m| m["distance"].as_f64().unwrap()).collect();
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "methods not ascending: {d:?}");

    let out = physlens(&["interpret", "--model", "runs/small/model.safetensors"], dir.path());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ω0") && text.contains("exact"), "{text}");
}

#[test]
fn bad_config_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.toml"), "[train]\nlr = -1.0\n").unwrap();
    let out = physlens(&["train", "--config", "bad.toml", "--quiet"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("bad.toml") && err.contains("train.lr"), "{err}");
    assert!(!dir.path().join("runs").exists(), "a rejected config must not leave a run folder");
}

#[test]
fn missing_config_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = physlens(&["run", "--config", "nope.toml"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope.toml"));
}

#[test]
fn not_a_run_folder_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = physlens(&["eval", "--run", "."], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("config.toml"), "{}", stderr(&out));
}

#[test]
fn garbage_checkpoint_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk.safetensors"), b"this is not a checkpoint").unwrap();
    let out = physlens(&["interpret", "--model", "junk.safetensors"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("junk.safetensors"));
}

#[test]
fn unknown_flag_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = physlens(&["run", "--bogus"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn every_class_of_bad_config_exits_2_naming_the_key_and_writes_nothing() {
    let cases = [
        ("[train]\nlerning_rate = 1e-3\n", "train.lerning_rate"),
        ("[train]\nlr = \"fast\"\n", "train.lr"),
        ("[system]\ngamma = nan\n", "system.gamma"),
        ("[system]\ndt = 0.0\n", "system.dt"),
        ("[system]\ngamma = -0.5\n", "system.gamma"),
        ("[data]\ne_train_max = -1.0\n", "data.e_train_max"),
        ("[model]\nn_heads = 0\n", "model.n_heads"),
        ("[train]\ndtype = \"bf16\"\n", "train.dtype"),
        ("[train]\nschedule = \"step\"\n", "train.schedule"),
        ("[data]\nn_train = 10\n", "data.n_train"),
        ("[[system]]\n", "system"),
    ];
    for (text, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        for command in ["train", "run"] {
            let out = physlens(&[command, "--config", "bad.toml", "--quiet"], dir.path());
            assert_eq!(out.status.code(), Some(2), "{command} {text:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(err.contains("bad.toml") && err.contains(key), "{text:?}: {err}");
            assert!(!dir.path().join("runs").exists(), "{text:?}: output written for a rejected config");
        }
    }
}

#[test]
fn every_class_of_bad_checkpoint_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.toml"), SMALL).unwrap();
    assert!(physlens(&["train", "--config", "small.toml", "--quiet"], dir.path()).status.success());
    let good = std::fs::read(dir.path().join("runs/small/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let mut past_end = good.clone();
    past_end[..8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    let renamed = String::from_utf8_lossy(&good).replace("unembed.W_U", "unembed.W_X").into_bytes();
    let reshaped = String::from_utf8_lossy(&good).replace("\"d_model\":2", "\"d_model\":3").into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("text", b"hello".to_vec()),
        ("truncated", good[..good.len() - 5].to_vec()),
        ("header_only", good[..8 + header_len].to_vec()),
        ("past_end", past_end),
        ("renamed_tensor", renamed),
        ("wrong_shapes", reshaped),
    ];
    for (name, bytes) in cases {
        let file = format!("{name}.safetensors");
        std::fs::write(dir.path().join(&file), bytes).unwrap();
        let out = physlens(&["interpret", "--model", &file, "--json"], dir.path());
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(&file), "{name}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{name}: printed a result for a bad file");
    }
}
