//! The `physlens interpret` command: `--json`, `--dump … --out`, several
//! `--model`s, and bad flags (exit code 2).

use crate::common::{STABLE_INTERPRET_KEYS, physlens, stderr, stdout};
use std::collections::BTreeMap;
use std::path::Path;

use crate::handbuilt::{gauge, two_head_model, two_step_model, write_like_numpy};
use physlens::System;
use physlens::model::checkpoint;
use physlens::physics::rules::rule_map;

#[test]
fn interpret_json_has_every_spec_key_and_the_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let m = rule_map("leapfrog", &system.oscillator(), 0.1).unwrap();
    write_like_numpy(
        &dir.path().join("leapfrog.safetensors"),
        &two_head_model(m, [0.0, 0.0], gauge(1), 1),
        &system,
        false,
    );
    let out = physlens(&["interpret", "--model", "leapfrog.safetensors", "--json", "--n-valid", "256"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let spec = STABLE_INTERPRET_KEYS;
    let ours = [
        "jacobians",
        "circuits",
        "probes",
        "patterns",
        "margin_explanation",
        "omega_identifiability",
        "generator",
        "map_kind",
        "omega0_sq_ratio",
    ];
    for key in spec.iter().chain(&ours) {
        assert!(!json[key].is_null(), "interpret --json lacks {key}");
    }
    assert_eq!(json["nearest_method"], "leapfrog");
    assert_eq!(json["effective_map_source"], "affine");
    let got = json["effective_map"][1][0].as_f64().unwrap();
    assert!((got - m[1][0]).abs() < 1e-12, "{got} vs {}", m[1][0]);
    for key in ["omega0", "gamma", "omega"] {
        assert!(json["learned"][key].is_number(), "learned.{key}");
    }
    assert!(json["best_fit"]["residual"].is_number() && json["truth"]["dt"] == 0.1);
    assert_eq!(json["methods"].as_array().unwrap().len(), 9);
    assert_eq!(json["circuits"]["heads"].as_array().unwrap().len(), 2);
    assert!(json["circuits"]["direct"]["gauge_invariant"].as_bool().unwrap());
    assert!(json["probes"].as_array().unwrap().iter().any(|p| p["target"] == "energy"));
    // The readable summary says what it found.
    let out = physlens(&["interpret", "--model", "leapfrog.safetensors", "--n-valid", "256"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("learned") || text.contains("spectral"), "{text}");
    assert!(text.contains("verdict: runs leapfrog"), "{text}");
}

#[test]
fn interpret_dump_writes_arrays_patterns_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let (model, _) = two_step_model(system.oscillator().propagator(0.1), [0.0, 0.0], gauge(3), [0.0, 0.0]);
    checkpoint::save(&dir.path().join("two-step.safetensors"), &model, system, &BTreeMap::new()).unwrap();
    let out = physlens(
        &[
            "interpret",
            "--model",
            "two-step.safetensors",
            "--dump",
            "blocks.0.attn.pattern,embed",
            "--out",
            "dump",
            "--n-valid",
            "300",
            "--trajectory=-0.5,1",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("MEAN JACOBIAN"), "{text}");
    assert!(text.contains("token 1 (lag 1)") && text.contains("from s0 = (-0.5000, 1.0000)"), "{text}");
    let d = dir.path().join("dump");
    for f in [
        "interpret.json",
        "patterns.csv",
        "probes.csv",
        "jacobians.csv",
        "input.npy",
        "embed.npy",
        "blocks.0.attn.pattern.npy",
        "activations.safetensors",
    ] {
        assert!(d.join(f).is_file(), "{f} missing; stdout:\n{text}");
        assert!(text.contains(&format!("wrote {}", Path::new("dump").join(f).display())), "{f} not reported");
    }
    let bytes = std::fs::read(d.join("blocks.0.attn.pattern.npy")).unwrap();
    let header = String::from_utf8_lossy(&bytes[10..128]);
    assert!(header.contains("'shape': (300, 2, 3, 3)") && header.contains("<f8"), "{header}");
    let st_bytes = std::fs::read(d.join("activations.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(st.tensor("embed").unwrap().shape(), &[300, 3, 5]);
    // patterns.csv: 2 heads × 3 queries × 3 keys; head 1's last query puts all its weight on key 1.
    let csv = std::fs::read_to_string(d.join("patterns.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 18);
    let row = csv.lines().find(|l| l.starts_with("0,1,2,1,")).unwrap();
    assert_eq!(row.split(',').nth(5).unwrap().parse::<f64>().unwrap(), 1.0, "{row}");
    let jac = std::fs::read_to_string(d.join("jacobians.csv")).unwrap();
    assert_eq!(jac.lines().count(), 1 + 3);
    let probes = std::fs::read_to_string(d.join("probes.csv")).unwrap();
    assert!(probes.starts_with("activation,target,r2") && probes.contains("blocks.0.resid_post,energy,"));
}

#[test]
fn interpret_several_models_fits_the_truncation_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["interpret".to_string(), "--json".into(), "--n-valid".into(), "64".into()];
    for dt in [0.02, 0.04, 0.08] {
        let system = System::new(2.0, 0.0, dt);
        let name = format!("euler-{dt}.safetensors");
        let m = rule_map("euler", &system.oscillator(), dt).unwrap();
        checkpoint::save(
            &dir.path().join(&name),
            &two_head_model(m, [0.0, 0.0], gauge(2), 1),
            system,
            &BTreeMap::new(),
        )
        .unwrap();
        args.extend(["--model".into(), name]);
    }
    args.extend(["--out".into(), "several".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = physlens(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["models"].as_array().unwrap().len(), 3);
    let slope = json["truncation_order"]["slope"].as_f64().unwrap();
    assert!((slope - 2.0).abs() < 0.1, "Euler's local error is O(Δt²): slope {slope}");
    assert!(dir.path().join("several/interpret.json").is_file());
    assert!(dir.path().join("several/0-euler-0.02/interpret.json").is_file());
}

#[test]
fn interpret_bad_flags_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let m = system.oscillator().propagator(0.1);
    checkpoint::save(
        &dir.path().join("m.safetensors"),
        &two_head_model(m, [0.0, 0.0], gauge(1), 1),
        system,
        &BTreeMap::new(),
    )
    .unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["--dump", "bogus", "--out", "o"], "bogus"),
        (&["--dump", "embed"], "--out"),
        (&["--probe", "blocks.7.attn.z"], "blocks.7.attn.z"),
        (&["--trajectory", "1,x"], "--trajectory"),
        (&["--dump-format", "csv", "--dump", "embed", "--out", "o"], "csv"),
        (&["--e-max=-1", "--out", "o"], "--e-max"),
        (&["--n-valid", "2", "--out", "o"], "--n-valid"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["interpret", "--model", "m.safetensors"];
        if !extra.contains(&"--n-valid") {
            args.extend(["--n-valid", "64"]);
        }
        args.extend_from_slice(extra);
        let out = physlens(&args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{extra:?}: {}", stderr(&out));
    }
    assert!(!dir.path().join("o").exists(), "a refused request must write nothing");
}

#[test]
fn a_trained_mlp_model_is_interpreted_through_its_jacobians() {
    // Positive control: a gelu MLP model trained on the exact propagator.
    let dir = tempfile::tempdir().unwrap();
    let config = "[model]\nd_model = 4\nd_head = 4\nd_mlp = 16\n[train]\nsteps = 1500\nlr = 3e-3\n\
                  [data]\nn_train = 8192\nn_valid = 256\n";
    std::fs::write(dir.path().join("mlp.toml"), config).unwrap();
    let out = physlens(&["train", "--config", "mlp.toml", "--out", "run", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = physlens(&["interpret", "--model", "run/model.safetensors", "--json", "--n-valid", "256"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["effective_map_source"], "jacobian");
    assert!(json["map_kind"].as_str().unwrap().contains("MLP blocks (gelu)"), "{}", json["map_kind"]);
    assert!(json["circuits"]["paths_left_out"].as_str().unwrap().contains("MLP"));
    assert_eq!(json["model"]["config"]["d_mlp"], 16);
    let exact = rule_map("exact", &System::new(2.0, 0.1, 0.1).oscillator(), 0.1).unwrap();
    for (i, row) in exact.iter().enumerate() {
        for (j, want) in row.iter().enumerate() {
            let got = json["effective_map"][i][j].as_f64().unwrap();
            assert!((got - want).abs() < 0.1, "M[{i}][{j}] = {got}, exact {want}");
        }
    }
}
