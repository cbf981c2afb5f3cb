//! Training, evaluation and the study pipeline end to end, on short schedules.

use physlens::CancelToken;
use physlens::System;
use physlens::config::Config;
use physlens::eval::{Start, rollout};
use physlens::model::checkpoint::{self, AnyModel};
use physlens::model::{Activations, Model, ModelConfig};
use physlens::physics::Oscillator;
use physlens::run::study::run_study;
use physlens::train::progress::{Silent, silent};
use physlens::train::{Trainer, train};
use physlens::util::error::Error;
use physlens::util::mat2::{self, Mat2};

/// A short version of the seed experiment (a few thousand steps).
fn short_config() -> Config {
    Config::parse(
        "[data]\nn_train = 20000\nn_valid = 512\n[train]\nsteps = 6000\nlr = 1e-2\nlog_every = 1000\n[eval]\nn_rollouts = 16\n",
        "short",
    )
    .unwrap()
}

/// A model whose map is `s' = M s + c` exactly, with embedding `G` (a gauge):
/// `W_E = G`, `W_V = I`, `W_O = G⁻¹ Mᵀ G − I`, `W_U = G⁻¹` in the row convention.
fn hand_built(m: Mat2, c: [f64; 2], g: Mat2) -> Model<f64> {
    let cfg = ModelConfig::seed();
    let mut model = Model::<f64>::zeros(&cfg);
    let g_inv = mat2::inverse(&g).unwrap();
    let inner = mat2::sub(&mat2::mul(&mat2::mul(&g_inv, &mat2::transpose(&m)), &g), &mat2::identity());
    let l = model.layout.clone();
    let b = &l.blocks[0];
    for i in 0..2 {
        for j in 0..2 {
            model.params[l.w_e.start + i * 2 + j] = g[i][j];
            model.params[b.w_v.start + i * 2 + j] = f64::from(u8::from(i == j));
            model.params[b.w_o.start + i * 2 + j] = inner[i][j];
            model.params[l.w_u.start + i * 2 + j] = g_inv[i][j];
        }
        model.params[l.b_u.start + i] = c[i];
    }
    model
}

#[test]
fn affine_map_of_a_hand_built_model_is_the_map_it_was_built_from() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.3 };
    let m = osc.propagator(0.1);
    let model = hand_built(m, [1e-3, -2e-3], [[1.5, 0.3], [-0.7, 0.9]]);
    let (got, c) = model.affine_map().unwrap();
    assert!(mat2::frobenius(&mat2::sub(&got, &m)) < 1e-14, "{got:?}");
    assert!((c[0] - 1e-3).abs() < 1e-16 && (c[1] + 2e-3).abs() < 1e-16);
    // The forward pass agrees with M s + c (row vs column convention in one place).
    let s = [0.4, -1.1];
    let mut acts = Activations::new(&model.cfg, 1);
    model.forward(&s, &mut acts);
    let want = mat2::apply(&m, s);
    assert!((acts.pred[0] - want[0] - c[0]).abs() < 1e-14 && (acts.pred[1] - want[1] - c[1]).abs() < 1e-14);
}

#[test]
fn rollout_of_the_exact_map_tracks_the_exact_trajectory() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let model = hand_built(osc.propagator(0.1), [0.0, 0.0], [[0.8, -0.2], [0.5, 1.3]]);
    let r = rollout(
        &model,
        &Start::all(System::new(osc.omega0, osc.gamma, 0.1), &[[1.0, 0.0], [0.1, 0.7], [-0.3, -0.2]]),
        500,
    );
    let summary = r.summary();
    assert_eq!(summary.steps, 500);
    assert!(summary.max_rel_err < 1e-12, "{summary:?}");
    // Energy decays exactly as the exact trajectory's, so the drift is zero.
    assert!(r.stats.iter().all(|s| s.max_abs_energy_drift < 1e-12));
}

#[test]
fn rollout_of_euler_drifts_like_euler() {
    // Euler for γ = 0 multiplies the energy by (1 + ω0²Δt²) every step.
    let osc = Oscillator { omega0: 2.0, gamma: 0.0 };
    let euler = physlens::physics::rules::rule_map("euler", &osc, 0.1).unwrap();
    let model = hand_built(euler, [0.0, 0.0], mat2::identity());
    let r = rollout(&model, &Start::all(System::new(osc.omega0, osc.gamma, 0.1), &[[0.5, 0.0]]), 10);
    let drift = r.stats[10].median_energy_drift;
    assert!((drift - (1.04f64.powi(10) - 1.0)).abs() < 1e-12, "drift {drift}");
}

#[test]
fn the_same_seed_gives_bit_identical_weights_and_another_seed_does_not() {
    let mut config = short_config();
    config.train.steps = 300;
    let run = |c: &Config| {
        let mut t = Trainer::<f32>::new(c);
        while t.step < c.train.steps {
            t.step();
        }
        t.model.params
    };
    let a = run(&config);
    assert_eq!(a, run(&config));
    config.train.seed = 1;
    assert_ne!(a, run(&config));
}

#[test]
fn fresh_samples_every_step_also_train() {
    let mut config = short_config();
    config.data.n_train = 0;
    config.train.steps = 2000;
    let mut t = Trainer::<f64>::new(&config);
    let first = t.step();
    let mut last = first;
    while t.step < config.train.steps {
        last = t.step();
    }
    assert!(last < first * 1e-3, "loss {first} → {last}");
}

