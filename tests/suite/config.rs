//! Config parsing and validation (docs/config.md): defaults, unknown keys, bad values.

use physlens::config::Config;
use physlens::config::Schedule;
use physlens::model::AttnScale;
use physlens::util::real::Dtype;

use crate::common::config_error;

#[test]
fn empty_config_gives_the_spec_defaults() {
    let c = Config::parse("", "empty").unwrap();
    assert_eq!(c.system.fixed(), Some(physlens::System::new(2.0, 0.1, 0.1)));
    assert_eq!(
        (c.data.e_train_max, c.data.e_valid_max, c.data.n_train, c.data.n_valid, c.data.context),
        (1.0, 4.0, 100_000, 4096, 1)
    );
    assert_eq!((c.model.d_model, c.model.n_heads, c.model.d_head, c.model.n_layers), (2, 1, 2, 1));
    assert_eq!(c.model.attn_scale, AttnScale::DModel);
    assert!(c.model.causal && !c.model.positional);
    assert_eq!((c.train.steps, c.train.batch_size, c.train.lr, c.train.lr_min), (40_000, 256, 1e-3, 0.0));
    assert_eq!(c.train.schedule, Schedule::Cosine);
    assert_eq!(
        (c.train.beta1, c.train.beta2, c.train.eps, c.train.weight_decay, c.train.seed),
        (0.9, 0.999, 1e-8, 0.0, 0)
    );
    assert_eq!(c.train.dtype, Dtype::F32);
    assert_eq!((c.eval.rollout_steps, c.eval.n_rollouts), (200, 64));
    let gamma = |k: &physlens::config::Case| k.overrides["system.gamma"].as_float().unwrap();
    let names: Vec<(&str, f64)> = c.run.cases.iter().map(|k| (k.name.as_str(), gamma(k))).collect();
    assert_eq!(names, [("undamped", 0.0), ("damped", 0.1)]);
}

#[test]
fn a_file_lists_only_what_it_changes() {
    let c = Config::parse("[train]\nlr = 3e-3\ndtype = \"f64\"\n[model]\nattn_scale = \"d_head\"\n", "t").unwrap();
    assert_eq!(c.train.lr, 3e-3);
    assert_eq!(c.train.dtype, Dtype::F64);
    assert_eq!(c.model.attn_scale, AttnScale::DHead);
    assert_eq!(c.train.steps, 40_000);
}

#[test]
fn resolved_config_round_trips() {
    let mut c = Config::default();
    c.system.gamma = physlens::physics::Param::Fixed(2.5);
    c.data.context = 4;
    c.model.positional = true;
    let again = Config::parse(&c.to_toml(), "resolved").unwrap();
    assert_eq!(again, c);
    // Every key is written out.
    for key in ["omega0", "e_valid_max", "attn_scale", "weight_decay", "dtype", "rollout_steps", "cases"] {
        assert!(c.to_toml().contains(key), "{key} missing from the resolved config");
    }
}

#[test]
fn unknown_key_names_the_nearest_valid_key() {
    let (key, message) = config_error("[train]\nlearning_rat = 1e-3\n");
    assert_eq!(key, "train.learning_rat");
    assert!(message.contains("unknown key"), "{message}");
    let (_, message) = config_error("[train]\nbeta = 0.9\n");
    assert!(message.contains("train.beta1") || message.contains("train.beta2"), "{message}");
    let (key, message) = config_error("[sytem]\nomega0 = 1\n");
    assert_eq!(key, "sytem");
    assert!(message.contains("did you mean `system`"), "{message}");
}

#[test]
fn wrong_type_names_the_key() {
    let (key, message) = config_error("[train]\nlr = \"fast\"\n");
    assert_eq!(key, "train.lr");
    assert!(message.contains("invalid type") || message.contains("expected"), "{message}");
    let (key, _) = config_error("[data]\nn_train = -5\n");
    assert_eq!(key, "data.n_train");
}

#[test]
fn unknown_dtype_and_schedule_are_rejected() {
    let (key, message) = config_error("[train]\ndtype = \"f16\"\n");
    assert_eq!(key, "train.dtype");
    assert!(message.contains("f32") && message.contains("f64"), "{message}");
    let (key, message) = config_error("[train]\nschedule = \"linear\"\n");
    assert_eq!(key, "train.schedule");
    assert!(message.contains("cosine"), "{message}");
}

#[test]
fn non_finite_and_out_of_range_values_are_rejected() {
    for (text, want) in [
        ("[system]\ndt = 0.0\n", "system.dt"),
        ("[system]\ndt = -0.1\n", "system.dt"),
        ("[system]\nomega0 = nan\n", "system.omega0"),
        ("[system]\ngamma = -0.1\n", "system.gamma"),
        ("[system]\ngamma = inf\n", "system.gamma"),
        ("[data]\ne_train_max = -1.0\n", "data.e_train_max"),
        ("[train]\nlr = 0.0\n", "train.lr"),
        ("[train]\nbeta2 = 1.0\n", "train.beta2"),
        ("[train]\nweight_decay = -0.01\n", "train.weight_decay"),
    ] {
        let (key, message) = config_error(text);
        assert_eq!(key, want, "{text}: {message}");
    }
}

