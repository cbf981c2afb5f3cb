//! `physlens sweep`: points expanded in a stable order with stable ids,
//! shards (by flag and by the Slurm variables) that together equal the
//! whole sweep, failed and missing points named, a killed sweep that
//! finishes every point once, and bad input refused with the key named.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use physlens::config::Config;

use crate::common::{physlens, stderr, stdout};

/// Small, fast points: the seed model, a few thousand steps.
const BASE: &str = "[system]\nomega0 = 2.0\ngamma = 0.0\n[data]\nn_train = 2048\nn_valid = 256\n\
                    [train]\ndtype = \"f64\"\nsteps = 1500\nlr = 1e-2\nlog_every = 500\n\
                    [eval]\nn_rollouts = 4\nrollout_steps = 20\n";

/// 2 Δt × 3 generators × 2 seeds = 12 points.
const GRID: &str = "[sweep]\ngrid = { \"system.dt\" = [0.1, 0.2], \"system.generator\" = [\"euler\", \"leapfrog\", \
                    \"rk4\"], \"train.seed\" = [0, 1] }\n";

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// `sweep.csv` without the `wall_s` column (the one column that differs between two runs).
fn rows_without_wall_time(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let wall = header.iter().position(|h| *h == "wall_s").unwrap();
    text.lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != wall).map(|(_, c)| c).collect::<Vec<_>>().join(","))
        .collect()
}

/// The ids of the point folders in `dir/points`.
fn point_folders(dir: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(dir.join("points"))
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
fn points_come_in_a_stable_order_with_ids_made_from_their_values() {
    let text = "[sweep]\nseed = 3\ngrid = { \"train.seed\" = [0, 1], \"system.generator\" = [\"rk4\", \"euler\"] }\n\
                random = { n = 3, \"train.lr\" = { log_uniform = [1e-4, 1e-2] }, \"model.d_model\" = { uniform = [2, 8] } }\n";
    let config = Config::parse(text, "s.toml").unwrap();
    let points = config.sweep_points().unwrap();
    let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(
        &ids[..4],
        ["generator=rk4_seed=0_r0", "generator=rk4_seed=0_r1", "generator=rk4_seed=0_r2", "generator=rk4_seed=1_r0"]
    );
    // The same draws for every grid cell, from the sweep's seed; integers where the bounds are integers.
    assert_eq!(points[0].values["train.lr"], points[3].values["train.lr"]);
    for p in &points {
        let lr = p.values["train.lr"].as_float().unwrap();
        assert!((1e-4..=1e-2).contains(&lr), "{lr}");
        let d = p.values["model.d_model"].as_integer().unwrap();
        assert!((2..=8).contains(&d), "{d}");
    }
    assert_eq!(Config::parse(text, "s.toml").unwrap().sweep_points().unwrap(), points);
    let other_seed = Config::parse(&text.replace("seed = 3", "seed = 4"), "s.toml").unwrap();
    assert_ne!(other_seed.sweep_points().unwrap()[0].values["train.lr"], points[0].values["train.lr"]);
    // Each point's config is the base with its values set.
    let c = config.point_config(&points[5]).unwrap();
    assert_eq!(c.train.lr, points[5].values["train.lr"].as_float().unwrap());
    assert_eq!(c.run.cases[0].name, points[5].id);
    assert!(c.sweep.is_none());
}

#[test]
fn bad_sweeps_are_refused_naming_the_key() {
    let refused = |text: &str, wanted: &[&str]| {
        let e = Config::parse(text, "s.toml").unwrap_err().to_string();
        for w in wanted {
            assert!(e.contains(w), "`{w}` not in: {e}");
        }
    };
    refused("[sweep]\ngrid = { \"train.sed\" = [0, 1] }\n", &["train.sed", "train.seed"]);
    refused("[sweep]\ngrid = { \"train.lr\" = [] }\n", &["train.lr", "lists no values"]);
    refused("[sweep]\ngrid = { \"train.seed\" = [1, 1] }\n", &["train.seed", "twice"]);
    refused("[sweep]\ngrid = { \"train.lr\" = [\"fast\"] }\n", &["train.lr"]);
    refused("[sweep]\ngrid = { \"train.lr\" = [-1.0] }\n", &["train.lr", "> 0"]);
    refused("[sweep]\ngrid = { \"run.cases\" = [[]] }\n", &["run.cases", "cannot be swept"]);
    refused("[sweep]\n", &["sweeps nothing"]);
    refused("[sweep]\ngrid = { \"train.seed\" = [0] }\n[run]\ncases = []\n", &["`run`", "no [run] section"]);
    refused(
        "[sweep]\ngrid = { \"train.lr\" = [1e-3] }\nrandom = { n = 2, \"train.lr\" = { uniform = [1e-3, 1e-2] } }\n",
        &["train.lr", "both in the grid and drawn"],
    );
    refused("[sweep]\nrandom = { n = 2, \"train.lr\" = { log_uniform = [0.0, 1e-2] } }\n", &["train.lr", "lo > 0"]);
    refused("[sweep]\nrandom = { n = 0, \"train.lr\" = { uniform = [1e-3, 1e-2] } }\n", &["sweep.random.n"]);

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &format!("{BASE}{GRID}"));
    let run = physlens(&["run", "--config", "s.toml"], d);
    assert_eq!(run.status.code(), Some(2));
    assert!(stderr(&run).contains("physlens sweep --config"), "{}", stderr(&run));
    for (shard, what) in [("3/3", "0 ≤ i < n"), ("a/b", "i/n")] {
        let o = physlens(&["sweep", "--config", "s.toml", "--shard", shard], d);
        assert_eq!(o.status.code(), Some(2), "{shard}");
        assert!(stderr(&o).contains("--shard") && stderr(&o).contains(what), "{}", stderr(&o));
    }
    let slurm = Command::new(env!("CARGO_BIN_EXE_physlens"))
        .args(["sweep", "--config", "s.toml"])
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .current_dir(d)
        .output()
        .unwrap();
    assert_eq!(slurm.status.code(), Some(2));
    assert!(
        stderr(&slurm).contains("SLURM_ARRAY_TASK_ID") && stderr(&slurm).contains("--array=0-2"),
        "{}",
        stderr(&slurm)
    );
    assert!(!d.join("runs").exists(), "a refused sweep wrote something");
}

