//! Sizes a machine cannot hold are refused before anything is allocated or
//! written (issue 16, item 11): exit 2, the key named, the figures in bytes,
//! no run folder; and the estimate behind it (docs/config.md, "Memory").

use std::path::Path;

use physlens::config::Config;
use physlens::config::memory::Workload;
use physlens::model::checkpoint;
use physlens::model::{Activations, Model, ModelConfig, Scratch, chunk_sequences};
use physlens::util::error::Error;
use physlens::util::memory::{Available, Bytes, mem_available};

use crate::common::{physlens, stderr};

const HUGE: usize = 999_999_999_999;

fn gib(n: u64) -> Available {
    Available { bytes: Bytes(n << 30), source: "the test".into() }
}

/// The files and folders in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// `physlens <command> --config` on a file setting `key` to 999999999999
/// exits 2 with an error naming the key and a figure in bytes, and makes no folder.
fn refused(command: &str, key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (section, name) = key.split_once('.').unwrap();
    std::fs::write(dir.path().join("huge.toml"), format!("[{section}]\n{name} = {HUGE}\n")).unwrap();
    let out = physlens(&[command, "--config", "huge.toml", "--quiet"], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{command} {key}: {err}");
    assert!(err.contains(&format!("`{key}`")) && err.contains(" bytes)"), "{command} {key}: {err}");
    assert!(!err.contains("memory allocation"), "{err}");
    assert_eq!(listing(dir.path()), ["huge.toml"], "{command} {key} made a folder: {err}");
}

#[test]
fn regression_train_with_a_size_no_machine_holds_exits_2_naming_the_key() {
    for key in ["model.d_head", "model.d_model", "model.n_heads", "model.n_layers", "data.context", "data.n_valid"] {
        refused("train", key);
    }
}

#[test]
fn regression_run_with_a_size_no_machine_holds_exits_2_naming_the_key() {
    for key in ["model.d_head", "data.context", "eval.n_rollouts", "eval.rollout_steps"] {
        refused("run", key);
    }
}

#[test]
fn regression_eval_rollout_and_interpret_refuse_sizes_no_machine_holds() {
    let dir = tempfile::tempdir().unwrap();
    let small = "[data]\nn_train = 256\nn_valid = 64\n[train]\nsteps = 20\nbatch_size = 32\nlog_every = 10\n";
    std::fs::write(dir.path().join("small.toml"), small).unwrap();
    let out = physlens(&["train", "--config", "small.toml", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("runs/small");
    let before = listing(&run);

    // Rollout steps from the flag: the flag is named.
    let out = physlens(&["rollout", "--run", "runs/small", "--steps", &HUGE.to_string()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--steps") && err.contains(" bytes)"), "{err}");

    // Sizes from the folder's config.toml: the key is named.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for (key, line) in [("eval.n_rollouts", "n_rollouts = 64"), ("data.n_valid", "n_valid = 64")] {
        assert!(config.contains(line), "{config}");
        let (name, _) = line.split_once(" = ").unwrap();
        std::fs::write(run.join("config.toml"), config.replace(line, &format!("{name} = {HUGE}"))).unwrap();
        for command in ["eval", "rollout"] {
            let out = physlens(&[command, "--run", "runs/small"], dir.path());
            let err = stderr(&out);
            if command == "rollout" && key == "data.n_valid" {
                assert!(out.status.success(), "a rollout needs no validation set: {err}");
                std::fs::remove_file(run.join("rollout_200.csv")).unwrap();
                std::fs::remove_file(run.join("trajectories_200.csv")).unwrap();
                continue;
            }
            assert_eq!(out.status.code(), Some(2), "{command} {key}: {err}");
            assert!(err.contains(&format!("`{key}`")) && err.contains(" bytes)"), "{command} {key}: {err}");
        }
    }
    assert_eq!(listing(&run), before, "a refused command wrote into the run folder");

    let out =
        physlens(&["interpret", "--model", "runs/small/model.safetensors", "--n-valid", &HUGE.to_string()], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--n-valid") && err.contains(" bytes)"), "{err}");
}

#[test]
fn regression_a_checkpoint_claiming_an_absurd_context_is_refused() {
    // Without positional embeddings no tensor has n_ctx rows: the file is
    // small, but interpreting it would allocate for 999999999999 tokens.
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig { n_ctx: HUGE, ..ModelConfig::seed() };
    let path = dir.path().join("claims.safetensors");
    let system = Config::default().system;
    checkpoint::save(&path, &Model::<f32>::zeros(&cfg), system, &Default::default()).unwrap();
    let out = physlens(&["interpret", "--model", "claims.safetensors", "--out", "out"], dir.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("n_ctx = 999999999999") && err.contains(" bytes)"), "{err}");
    assert!(!dir.path().join("out").exists(), "interpret wrote before refusing");
}

#[test]
fn the_default_config_and_a_large_feasible_one_are_accepted() {
    for workload in [Workload::Train, Workload::Study, Workload::Evaluate, Workload::Rollout { steps: 200 }] {
        Config::default().check_memory_within(workload, &gib(1), "defaults").unwrap();
    }
    let big = large_config();
    for workload in [Workload::Train, Workload::Evaluate] {
        big.check_memory_within(workload, &gib(2), "big.toml").unwrap();
    }
}

/// 8 layers of 4 heads of 16, d_model 64, context 64, batch 1024.
fn large_config() -> Config {
    let text = "[data]\ncontext = 64\n[model]\nd_model = 64\nn_heads = 4\nd_head = 16\nn_layers = 8\n[train]\nbatch_size = 1024\n";
    Config::parse(text, "big.toml").unwrap()
}

#[test]
fn the_training_estimate_of_a_large_config_is_near_its_measured_peak() {
    // Measured once (docs/config.md, "Memory"): `physlens train` of this config
    // with steps = 20, log_every = 10, checkpoint_every = 10 peaked at
    // 642808 kB resident (/usr/bin/time -v). The estimate is to stay within 20 %.
    let measured = 642_808.0 * 1024.0;
    let estimate = large_config().memory_estimate(Workload::Train);
    let ratio = estimate.total().get() as f64 / measured;
    assert!(
        (0.8..1.2).contains(&ratio),
        "estimate {} is {ratio:.2} × the measured peak: {estimate:#?}",
        estimate.total()
    );
}

#[test]
fn the_key_named_is_the_one_whose_default_lowers_the_estimate_most() {
    type Set = fn(&mut Config);
    let cases: [(&str, Set); 8] = [
        ("model.d_head", |c| c.model.d_head = HUGE),
        ("model.n_layers", |c| c.model.n_layers = HUGE),
        ("data.context", |c| c.data.context = 100_000),
        ("data.n_train", |c| c.data.n_train = 4_000_000_000),
        ("data.n_valid", |c| c.data.n_valid = HUGE),
        ("train.batch_size", |c| {
            c.train.batch_size = 1 << 30;
            c.data.n_train = 0
        }),
        ("eval.n_rollouts", |c| c.eval.n_rollouts = HUGE),
        ("eval.rollout_steps", |c| c.eval.rollout_steps = HUGE),
    ];
    for (key, set) in cases {
        let mut config = Config::default();
        set(&mut config);
        match config.check_memory_within(Workload::Study, &gib(16), "t.toml") {
            Err(Error::Config { key: named, message, .. }) => {
                assert_eq!(named, key, "{message}");
                assert!(
                    message.contains("more than the 16.0 GiB (17179869184 bytes) available (the test)"),
                    "{message}"
                );
            }
            other => panic!("{key}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn sizes_saturate_instead_of_wrapping() {
    // 999999999999² overflows u64: the estimate must say "too much", not wrap to a small number.
    let mut config = Config::default();
    config.model.d_model = HUGE;
    config.model.d_head = HUGE;
    config.model.n_heads = HUGE;
    config.data.context = HUGE;
    let total = config.memory_estimate(Workload::Train).total();
    assert!(total.is_saturated(), "{total}");
    assert!(
        config
            .check_memory_within(Workload::Train, &Available { bytes: Bytes(u64::MAX - 1), source: "t".into() }, "t")
            .is_err()
    );
    assert_eq!(Bytes(u64::MAX).to_string(), "more than 16 EiB (over 18446744073709551615 bytes)");
    assert_eq!(Bytes(1536).to_string(), "1.5 KiB (1536 bytes)");
    assert_eq!(Bytes(12).to_string(), "12 bytes");
}

#[test]
fn mem_available_is_read_in_bytes() {
    let meminfo = "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   23773060 kB\n";
    assert_eq!(mem_available(meminfo), Some(Bytes(23_773_060 * 1024)));
    assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
    assert!(physlens::util::memory::available().bytes > Bytes(0));
}

#[test]
fn activation_and_scratch_sizes_match_what_is_allocated() {
    let cfg = ModelConfig { d_model: 6, n_heads: 3, d_head: 5, n_layers: 2, n_ctx: 7, ..ModelConfig::seed() };
    let acts = Activations::<f64>::new(&cfg, 11);
    let blocks: usize = acts.blocks.iter().map(|b| b.q.len() * 4 + b.scores.len() * 2 + b.result.len()).sum();
    let values = acts.embed.len() + acts.resid.iter().map(Vec::len).sum::<usize>() + blocks + acts.pred.len();
    assert_eq!(Activations::<f64>::bytes(&cfg, 11, 8), Bytes(values as u64 * 8));
    // Every cache name's shape is the shape `get` returns.
    for name in Activations::<f64>::names(&cfg) {
        assert_eq!(Activations::<f64>::shape(&cfg, &name, 0), acts.get(&cfg, &name).map(|(_, s)| s), "{name}");
    }
    let scratch = Scratch::<f64>::new(&cfg, 11);
    assert_eq!(
        Scratch::<f64>::bytes(&cfg, 11, 8),
        Bytes(8 * (scratch.d_pred.len() as u64 + 11 * 7 * (6 + 4 * 15) + 7))
    );
    // Chunks of a large set stay within the budget; a small set is one chunk.
    let big = large_config().model_config();
    let chunk = chunk_sequences(&big, 4096, 4);
    assert!(chunk < 4096 && Activations::<f32>::bytes(&big, chunk, 4) <= physlens::model::CHUNK_BYTES);
    assert_eq!(chunk_sequences(&ModelConfig::seed(), 100, 4), 100);
}

/// Each case of a study is estimated with its own keys: a case that widens
/// the model costs what its width costs, and the in-context evaluation is
/// counted for a case with parameters drawn per sequence.
#[test]
fn a_study_is_estimated_case_by_case() {
    let base = "[data]\ncontext = 16\n[run]\ncases = [{ name = \"a\" }, { name = \"b\" }]\n";
    let wide = "[data]\ncontext = 16\n[run]\ncases = [{ name = \"a\" }, { name = \"b\", \"model.d_model\" = 64, \
                \"model.n_heads\" = 4, \"model.d_head\" = 16 }]\n";
    let estimate = |text: &str| Config::parse(text, "t").unwrap().memory_estimate(Workload::Study);
    let (small, large) = (estimate(base), estimate(wide));
    assert!(large.total() > small.total(), "{} vs {}", large.total(), small.total());
    assert!(large.parts.iter().any(|(what, _)| what.starts_with("case b: ")), "{:?}", large.parts);
    let ranged = estimate("[system]\nomega0 = [1.0, 4.0]\n[run]\ncases = [{ name = \"a\" }]\n");
    assert!(ranged.parts.iter().any(|(what, _)| what.contains("in-context evaluation")), "{:?}", ranged.parts);
}