#[test]
fn zero_sizes_are_rejected_but_heads_need_not_tile_the_stream() {
    for (text, want) in [
        ("[model]\nd_model = 0\n", "model.d_model"),
        ("[model]\nn_heads = 0\n", "model.n_heads"),
        ("[model]\nd_head = 0\n", "model.d_head"),
        ("[model]\nn_layers = 0\n", "model.n_layers"),
        ("[data]\ncontext = 0\n", "data.context"),
        ("[train]\nbatch_size = 0\n", "train.batch_size"),
        ("[train]\nsteps = 0\n", "train.steps"),
    ] {
        let (key, message) = config_error(text);
        assert_eq!(key, want, "{text}");
        assert!(message.contains("at least 1"), "{message}");
    }
    assert!(Config::parse("[model]\nd_model = 4\nn_heads = 3\nd_head = 5\n", "t").is_ok());
}

#[test]
fn training_set_smaller_than_a_batch_is_rejected() {
    let (key, message) = config_error("[data]\nn_train = 100\n[train]\nbatch_size = 256\n");
    assert_eq!(key, "data.n_train");
    assert!(message.contains("batch_size"), "{message}");
    assert!(Config::parse("[data]\nn_train = 0\n", "fresh samples").is_ok());
}

#[test]
fn training_set_beyond_32_bit_row_indices_is_rejected() {
    // Rows of the training set are 32-bit indices (batch order, shuffle).
    let (key, message) = config_error("[data]\nn_train = 4294967296\n");
    assert_eq!(key, "data.n_train");
    assert!(message.contains("4294967295"), "{message}");
}

#[test]
fn validation_energies_below_training_give_a_warning_not_an_error() {
    let c = Config::parse("[data]\ne_valid_max = 0.5\n", "t").unwrap();
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("e_valid_max"));
    assert!(Config::default().warnings().is_empty());
}

#[test]
fn syntax_errors_are_config_errors() {
    let (_, message) = config_error("[train\nlr = 1\n");
    assert!(!message.is_empty());
}

#[test]
fn bad_case_names_are_rejected() {
    let (key, _) = config_error("[run]\ncases = [{ name = \"../escape\", gamma = 0.0 }]\n");
    assert_eq!(key, "run.cases[0].name");
    let (key, _) = config_error("[run]\ncases = []\n");
    assert_eq!(key, "run.cases");
}

/// The leak guard (docs/config.md): without the causal mask, scoring every
/// position would let position t read its own target (token t + 1).
#[test]
fn loss_positions_follow_the_mask_and_all_without_it_is_a_leak() {
    use physlens::model::LossPositions;
    let with_mask = Config::parse("[data]\ncontext = 4\n", "t").unwrap();
    assert_eq!(with_mask.train.loss_positions, Some(LossPositions::All));
    assert_eq!(with_mask.model_config().scored_positions(), 0..4);
    let without = Config::parse("[data]\ncontext = 4\n[model]\ncausal = false\n", "t").unwrap();
    assert_eq!(without.train.loss_positions, Some(LossPositions::Last));
    assert_eq!(without.model_config().scored_positions(), 3..4);
    let last = Config::parse("[data]\ncontext = 4\n[train]\nloss_positions = \"last\"\n", "t").unwrap();
    assert_eq!(last.model_config().scored_positions(), 3..4);
    // The resolved value is written out, so a run folder's config says which was used.
    assert!(without.to_toml().contains("loss_positions = \"last\""), "{}", without.to_toml());
    let (key, message) = config_error("[model]\ncausal = false\n[train]\nloss_positions = \"all\"\n");
    assert_eq!(key, "train.loss_positions");
    assert!(message.contains("leak") && message.contains("t + 1") && message.contains("\"last\""), "{message}");
    let (key, _) = config_error("[train]\nloss_positions = \"first\"\n");
    assert_eq!(key, "train.loss_positions");
}

/// Every shipped example config is valid, and so is each of its cases
/// (reading a config checks them).
#[test]
fn every_example_config_parses_with_all_its_cases() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            Config::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example configs in {}", dir.display());
}

#[test]
fn mlp_blocks_are_configured_by_width_and_activation() {
    let c = physlens::Config::parse("[model]\nd_mlp = 16\nact = \"relu\"\n", "test.toml").unwrap();
    let m = c.model_config();
    assert_eq!((m.d_mlp, m.act), (16, physlens::model::Act::Relu));
    // Off by default, gelu when only the width is given.
    assert_eq!(physlens::Config::default().model_config().d_mlp, 0);
    let c = physlens::Config::parse("[model]\nd_mlp = 8\n", "test.toml").unwrap();
    assert_eq!(c.model_config().act, physlens::model::Act::Gelu);
    crate::common::assert_config_refused(
        "[model]\nd_mlp = 8\nact = \"tanh\"\n",
        "model.act",
        "expected `gelu` or `relu`",
    );
}