#[test]
fn three_shards_and_a_slurm_task_equal_the_unsharded_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &format!("{BASE}{GRID}"));
    let list = physlens(&["sweep", "--config", "s.toml", "--list"], d);
    let ids: Vec<String> = stdout(&list).lines().map(|l| l.split('\t').next().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(
        stdout(&list).lines().next().unwrap(),
        "dt=0.1_generator=euler_seed=0\tsystem.dt=0.1\tsystem.generator=euler\ttrain.seed=0"
    );

    let whole = physlens(&["sweep", "--config", "s.toml", "--out", "whole", "--quiet"], d);
    assert!(whole.status.success(), "{}", stderr(&whole));
    assert!(stdout(&whole).contains("12 ok, 0 failed, 0 missing"), "{}", stdout(&whole));

    let shard0 = physlens(&["sweep", "--config", "s.toml", "--out", "sharded", "--shard", "0/3", "--quiet"], d);
    assert!(shard0.status.success(), "{}", stderr(&shard0));
    let mut own: Vec<String> = ids.iter().step_by(3).cloned().collect();
    own.sort();
    assert_eq!(point_folders(&d.join("sharded")), own, "shard 0 wrote another shard's point");
    let partial = physlens(&["sweep", "collect", "sharded"], d);
    assert!(partial.status.success(), "{}", stderr(&partial));
    assert!(stdout(&partial).contains("4 ok, 0 failed, 8 missing"), "{}", stdout(&partial));
    assert!(stdout(&partial).contains(&ids[1]), "missing points are named: {}", stdout(&partial));
    let csv = std::fs::read_to_string(d.join("sharded/sweep.csv")).unwrap();
    assert_eq!(csv.lines().filter(|l| l.contains(",missing,")).count(), 8);

    let shard1 = physlens(&["sweep", "--config", "s.toml", "--out", "sharded", "--shard", "1/3", "--quiet"], d);
    assert!(shard1.status.success(), "{}", stderr(&shard1));
    let slurm = Command::new(env!("CARGO_BIN_EXE_physlens"))
        .args(["sweep", "--config", "s.toml", "--out", "sharded", "--quiet"])
        .env("SLURM_ARRAY_TASK_ID", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .current_dir(d)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(slurm.status.success(), "{}", stderr(&slurm));
    assert!(stdout(&slurm).contains("shard 2/3 owns 4"), "{}", stdout(&slurm));
    let collected = physlens(&["sweep", "collect", "sharded"], d);
    assert!(stdout(&collected).contains("12 ok, 0 failed, 0 missing"), "{}", stdout(&collected));
    assert_eq!(
        rows_without_wall_time(&d.join("sharded/sweep.csv")),
        rows_without_wall_time(&d.join("whole/sweep.csv"))
    );
    for id in &ids {
        let weights =
            |root: &str| std::fs::read(d.join(root).join("points").join(id).join("model.safetensors")).unwrap();
        assert_eq!(weights("sharded"), weights("whole"), "{id}: weights differ");
    }
    // The page is self-contained and carries the truncation-order figure.
    let html = std::fs::read_to_string(d.join("sharded/sweep.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("src=\"http"), "sweep.html");
    // Another sweep is refused in the same folder.
    write(d, "other.toml", &format!("{BASE}{}", GRID.replace("0.2]", "0.3]")));
    let other = physlens(&["sweep", "--config", "other.toml", "--out", "whole"], d);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("holds another sweep"), "{}", stderr(&other));
}