#[test]
fn divergence_stops_with_a_diagnosis_and_no_nan_on_disk() {
    let mut config = short_config();
    config.train.lr = 1e4;
    config.train.schedule = physlens::config::Schedule::Constant;
    // A checkpoint after every step, so one exists from before the blow-up.
    config.train.checkpoint_every = 1;
    config.train.log_every = 10;
    let dir = tempfile::tempdir().unwrap();
    let err = train::<f32>(&config, dir.path(), &Silent, &CancelToken::new()).unwrap_err();
    let Error::Diverged(message) = &err else { panic!("expected divergence, got {err:?}") };
    assert!(message.contains("learning rate"), "{message}");
    assert_eq!(err.exit_code(), 1);
    assert!(message.contains("at step"), "{message}");
    let ckpt = checkpoint::load(&dir.path().join("model.safetensors")).expect("the last good checkpoint is kept");
    let AnyModel::F32(m) = ckpt.model else { panic!("dtype changed") };
    assert!(m.params.iter().all(|w| w.is_finite()));
}

#[test]
fn short_seed_study_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let summary = run_study(&short_config(), dir.path(), &silent, &CancelToken::new()).unwrap();
    assert_eq!(summary.cases.len(), 2);
    for case in &summary.cases {
        let folder = dir.path().join(&case.name);
        for file in [
            "config.toml",
            "metrics.csv",
            "model.safetensors",
            "eval.json",
            "rollout.csv",
            "trajectories.csv",
            "interpret.json",
        ] {
            assert!(folder.join(file).is_file(), "{}: {file} missing", case.name);
        }
        assert!(case.valid_mse < 1e-6, "{}: valid MSE {}", case.name, case.valid_mse);
        assert!(case.rollout.median_rel_err_final < 1e-2, "{}: {:?}", case.name, case.rollout);
        let (learned, gamma) = (case.learned.as_ref().unwrap(), case.system.gamma.fixed().unwrap());
        assert!((learned.omega0 - 2.0).abs() < 1e-3, "{}: ω0 {}", case.name, learned.omega0);
        assert!((learned.gamma - gamma).abs() < 1e-3, "{}: γ {}", case.name, learned.gamma);
        // The metrics file has a header and one row per log interval.
        let metrics = std::fs::read_to_string(folder.join("metrics.csv")).unwrap();
        assert_eq!(metrics.lines().next().unwrap(), "step,lr,train_loss,valid_mse,elapsed_s");
        assert_eq!(metrics.lines().count(), 1 + 6);
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap()).unwrap();
    let case = &json["cases"][1];
    assert_eq!(case["name"], "damped");
    assert_eq!(case["gamma"], 0.1);
    assert_eq!(case["model"], "damped/model.safetensors");
    for key in ["omega0", "dt", "train_mse", "valid_mse", "nearest_method"] {
        assert!(!case[key].is_null(), "summary lacks {key}");
    }
    for key in ["steps", "median_rel_err_final", "max_rel_err_final", "max_rel_err"] {
        assert!(case["rollout"][key].is_number(), "summary lacks rollout.{key}");
    }
    assert!(case["learned"]["omega0"].is_number() && case["learned"]["gamma"].is_number());
}

#[test]
fn training_lowers_the_loss_for_a_deeper_model_with_context() {
    let config = Config::parse(
        "[data]\nn_train = 2000\nn_valid = 256\ncontext = 4\n[model]\nd_model = 4\nn_heads = 2\nn_layers = 2\npositional = true\n[train]\nsteps = 400\nbatch_size = 32\nlr = 3e-3\ndtype = \"f64\"\n",
        "ctx",
    )
    .unwrap();
    let mut t = Trainer::<f64>::new(&config);
    let first = t.step();
    let mut last = first;
    while t.step < config.train.steps {
        last = t.step();
    }
    assert!(last < 0.1 * first, "loss {first} → {last}");
}

#[test]
fn a_context_3_study_reads_its_map_from_the_jacobian_and_saves_attention() {
    let config = Config::parse(
        "[data]\nn_train = 2000\nn_valid = 256\ncontext = 3\n[model]\nd_model = 4\nn_heads = 2\npositional = true\n[train]\nsteps = 300\nbatch_size = 64\nlr = 3e-3\n[eval]\nn_rollouts = 4\nrollout_steps = 20\n[run]\ncases = [{ name = \"ctx3\", gamma = 0.1 }]\n",
        "ctx3",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let summary = run_study(&config, dir.path(), &silent, &CancelToken::new()).unwrap();
    let case = dir.path().join("ctx3");
    let interpret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("interpret.json")).unwrap()).unwrap();
    assert!(interpret["map_kind"].as_str().unwrap().contains("Jacobian"), "{}", interpret["map_kind"]);
    assert!(summary.cases[0].learned.as_ref().unwrap().omega0.is_finite());
    let attention = std::fs::read_to_string(case.join("attention.csv")).unwrap();
    // 1 layer × 2 heads × 3 queries × 3 keys, each query's row summing to one.
    assert_eq!(attention.lines().count(), 1 + 2 * 3 * 3);
    let weight_col = attention.lines().next().unwrap().split(',').position(|c| c == "weight").unwrap();
    let total: f64 =
        attention.lines().skip(1).map(|l| l.split(',').nth(weight_col).unwrap().parse::<f64>().unwrap()).sum();
    assert!((total - 6.0).abs() < 1e-9, "rows do not sum to one: {total}");
}
