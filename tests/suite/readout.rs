//! Reading (ω0, γ) and the update rule back from 2×2 maps built with a known
//! answer.

use std::f64::consts::PI;

use physlens::physics::Oscillator;
use physlens::physics::readout::{RuleDistance, best_fit, ratio_omega0_sq, rule_distances, spectral, verdict};
use physlens::physics::rules::{RULES, rule_map};
use physlens::util::mat2::eigenvalues;

type M = [[f64; 2]; 2];

fn exact(omega0: f64, gamma: f64, dt: f64) -> M {
    Oscillator { omega0, gamma }.propagator(dt)
}

fn frob(m: &M) -> f64 {
    m.iter().flatten().map(|x| x * x).sum::<f64>().sqrt()
}

fn diff(a: &M, b: &M) -> M {
    [[a[0][0] - b[0][0], a[0][1] - b[0][1]], [a[1][0] - b[1][0], a[1][1] - b[1][1]]]
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

// ------------------------------------------------------- spectral readout

#[test]
fn spectral_recovers_underdamped_parameters() {
    for &omega0 in &[0.5, 1.0, 2.0, 5.0] {
        for &f in &[0.0, 0.1, 0.5, 0.9] {
            for &dt in &[0.01, 0.1, 0.3] {
                let gamma = f * omega0;
                let osc = Oscillator { omega0, gamma };
                let r = spectral(&osc.propagator(dt), dt);
                let tol = 1e-12 * omega0;
                let ctx = format!("ω0={omega0} γ={gamma} dt={dt}: {r:?}");
                assert!(close(r.omega0, omega0, tol), "{ctx}");
                assert!(close(r.gamma, gamma, tol), "{ctx}");
                assert!(close(r.omega, osc.omega(), tol), "{ctx}");
                assert!(r.oscillatory && r.identifiable, "{ctx}");
            }
        }
    }
}

#[test]
fn spectral_reads_overdamped_and_critical_maps_from_real_eigenvalues() {
    for &(omega0, gamma, dt) in &[(1.0, 1.5, 0.1), (0.5, 3.0, 0.3), (2.0, 2.0 + 1e-3, 0.1)] {
        let r = spectral(&exact(omega0, gamma, dt), dt);
        assert!(!r.oscillatory && !r.identifiable, "{r:?}");
        assert_eq!(r.omega, 0.0);
        assert!(close(r.gamma, gamma, 1e-12 * gamma), "{r:?}");
        assert!(close(r.omega0, omega0, 1e-10 * omega0), "{r:?}");
    }
    // critical damping: a double eigenvalue, either branch must read ω0 = γ
    for &(omega0, dt) in &[(1.0, 0.1), (2.0, 0.3)] {
        let r = spectral(&exact(omega0, omega0, dt), dt);
        assert!(close(r.gamma, omega0, 1e-12 * omega0), "{r:?}");
        assert!(close(r.omega0, omega0, 1e-10 * omega0), "{r:?}");
        assert!(r.omega < 1e-6, "{r:?}");
    }
}

#[test]
fn spectral_flags_aliased_frequency() {
    for &gamma in &[0.0, 0.2] {
        // ωΔt just below π: fine; at and above: aliased
        let dt = 1.0;
        let below = spectral(&exact((PI * (1.0 - 1e-6)).hypot(gamma), gamma, dt), dt);
        assert!(below.identifiable, "{below:?}");
        for &omega_dt in &[PI * (1.0 + 1e-6), 4.0, 5.0, 7.0, 8.0, 13.0] {
            let omega0 = omega_dt.hypot(gamma);
            let r = spectral(&exact(omega0, gamma, dt), dt);
            assert!(!r.identifiable, "ωΔt={omega_dt}: {r:?}");
            // what the argument alone reports is the aliased value
            let folded = (omega_dt + PI).rem_euclid(2.0 * PI) - PI;
            if r.oscillatory {
                assert!(close(r.omega, folded.abs(), 1e-9), "ωΔt={omega_dt}: {r:?}");
            }
        }
    }
}

#[test]
fn spectral_flags_maps_without_oscillator_reading() {
    // negative real eigenvalues: det > 0 but no ω0
    let r = spectral(&[[-0.5, 0.0], [0.0, -0.25]], 0.1);
    assert!(!r.oscillatory && !r.identifiable);
    assert!(r.gamma.is_finite() && r.omega0.is_nan(), "{r:?}");
    // det ≤ 0: no γ
    let r = spectral(&[[1.0, 0.0], [0.0, -0.5]], 0.1);
    assert!(r.gamma.is_nan() && r.omega0.is_nan(), "{r:?}");
    // a growing mode (λ > 1): ω0² < 0
    let r = spectral(&[[1.2, 0.0], [0.0, 0.5]], 0.1);
    assert!(r.omega0.is_nan(), "{r:?}");
}

#[test]
fn ratio_gives_omega0_squared_on_any_exact_map() {
    for &(omega0, gamma, dt) in &[(2.0, 0.1, 0.1), (2.0, 0.0, 0.1), (1.0, 1.0, 0.3), (1.0, 2.5, 0.3), (7.0, 0.5, 1.0)] {
        let got = ratio_omega0_sq(&exact(omega0, gamma, dt));
        assert!(close(got, omega0 * omega0, 1e-12 * omega0 * omega0), "{got}");
    }
    assert_eq!(ratio_omega0_sq(&[[1.0, 2.0], [3.0, 4.0]]), -1.5);
}

#[test]
fn eigenvalues_are_ordered_and_match_the_exact_spectrum() {
    let (omega0, gamma, dt) = (2.0, 0.1, 0.1);
    let [a, b] = eigenvalues(&exact(omega0, gamma, dt));
    let w = Oscillator { omega0, gamma }.omega();
    assert!(a.im > 0.0 && b.im < 0.0 && a.re == b.re);
    assert!(close(a.abs(), (-gamma * dt).exp(), 1e-15));
    assert!(close(a.arg(), w * dt, 1e-14));
    let [l1, l2] = eigenvalues(&[[2.0, 0.0], [0.0, 5.0]]);
    assert_eq!((l1.re, l2.re, l1.im, l2.im), (5.0, 2.0, 0.0, 0.0));
    let [l1, l2] = eigenvalues(&[[-3.0, 1.0], [0.0, 1.0]]);
    assert_eq!((l1.re, l2.re), (1.0, -3.0));
    // no cancellation: λ = 1e8 and 1e-8
    let [l1, l2] = eigenvalues(&[[1e8, 1.0], [0.0, 1e-8]]);
    assert!(close(l1.re, 1e8, 1e-7) && close(l2.re, 1e-8, 1e-23), "{l1:?} {l2:?}");
}

// ---------------------------------------------------------------- best fit

const FIT_CASES: [(f64, f64, f64); 10] = [
    (2.0, 0.1, 0.1),
    (2.0, 0.0, 0.1),
    (0.5, 0.2, 0.01),
    (5.0, 4.0, 0.3),
    (1.0, 1.0, 0.1),
    (1.0, 1.0 + 1e-6, 0.1),
    (1.0, 1.5, 0.1),
    (0.5, 3.0, 0.3),
    (5.0, 0.1, 1.0), // ωΔt ≈ 5 > π: aliased for the spectral reading
    (7.0, 0.3, 1.0), // ωΔt ≈ 7 > 2π
];

#[test]
fn best_fit_recovers_exact_maps() {
    for &(omega0, gamma, dt) in &FIT_CASES {
        let fit = best_fit(&exact(omega0, gamma, dt), dt);
        let ctx = format!("ω0={omega0} γ={gamma} dt={dt}: {fit:?}");
        assert!(close(fit.omega0, omega0, 1e-9 * omega0), "{ctx}");
        assert!(close(fit.gamma, gamma, 1e-9 * omega0), "{ctx}");
        assert!(fit.residual <= 1e-12, "{ctx}");
    }
}

/// A unit vector orthogonal to both tangents of the exact-map surface at
/// (ω0, γ) (central differences), built from `seed` by Gram–Schmidt.
fn unit_normal(omega0: f64, gamma: f64, dt: f64, seed: [f64; 4]) -> [f64; 4] {
    let flat = |m: M| [m[0][0], m[0][1], m[1][0], m[1][1]];
    let h = 1e-6;
    let t1: Vec<f64> = (0..4)
        .map(|i| (flat(exact(omega0 + h, gamma, dt))[i] - flat(exact(omega0 - h, gamma, dt))[i]) / (2.0 * h))
        .collect();
    let t2: Vec<f64> = (0..4)
        .map(|i| (flat(exact(omega0, gamma + h, dt))[i] - flat(exact(omega0, gamma - h, dt))[i]) / (2.0 * h))
        .collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut basis: Vec<Vec<f64>> = Vec::new();
    for v in [t1, t2, seed.to_vec()] {
        let mut v = v;
        for b in &basis {
            let c = dot(&v, b);
            v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
        }
        let n = dot(&v, &v).sqrt();
        basis.push(v.iter().map(|x| x / n).collect());
    }
    let n = &basis[2];
    [n[0], n[1], n[2], n[3]]
}

#[test]
fn best_fit_residual_equals_size_of_normal_perturbation() {
    let eps = 1e-6;
    for &(omega0, gamma, dt) in &[(2.0, 0.1, 0.1), (1.0, 1.5, 0.1), (5.0, 4.0, 0.3)] {
        let n = unit_normal(omega0, gamma, dt, [0.3, -0.7, 0.2, 0.9]);
        let m0 = exact(omega0, gamma, dt);
        let m = [[m0[0][0] + eps * n[0], m0[0][1] + eps * n[1]], [m0[1][0] + eps * n[2], m0[1][1] + eps * n[3]]];
        let fit = best_fit(&m, dt);
        let ctx = format!("ω0={omega0} γ={gamma}: {fit:?}");
        assert!(close(fit.residual, eps, 1e-4 * eps), "{ctx}");
        // a normal perturbation leaves the nearest point where it was
        assert!(close(fit.omega0, omega0, 1e-8), "{ctx}");
        assert!(close(fit.gamma, gamma, 1e-8), "{ctx}");
    }
}

#[test]
fn best_fit_residual_is_at_most_a_generic_perturbation() {
    let eps = 1e-6;
    let (omega0, gamma, dt) = (2.0, 0.1, 0.1);
    let m0 = exact(omega0, gamma, dt);
    let m = [[m0[0][0] + eps, m0[0][1]], [m0[1][0], m0[1][1]]];
    let fit = best_fit(&m, dt);
    assert!(fit.residual <= eps * (1.0 + 1e-6), "{fit:?}");
    assert!(fit.residual >= 0.1 * eps, "{fit:?}");
    // and it is a stationary point: no nearby (ω0, γ) does better
    for &(d0, dg) in &[(1e-5, 0.0), (-1e-5, 0.0), (0.0, 1e-5), (0.0, -1e-5)] {
        let r = frob(&diff(&m, &exact(fit.omega0 + d0, fit.gamma + dg, dt)));
        assert!(r >= fit.residual, "({d0}, {dg}): {r} < {}", fit.residual);
    }
}

#[test]
fn best_fit_keeps_gamma_on_its_bound_for_an_energy_gaining_map() {
    // det M > 1: the unconstrained optimum has γ < 0, so the fit must sit on
    // γ = 0 at the best ω0 along that edge.
    let dt = 0.1;
    let m0 = exact(2.0, 0.0, dt);
    let grow = 1.0 + 1e-4;
    let m = [[grow * m0[0][0], grow * m0[0][1]], [grow * m0[1][0], grow * m0[1][1]]];
    let fit = best_fit(&m, dt);
    assert_eq!(fit.gamma, 0.0, "{fit:?}");
    assert!(close(fit.omega0, 2.0, 1e-3), "{fit:?}");
    let at = |omega0: f64, gamma: f64| frob(&diff(&m, &exact(omega0, gamma, dt)));
    assert!(close(at(fit.omega0, 0.0), fit.residual, 1e-15));
    for &(d0, dg) in &[(1e-6, 0.0), (-1e-6, 0.0), (0.0, 1e-6), (1e-6, 1e-6), (-1e-6, 1e-6)] {
        let r = at(fit.omega0 + d0, dg);
        assert!(r >= fit.residual, "({d0}, {dg}): {r:e} < {:e}", fit.residual);
    }
}

// -------------------------------------------------- rules and the verdict

#[test]
fn rule_distances_are_sorted_and_find_the_generating_rule() {
    for &(omega0, gamma, dt) in &[(2.0, 0.1, 0.1), (2.0, 0.0, 0.1), (1.0, 1.5, 0.2)] {
        let osc = Oscillator { omega0, gamma };
        for name in RULES {
            let m = rule_map(name, &osc, dt).unwrap();
            let ds = rule_distances(&m, &osc, dt);
            assert_eq!(ds.len(), RULES.len());
            assert!(ds.windows(2).all(|w| w[0].distance <= w[1].distance), "{ds:?}");
            assert_eq!(ds[0].name, name);
            assert_eq!(ds[0].distance, 0.0);
            let v = verdict(&ds, &m, &osc, dt);
            assert_eq!(v.nearest_method, name);
            assert_eq!(v.margin, f64::INFINITY);
            assert!(v.identifiable);
            let want = frob(&diff(&m, &osc.propagator(dt)));
            assert!(close(v.error_vs_exact, want, 1e-15 * want), "{v:?}");
        }
    }
}

#[test]
fn verdict_margin_separates_close_and_far_runner_up() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let dt = 0.1;
    let ex = osc.propagator(dt);
    let rk4 = rule_map("rk4", &osc, dt).unwrap();
    // 1% of the way from exact to rk4: margin 99, identifiable
    let near = [
        [ex[0][0] + 0.01 * (rk4[0][0] - ex[0][0]), ex[0][1] + 0.01 * (rk4[0][1] - ex[0][1])],
        [ex[1][0] + 0.01 * (rk4[1][0] - ex[1][0]), ex[1][1] + 0.01 * (rk4[1][1] - ex[1][1])],
    ];
    let v = verdict(&rule_distances(&near, &osc, dt), &near, &osc, dt);
    assert_eq!(v.nearest_method, "exact");
    // (entries are rounded to ~1e-16 absolute, distances are ~1e-8)
    assert!(close(v.margin, 99.0, 1e-4), "{v:?}");
    assert!(v.identifiable);
    let want = 0.01 * frob(&diff(&rk4, &ex));
    assert!(close(v.error_vs_exact, want, 1e-6 * want), "{v:?}");
    // 45% of the way: margin 55/45, not identifiable
    let mid = [
        [ex[0][0] + 0.45 * (rk4[0][0] - ex[0][0]), ex[0][1] + 0.45 * (rk4[0][1] - ex[0][1])],
        [ex[1][0] + 0.45 * (rk4[1][0] - ex[1][0]), ex[1][1] + 0.45 * (rk4[1][1] - ex[1][1])],
    ];
    let v = verdict(&rule_distances(&mid, &osc, dt), &mid, &osc, dt);
    assert_eq!(v.nearest_method, "exact");
    assert!(close(v.margin, 55.0 / 45.0, 1e-4), "{v:?}");
    assert!(!v.identifiable);
}

#[test]
fn verdict_margin_edge_cases() {
    let osc = Oscillator { omega0: 1.0, gamma: 0.0 };
    let m = osc.propagator(0.1);
    let rd =
        |name: &str, distance: f64| RuleDistance { name: name.to_string(), distance, eigenvalues: Default::default() };
    let v = verdict(&[rd("a", 1.0), rd("b", 10.0)], &m, &osc, 0.1);
    assert_eq!((v.margin, v.identifiable), (10.0, true));
    let v = verdict(&[rd("a", 1.0), rd("b", 9.99)], &m, &osc, 0.1);
    assert!(!v.identifiable);
    let v = verdict(&[rd("a", 0.0), rd("b", 0.0)], &m, &osc, 0.1);
    assert_eq!((v.margin, v.identifiable), (1.0, false));
    let v = verdict(&[rd("a", 0.0), rd("b", 1e-300)], &m, &osc, 0.1);
    assert_eq!((v.margin, v.identifiable), (f64::INFINITY, true));
    assert_eq!(v.nearest_method, "a");
    assert_eq!(v.error_vs_exact, 0.0);
}