#[test]
fn a_diverging_point_is_recorded_as_failed_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "s.toml", &format!("{BASE}[sweep]\ngrid = {{ \"train.lr\" = [1e-2, 1e9] }}\n"));
    let o = physlens(&["sweep", "--config", "s.toml", "--out", "s", "--quiet"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 ok, 1 failed, 0 missing"), "{}", stdout(&o));
    let csv = std::fs::read_to_string(d.join("s/sweep.csv")).unwrap();
    let failed = csv.lines().find(|l| l.starts_with("lr=1000000000.0,")).unwrap();
    assert!(failed.contains(",failed,") && failed.contains("diverged"), "{failed}");
    // Run again: the failed point is not retried unless asked.
    let again = physlens(&["sweep", "--config", "s.toml", "--out", "s", "--quiet"], d);
    assert!(stdout(&again).contains("0 run now") && stdout(&again).contains("--retry-failed"), "{}", stdout(&again));
    let retry = physlens(&["sweep", "--config", "s.toml", "--out", "s", "--quiet", "--retry-failed"], d);
    assert!(stdout(&retry).contains("1 run now (0 ok, 1 failed)"), "{}", stdout(&retry));
}

#[test]
fn a_killed_sweep_finishes_every_point_once_when_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let slow = BASE.replace("steps = 1500", "steps = 40000\ncheckpoint_every = 2000");
    write(d, "s.toml", &format!("{slow}[sweep]\ngrid = {{ \"train.seed\" = [0, 1, 2, 3, 4, 5] }}\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_physlens"))
        .args(["sweep", "--config", "s.toml", "--out", "s", "--quiet", "--jobs", "1"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = |id: usize| d.join(format!("s/points/seed={id}/done"));
    let start = Instant::now();
    while !done(1).exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "two points never finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let finished: Vec<usize> = (0..6).filter(|&i| done(i).exists()).collect();
    assert!(finished.len() < 6, "killed too late to test anything");
    let records: Vec<Vec<u8>> =
        finished.iter().map(|i| std::fs::read(d.join(format!("s/points/seed={i}/point.json"))).unwrap()).collect();

    let o = physlens(&["sweep", "--config", "s.toml", "--out", "s", "--quiet"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("{} finished before", finished.len())), "{}", stdout(&o));
    assert!(stdout(&o).contains("6 ok, 0 failed, 0 missing"), "{}", stdout(&o));
    for (i, before) in finished.iter().zip(&records) {
        let after = std::fs::read(d.join(format!("s/points/seed={i}/point.json"))).unwrap();
        assert_eq!(&after, before, "point seed={i} was run twice");
    }
}

/// sweep.html in headless Chromium: no console messages, and the explorer's
/// script drew one dot per ok point. Needs `chromium`.
#[test]
#[ignore = "needs Chromium (apt-get install -y chromium); run with --ignored"]
fn sweep_page_explorer_draws_in_headless_chromium_without_console_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "s.toml",
        &format!("{BASE}[sweep]\ngrid = {{ \"system.dt\" = [0.1, 0.2], \"train.lr\" = [1e-2, 1e9] }}\n"),
    );
    let o = physlens(&["sweep", "--config", "s.toml", "--out", "s", "--quiet"], d);
    assert!(stdout(&o).contains("2 ok, 2 failed"), "{}", stdout(&o));
    let profile = d.join("profile");
    let url = format!("file://{}", d.join("s/sweep.html").display());
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let console: Vec<&str> =
        std::str::from_utf8(&out.stderr).unwrap().lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let dom = stdout(&out);
    let plot = &dom[dom.find("id=\"ex-plot\"").expect("the explorer's plot")..];
    let plot = &plot[..plot.find("</svg>").unwrap()];
    assert_eq!(plot.matches("<circle").count(), 2, "one dot per ok point: {plot}");
    assert!(dom.contains("2 of 4 points drawn"), "the explorer's note");
}

#[test]
fn a_point_config_reads_back_as_the_folder_of_a_resumed_point() {
    // Regression: a point's config.toml names its one case by the point's id
    // (`seed=2`), and the `=` failed the case-name check, so every point
    // killed after its first saved state failed when the sweep was run again.
    let text = format!("{BASE}{GRID}");
    let config = Config::parse(&text, "s.toml").unwrap();
    for point in config.sweep_points().unwrap() {
        let written = config.point_config(&point).unwrap().to_toml();
        let read = Config::parse(&written, "config.toml").unwrap_or_else(|e| panic!("{}: {e}", point.id));
        assert_eq!(read.run.cases[0].name, point.id);
    }
}
