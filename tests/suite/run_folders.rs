//! Folders that never mix runs, and messages that say what is wrong (a new
//! user's first afternoon): one regression test per thing that broke.

use std::path::Path;

use physlens::config::Config;
use physlens::run::study::{resume_study, run_study};
use physlens::train::progress::{Progress, silent};
use physlens::{CancelToken, Summary};

use crate::common::{physlens, stderr, stdout};

const SMALL: &str = "[system]\ngamma = 0.05\n[data]\nn_train = 4000\nn_valid = 256\n[train]\nsteps = 600\nlr = 1e-2\nbatch_size = 64\nlog_every = 100\ncheckpoint_every = 100\n[eval]\nrollout_steps = 40\nn_rollouts = 8\n";

/// Trains `SMALL` into `dir/runs/small` and evaluates it.
fn trained(dir: &Path) {
    std::fs::write(dir.join("small.toml"), SMALL).unwrap();
    let out = physlens(&["train", "--config", "small.toml", "--quiet"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = physlens(&["eval", "--run", "runs/small"], dir);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `rollout --steps 0` exited 0 and overwrote the run's results.
#[test]
fn rollout_of_zero_steps_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    trained(dir.path());
    let before = std::fs::read_dir(dir.path().join("runs/small")).unwrap().count();
    let out = physlens(&["rollout", "--run", "runs/small", "--steps", "0"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--steps"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(dir.path().join("runs/small")).unwrap().count(), before, "a file was written");
}

/// `rollout --json` prints one object with the error relative to the
/// current and to the initial state; the evaluation's files stay as they are,
/// so the report still shows the evaluation's own rollout.
#[test]
fn rollout_json_has_both_errors_and_a_longer_rollout_leaves_the_report_alone() {
    let dir = tempfile::tempdir().unwrap();
    trained(dir.path());
    let out = physlens(&["rollout", "--run", "runs/small", "--steps", "300", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(json["steps"], 300);
    for key in ["median_rel_err_final", "max_rel_err", "median_err_vs_initial_final", "max_err_vs_initial"] {
        assert!(json[key].is_number(), "{key}: {json}");
    }
    let out = physlens(&["report", "--run", "runs/small"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let html = std::fs::read_to_string(dir.path().join("runs/small/report.html")).unwrap();
    assert!(html.contains("after 40 steps") && !html.contains("300 steps"), "the report mixed in the 300-step rollout");
}

/// A report whose `eval.json` was rewritten after `summary.json` mixed two
/// evaluations; now it refuses, naming the file.
#[test]
fn a_report_from_files_of_two_evaluations_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        "[data]\nn_train = 2000\nn_valid = 128\n[train]\nsteps = 200\nbatch_size = 64\n[eval]\nn_rollouts = 4\nrollout_steps = 10\n[run]\ncases = [{ name = \"one\", gamma = 0.1 }]\n",
        "mixed",
    )
    .unwrap();
    run_study(&config, dir.path(), &silent, &CancelToken::new()).unwrap();
    let eval = dir.path().join("one/eval.json");
    let text = std::fs::read_to_string(&eval).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["valid_mse"] = serde_json::json!(0.5);
    std::fs::write(&eval, json.to_string()).unwrap();
    let err = physlens::report::build::build_report(dir.path()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("eval.json"), "{err}");
}

/// `train --out DIR` into a folder with an earlier run kept its old
/// `eval.json`, `interpret.json` and figures beside the new model.
#[test]
fn training_into_a_folder_with_an_earlier_run_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    trained(dir.path());
    let run = dir.path().join("runs/small");
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let out = physlens(&["train", "--config", "small.toml", "--quiet"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("earlier run") && err.contains("eval.json") && err.contains("--force"), "{err}");
    let out = physlens(&["run", "--config", "small.toml", "--out", "runs/small", "--quiet"], dir.path());
    assert_eq!(out.status.code(), Some(2), "run into the same folder: {}", stderr(&out));

    let out = physlens(&["train", "--config", "small.toml", "--quiet", "--force"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    for stale in ["eval.json", "interpret.json", "rollout.csv", "trajectories.csv"] {
        assert!(!run.join(stale).exists(), "{stale} of the earlier run survived --force");
    }
    assert!(run.join("model.safetensors").is_file());
    assert_eq!(std::fs::read_to_string(run.join("notes.txt")).unwrap(), "mine", "--force removed a file not ours");
}

/// Messages that left a user stuck, each now saying what is wrong.
#[test]
fn messages_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A missing run folder does not exist (it used to say "it has no config.toml").
    let out = physlens(&["eval", "--run", "nowhere"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no such folder"), "{}", stderr(&out));
    // TOML syntax errors give line and column.
    std::fs::write(d.join("broken.toml"), "[train]\nsteps = 10\nlr = = 1\n").unwrap();
    let out = physlens(&["train", "--config", "broken.toml"], d);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("line 3, column"), "{}", stderr(&out));
    // An empty config says the defaults are used.
    std::fs::write(d.join("empty.toml"), "# nothing\n").unwrap();
    let out = physlens(&["train", "--config", "empty.toml", "--out", "empty.toml/x"], d);
    assert!(stderr(&out).contains("default"), "{}", stderr(&out));
    // `run` says it does not use [system] gamma, which its cases override.
    std::fs::write(d.join("gamma.toml"), "[system]\ngamma = 0.3\n").unwrap();
    let out = physlens(&["run", "--config", "gamma.toml", "--out", "empty.toml/x"], d);
    assert!(stderr(&out).contains("gamma = 0.3 is not used"), "{}", stderr(&out));
    // A text file handed to interpret is not a safetensors file (it reported a
    // 6 732 148 568 816 710 491-byte header).
    std::fs::write(d.join("notes.safetensors"), "some notes about the model, not a model\n").unwrap();
    let out = physlens(&["interpret", "--model", "notes.safetensors"], d);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("not a safetensors file") && !err.contains("-byte header"), "{err}");
    // Resuming a finished run says it is already complete.
    trained(d);
    let out = physlens(&["train", "--resume", "runs/small"], d);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!((stdout(&out) + &stderr(&out)).contains("already complete"), "{}", stderr(&out));
}

/// The divergence hint named a checkpoint that had never been written.
#[test]
fn the_divergence_hint_names_only_files_that_exist() {
    let mut config = Config::parse(SMALL, "small").unwrap();
    config.train.lr = 1e4;
    config.train.schedule = physlens::config::Schedule::Constant;
    config.train.checkpoint_every = 100_000;
    config.train.log_every = 1;
    let dir = tempfile::tempdir().unwrap();
    let err = physlens::train::<f32>(&config, dir.path(), &physlens::Silent, &CancelToken::new()).unwrap_err();
    let message = err.to_string();
    assert!(!dir.path().join("model.safetensors").exists());
    assert!(!message.contains("model.safetensors") && message.contains("No checkpoint was written"), "{message}");
}

/// Cancels the study once any case has logged step `at`.
struct StopAt {
    at: u64,
    cancel: CancelToken,
}

impl Progress for StopAt {
    fn update(&self, step: u64, _: f64, _: f64, _: f64) {
        if step >= self.at {
            self.cancel.cancel();
        }
    }

    fn finish(&self, _: &str) {}
}

/// An interrupted `physlens run` could not be finished: `run --resume` gives
/// the same weights and numbers as a study never stopped.
#[test]
fn an_interrupted_study_resumes_to_the_same_files_as_one_never_stopped() {
    let text = format!("{SMALL}[run]\ncases = [{{ name = \"a\", gamma = 0.0 }}, {{ name = \"b\", gamma = 0.2 }}]\n");
    let config = Config::parse(&text, "resume").unwrap();
    let whole = tempfile::tempdir().unwrap();
    let expected = run_study(&config, whole.path(), &silent, &CancelToken::new()).unwrap();

    let stopped = tempfile::tempdir().unwrap();
    let cancel = CancelToken::new();
    let stop = |_: &str, _: u64| Box::new(StopAt { at: 300, cancel: cancel.clone() }) as Box<dyn Progress>;
    let err = run_study(&config, stopped.path(), &stop, &cancel).unwrap_err();
    assert_eq!(err.exit_code(), 130, "{err}");
    assert!(!stopped.path().join("summary.json").exists());
    let resumed: Summary = resume_study(stopped.path(), &silent, &CancelToken::new()).unwrap();

    for (a, b) in expected.cases.iter().zip(&resumed.cases) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.valid_mse.to_bits(), b.valid_mse.to_bits(), "{}", a.name);
        assert_eq!(a.rollout.median_rel_err_final.to_bits(), b.rollout.median_rel_err_final.to_bits());
        for file in ["model.safetensors", "eval.json", "rollout.csv", "interpret.json"] {
            let read = |root: &Path| std::fs::read(root.join(&a.name).join(file)).unwrap();
            assert!(read(whole.path()) == read(stopped.path()), "{}/{file} differs", a.name);
        }
    }
}
