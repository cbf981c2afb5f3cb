//! `train.stop_at_floor`: training stops once the validation MSE has stayed
//! at the floating-point floor `ε² · mean ‖s‖²`, records where, and stays
//! deterministic and resumable.

use physlens::config::Config;
use physlens::train::progress::Silent;
use physlens::{CancelToken, resume, train};

/// The default seed experiment (γ = 0, f32) with the stop on; it reaches
/// the floor near step 7 000, well before `steps`.
fn stopping_config(steps: u64) -> Config {
    Config::parse(&format!("[train]\nsteps = {steps}\nstop_at_floor = true\n"), "floor").unwrap()
}

fn last_metrics_step(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    text.lines().last().unwrap().split(',').next().unwrap().parse().unwrap()
}

#[test]
fn the_stop_at_the_floor_is_off_by_default() {
    let config = Config::default();
    assert!(!config.train.stop_at_floor);
    assert_eq!(config.train.floor_patience, 500);
}

#[test]
fn training_stops_at_the_floor_and_records_the_step_in_metrics_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = stopping_config(20_000);
    let out = train::<f32>(&config, dir.path(), &Silent, &CancelToken::new()).unwrap();
    let stop = out.floor_stop.expect("the default experiment reaches the f32 floor before 20 000 steps");
    assert!(stop.step < 20_000 && stop.step.is_multiple_of(config.train.log_every), "{stop:?}");
    assert_eq!((out.end_step, stop.steps), (stop.step, 20_000));
    assert!(stop.valid_mse <= stop.floor_mse, "{stop:?}");
    // The floor is ε² · mean ‖s‖² of the validation targets: about 2.5 ε² here.
    let eps2 = (f32::EPSILON as f64).powi(2);
    assert!((2.0 * eps2..3.0 * eps2).contains(&stop.floor_mse), "{stop:?}");
    assert_eq!(last_metrics_step(dir.path()), stop.step);
    let checkpoint = physlens::model::checkpoint::load(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(checkpoint.metadata.get("step").map(String::as_str), Some(stop.step.to_string().as_str()));
}

#[test]
fn a_run_stopped_at_the_floor_gives_identical_weights_twice_and_resumes_as_complete() {
    let config = stopping_config(20_000);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = train::<f32>(&config, a.path(), &Silent, &CancelToken::new()).unwrap();
    let second = train::<f32>(&config, b.path(), &Silent, &CancelToken::new()).unwrap();
    let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first.model.params), bits(&second.model.params));
    assert_eq!(first.floor_stop.map(|s| s.step), second.floor_stop.map(|s| s.step));

    let resumed = resume::<f32>(a.path(), &Silent, &CancelToken::new()).unwrap();
    assert!(resumed.was_complete(), "start {} end {}", resumed.start_step, resumed.end_step);
    assert_eq!(resumed.floor_stop.map(|s| s.step), first.floor_stop.map(|s| s.step));
    assert_eq!(bits(&resumed.model.params), bits(&first.model.params));
    assert_eq!(last_metrics_step(a.path()), first.end_step);
}

#[test]
fn a_short_run_that_never_reaches_the_floor_trains_every_step_as_without_the_stop() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on = train::<f32>(&stopping_config(1_000), a.path(), &Silent, &CancelToken::new()).unwrap();
    let mut off = stopping_config(1_000);
    off.train.stop_at_floor = false;
    let off = train::<f32>(&off, b.path(), &Silent, &CancelToken::new()).unwrap();
    assert!(on.floor_stop.is_none());
    assert_eq!(on.end_step, 1_000);
    let bits = |p: &[f32]| p.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&on.model.params), bits(&off.model.params));
}

/// Issue 16, item 10: the default study's training curve jumps once the loss
/// is at the floor; the report's first figure says so, with the steps and
/// values of metrics.csv, instead of showing it unexplained.
#[test]
fn regression_the_default_training_curve_jump_is_explained_in_its_caption() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::common::physlens(&["run", "--out", "out", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let html = std::fs::read_to_string(dir.path().join("out/report.html")).unwrap();
    let doc = scraper::Html::parse_document(&html);
    for case in ["undamped", "damped"] {
        let selector = scraper::Selector::parse(&format!("figure#{case}-training figcaption")).unwrap();
        let caption: String = doc.select(&selector).next().unwrap().text().collect();
        assert!(caption.contains("The validation MSE jumps") && caption.contains("floating-point floor"), "{caption}");
        // The low it names is metrics.csv's lowest validation MSE before the jump, at that step.
        let metrics = std::fs::read_to_string(dir.path().join(format!("out/{case}/metrics.csv"))).unwrap();
        let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
        let (col_step, col_valid) =
            (header.iter().position(|h| *h == "step").unwrap(), header.iter().position(|h| *h == "valid_mse").unwrap());
        let rows: Vec<(u64, f64)> = metrics
            .lines()
            .skip(1)
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| !f[col_valid].is_empty())
            .map(|f| (f[col_step].parse().unwrap(), f[col_valid].parse().unwrap()))
            .collect();
        let mut low = (0, f64::INFINITY);
        for &(step, v) in &rows {
            if v > 100.0 * low.1 {
                break;
            }
            if v < low.1 {
                low = (step, v);
            }
        }
        assert!(caption.contains(&format!("by step {}", low.0)), "{caption}");
    }
}
