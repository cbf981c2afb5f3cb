//! Interruptions, crashes and thread counts lose nothing (driving the binary).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn physlens(args: &[&str], cwd: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_physlens"));
    c.args(args).current_dir(cwd).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

/// A run long enough to interrupt (a second or more), with frequent checkpoints.
const LONG: &str = "[data]\nn_train = 4096\nn_valid = 256\n[train]\nsteps = 400000\nbatch_size = 64\nlr = 1e-2\nlog_every = 5000\ncheckpoint_every = 20000\n[eval]\nn_rollouts = 4\nrollout_steps = 10\n";

fn weights(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).unwrap()
}

/// Waits until `file` exists (the run has started writing), at most 60 s.
fn wait_for(file: &Path) {
    let start = Instant::now();
    while !file.exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "{} never appeared", file.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn ctrl_c_saves_exits_130_and_resume_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("long.toml"), LONG).unwrap();

    let reference =
        finish(physlens(&["train", "--config", "long.toml", "--out", "full", "--quiet"], d).spawn().unwrap());
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));

    let child = physlens(&["train", "--config", "long.toml", "--out", "cut", "--quiet"], d).spawn().unwrap();
    wait_for(&d.join("cut/metrics.csv"));
    signal(&child, "-INT");
    let out = finish(child);
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--resume"), "{err}");
    let state = d.join("cut/train_state.safetensors");
    assert!(state.is_file());
    assert_ne!(weights(&d.join("cut")), weights(&d.join("full")), "interrupted too late to test anything");

    let out = finish(physlens(&["train", "--resume", "cut", "--quiet"], d).spawn().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(weights(&d.join("cut")), weights(&d.join("full")), "resumed weights differ");
    // The metrics file continues where it stopped: one row per log interval, no duplicates.
    let metrics = std::fs::read_to_string(d.join("cut/metrics.csv")).unwrap();
    let steps: Vec<&str> = metrics.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(steps.len(), 400000 / 5000, "{steps:?}");
}

#[test]
fn a_killed_run_resumes_from_its_periodic_checkpoint_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("long.toml"), LONG).unwrap();
    let reference =
        finish(physlens(&["train", "--config", "long.toml", "--out", "full", "--quiet"], d).spawn().unwrap());
    assert!(reference.status.success());

    let child = physlens(&["train", "--config", "long.toml", "--out", "killed", "--quiet"], d).spawn().unwrap();
    wait_for(&d.join("killed/train_state.safetensors"));
    signal(&child, "-KILL");
    finish(child);
    // No temporary files are left visible as checkpoints.
    for entry in std::fs::read_dir(d.join("killed")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".safetensors") || !name.starts_with('.'), "partial file {name}");
    }
    let out = finish(physlens(&["train", "--resume", "killed", "--quiet"], d).spawn().unwrap());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(weights(&d.join("killed")), weights(&d.join("full")));
}

#[test]
fn resume_without_a_state_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("empty")).unwrap();
    let out = finish(physlens(&["train", "--resume", "empty"], d).spawn().unwrap());
    assert_eq!(out.status.code(), Some(2));
    std::fs::write(d.join("empty/config.toml"), "").unwrap();
    let out = finish(physlens(&["train", "--resume", "empty"], d).spawn().unwrap());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("train_state.safetensors"));
}

#[test]
fn weights_are_bit_identical_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = "[data]\nn_train = 8192\nn_valid = 256\n[train]\nsteps = 3000\nbatch_size = 2048\nlr = 1e-2\n[eval]\nn_rollouts = 4\nrollout_steps = 10\n";
    std::fs::write(d.join("c.toml"), config).unwrap();
    let mut outputs = vec![];
    for threads in ["1", "2", "3"] {
        let out_dir = format!("t{threads}");
        let mut cmd = physlens(&["run", "--config", "c.toml", "--out", &out_dir, "--quiet"], d);
        let out = finish(cmd.env("RAYON_NUM_THREADS", threads).spawn().unwrap());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        outputs.push([weights(&d.join(&out_dir).join("undamped")), weights(&d.join(&out_dir).join("damped"))]);
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "weights depend on the thread count");
}
