//! Numbers that stay honest (a new user's first afternoon): each test is one
//! place where the tool used to print something untrue, named for what broke.

use physlens::eval::rollout;
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
    let r = rollout(&model, &osc, 0.1, &starts, 100_000);
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
    for text in [json, r.stats_csv(), r.trajectories_csv(3, 0.1)] {
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
    let r = rollout(&model, &osc, 0.1, &[[1.0, 0.5]], 3000);
    assert_eq!(r.summary().fixed_point_dominated_from, None);
    assert!(r.stats.iter().all(|s| s.zero_start_norm == 0.0));
}
