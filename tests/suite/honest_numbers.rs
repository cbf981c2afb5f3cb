//! Numbers that stay honest (a new user's first afternoon): each test is one
//! place where the tool used to print something untrue, named for what broke.

use physlens::System;
use physlens::eval::{Start, rollout};
use physlens::physics::Oscillator;

use crate::handbuilt::{gauge, two_head_model};

/// A damped model within rounding of the exact map, with a small offset `c`:
/// its rollout sits at the fixed point `(I − M)⁻¹ c` once the exact state has
/// decayed. The relative error then grew to 1.1e13 at step 5000 and NaN/inf at
/// 100 000 (exit 0). The error relative to the initial state stays small, the
/// step from which the fixed point dominates is named, and no file holds NaN
/// or inf.
#[test]
fn a_decayed_rollout_reports_the_error_vs_the_initial_state_and_never_nan() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let m = osc.propagator(0.1);
    let model = two_head_model(m, [1e-9, -2e-9], gauge(3), 3);
    let starts = [[1.0, 0.0], [0.2, -0.9], [-0.4, 0.3]];
    let r = rollout(&model, &Start::all(System::new(osc.omega0, osc.gamma, 0.1), &starts), 100_000);
    let s = r.summary();
    assert!(s.median_err_vs_initial_final < 1e-7, "{s:?}");
    assert!(s.max_err_vs_initial < 1e-7, "{s:?}");
    let from = s.fixed_point_dominated_from.expect("the fixed point dominates once the state decays");
    assert!((100..5000).contains(&from), "fixed point named from step {from}");
    // Before that step the relative error is the model's, small; after it, large.
    assert!(r.stats[from / 2].median_rel_err < 1e-6);
    assert!(r.stats[5000].median_rel_err > 1.0);
    assert_eq!(s.diverged_at, None);
    // The exact state underflows to 0 long before step 100 000: the relative
    // error is undefined there, written as null / an empty field.
    assert!(s.median_rel_err_final.is_nan());
    let json = serde_json::to_string(&s).unwrap();
    assert!(json.contains("\"median_rel_err_final\":null"), "{json}");
    for text in [json, r.stats_csv(), r.trajectories_csv(3)] {
        let lower = text.to_lowercase();
        assert!(!lower.contains("nan") && !lower.contains("inf"), "non-finite number written");
    }
}

/// A model without offset never gets a fixed-point note, however long it runs.
#[test]
fn a_model_without_offset_has_no_fixed_point_step() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let mut model = two_head_model(osc.propagator(0.1), [0.0, 0.0], gauge(4), 4);
    let l = model.layout.clone();
    for i in l.b_e.chain(l.b_u) {
        model.params[i] = 0.0;
    }
    let r = rollout(&model, &Start::all(System::new(osc.omega0, osc.gamma, 0.1), &[[1.0, 0.5]]), 3000);
    assert_eq!(r.summary().fixed_point_dominated_from, None);
    assert!(r.stats.iter().all(|s| s.zero_start_norm == 0.0));
}

/// Trains an f64 context-1 model on data made with `generator` at `dt`
/// (γ = 0) and loads its checkpoint.
fn trained_on(generator: &str, dt: f64, dir: &std::path::Path) -> physlens::Checkpoint {
    let text = format!(
        "[system]\ngamma = 0.0\ndt = {dt}\ngenerator = \"{generator}\"\n[data]\nn_train = 20000\nn_valid = 256\n\
         [train]\ndtype = \"f64\"\nsteps = 12000\nlr = 3e-3\n"
    );
    let config = physlens::Config::parse(&text, "control").unwrap();
    let out = dir.join(format!("{generator}-{dt}"));
    physlens::train::<f64>(&config, &out, &physlens::Silent, &physlens::CancelToken::new()).unwrap();
    physlens::model::checkpoint::load(&out.join("model.safetensors")).unwrap()
}

/// The positive control the truncation-order analysis lacked: models trained
/// on `euler`, `leapfrog` and `rk4` data are read back as those rules, and the
/// slope of their distance to the exact map across Δt is 2, 3 and 5.
#[test]
fn models_trained_on_a_rules_data_are_read_back_as_that_rule_with_its_order() {
    let dir = tempfile::tempdir().unwrap();
    let opts = physlens::InterpretOptions { n_valid: 64, ..Default::default() };
    for (generator, slope) in [("euler", 2.0), ("leapfrog", 3.0), ("rk4", 5.0)] {
        let ckpts: Vec<_> = [0.1, 0.2, 0.4].iter().map(|&dt| trained_on(generator, dt, dir.path())).collect();
        let files: Vec<String> = (0..3).map(|i| format!("{generator}-{i}")).collect();
        let multi = physlens::interpret::full::interpret_many(&ckpts, &files, &opts).unwrap();
        for m in &multi.models {
            assert_eq!(m.map.nearest_method, generator, "read back as {}", m.map.nearest_method);
            assert!(m.map.identifiable, "{generator}: margin {}", m.map.margin);
        }
        let fit = multi.truncation_order.unwrap_or_else(|| panic!("{:?}", multi.truncation_order_unavailable));
        assert!((fit.slope - slope).abs() < 0.2, "{generator}: slope {}", fit.slope);
    }
}

/// "slope 0.281 … a method of order −0.72, R² 0.42" was named from models
/// at the f32 floor of the exact map; two models gave R² 1.0. Now no order is
/// named from fewer than three Δt, from models that run the exact map, or
/// from distances at a model's own floor, and the reason is given.
#[test]
fn no_truncation_order_is_named_from_noise() {
    use physlens::interpret::order::{OrderPoint, fit_order};
    let point = |dt: f64, error: f64, nearest: &str| OrderPoint {
        model: format!("m{dt}"),
        dt,
        error_vs_exact: error,
        omega0: 2.0,
        gamma: 0.0,
        nearest_method: nearest.into(),
        identifiable: true,
        generator: "exact".into(),
        distance_to_generator: f64::NAN,
        rounding_floor: 2.4e-6,
    };
    let two = fit_order(vec![point(0.1, 1e-2, "euler"), point(0.2, 4e-2, "euler")]).unwrap_err();
    assert!(two.contains("three or more"), "{two}");
    let at_floor = [0.05, 0.1, 0.2, 0.4].map(|dt| point(dt, 3e-8 * (1.0 + dt), "exact"));
    let exact = fit_order(at_floor.to_vec()).unwrap_err();
    assert!(exact.contains("runs the exact map"), "{exact}");
    let noisy = [0.05, 0.1, 0.2].map(|dt| OrderPoint { identifiable: false, ..point(dt, 1e-6, "rk4") });
    let rounding = fit_order(noisy.to_vec()).unwrap_err();
    assert!(rounding.contains("rounding floor"), "{rounding}");
    let own = [0.05, 0.1, 0.2].map(|dt| OrderPoint {
        generator: "rk4".into(),
        distance_to_generator: 1e-3,
        ..point(dt, 2e-3, "rk4")
    });
    let floor = fit_order(own.to_vec()).unwrap_err();
    assert!(floor.contains("own error floor"), "{floor}");
}

/// A rollout that diverges is not said to settle at a fixed point as well
/// (two eight-layer in-context models were given both notes).
#[test]
fn a_diverging_rollout_names_no_fixed_point() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let m = physlens::util::mat2::scale(&osc.propagator(0.1), 3.0);
    let model = two_head_model(m, [1e-3, 0.0], gauge(5), 5);
    let r = rollout(&model, &Start::all(System::new(2.0, 0.1, 0.1), &[[1.0, 0.0], [0.2, 0.3]]), 2000);
    let s = r.summary();
    assert!(s.diverged_at.is_some(), "{s:?}");
    assert_eq!(s.fixed_point_dominated_from, None);
}
