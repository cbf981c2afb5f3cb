//! Candidate update rules: orders of accuracy, structure, and agreement with
//! the step-by-step formulas of docs/physics.md.

use crate::common::{M, mm, mv};
use physlens::physics::Oscillator;
use physlens::physics::rules::{RULES, all_rules, rule_map};

fn frob_diff(a: &M, b: &M) -> f64 {
    let mut sum = 0.0;
    for i in 0..2 {
        for j in 0..2 {
            sum += (a[i][j] - b[i][j]).powi(2);
        }
    }
    sum.sqrt()
}

fn det(m: &M) -> f64 {
    m[0][0] * m[1][1] - m[0][1] * m[1][0]
}

fn rule(name: &str, osc: &Oscillator, h: f64) -> M {
    rule_map(name, osc, h).unwrap_or_else(|| panic!("rule {name} missing"))
}

/// I + s·A·h for the oscillator's generator, written out by hand.
fn id_plus(osc: &Oscillator, h: f64, s: f64) -> M {
    let w2 = osc.omega0 * osc.omega0;
    [[1.0, s * h], [-s * w2 * h, 1.0 - s * 2.0 * osc.gamma * h]]
}

/// Least-squares slope of ln d(h) against ln h over `hs`, with d the
/// Frobenius distance of `name` from the exact propagator.
fn local_error_order(name: &str, osc: &Oscillator, hs: &[f64]) -> f64 {
    let pts: Vec<(f64, f64)> = hs
        .iter()
        .map(|&h| {
            let d = frob_diff(&rule(name, osc, h), &rule("exact", osc, h));
            (h.ln(), d.ln())
        })
        .collect();
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    sxy / sxx
}

/// Steps of the order fits for rk4 and euler.
const BRIEF_HS: [f64; 3] = [0.1, 0.05, 0.025];
/// Steps deep in the asymptotic regime, for the other rules (the h^{p+2}
/// term is not negligible at h = 0.1 when ‖A‖ ≈ 3).
const SMALL_HS: [f64; 3] = [0.004, 0.002, 0.001];

const OSCS: [Oscillator; 3] = [
    Oscillator { omega0: 2.0, gamma: 0.0 },
    Oscillator { omega0: 2.0, gamma: 0.1 },
    Oscillator { omega0: 1.0, gamma: 1.5 },
];

#[test]
fn rk4_local_error_is_fifth_order() {
    for osc in &OSCS {
        let slope = local_error_order("rk4", osc, &BRIEF_HS);
        assert!((slope - 5.0).abs() < 0.1, "{osc:?}: slope {slope}");
    }
}

#[test]
fn euler_local_error_is_second_order() {
    for osc in &OSCS {
        let slope = local_error_order("euler", osc, &BRIEF_HS);
        assert!((slope - 2.0).abs() < 0.1, "{osc:?}: slope {slope}");
    }
}

#[test]
fn other_rules_have_their_textbook_local_order() {
    // local error O(h^{p+1}) for a method of order p
    for osc in &OSCS {
        for &(name, want) in
            &[("implicit_euler", 2.0), ("crank_nicolson", 3.0), ("rk2", 3.0), ("rk3", 4.0), ("symplectic_euler", 2.0)]
        {
            let slope = local_error_order(name, osc, &SMALL_HS);
            assert!((slope - want).abs() < 0.1, "{name} {osc:?}: slope {slope}");
        }
    }
}

#[test]
fn leapfrog_is_second_order_only_without_damping() {
    // With γ = 0 kick-drift-kick is Störmer–Verlet: local error O(h³).
    let undamped = local_error_order("leapfrog", &OSCS[0], &BRIEF_HS);
    assert!((undamped - 3.0).abs() < 0.1, "slope {undamped}");
    // With γ > 0 the documented second half-kick takes the friction at p½, not
    // at p', which costs one order: local error O(h²) (next test).
    for osc in &OSCS[1..] {
        let slope = local_error_order("leapfrog", osc, &SMALL_HS);
        assert!((slope - 2.0).abs() < 0.1, "{osc:?}: slope {slope}");
    }
}

#[test]
fn leapfrog_leading_error_with_damping_is_minus_b_squared_over_four() {
    // K½ D K½ = I + Ah + h²(BN + NB + B²/2)/2 + O(h³) with B the force part
    // [[0, 0], [−ω0², −2γ]] and N the drift part [[0, 1], [0, 0]] of A = N + B,
    // while exp(Ah) has h²(NB + BN + B²)/2: the difference is −h² B²/4,
    // B² = [[0, 0], [2γω0², 4γ²]].
    for osc in &OSCS[1..] {
        let h = 1e-4;
        let lf = rule("leapfrog", osc, h);
        let ex = rule("exact", osc, h);
        let (w2, g) = (osc.omega0 * osc.omega0, osc.gamma);
        let want = [[0.0, 0.0], [-0.5 * g * w2, -g * g]];
        let got = [
            [(lf[0][0] - ex[0][0]) / (h * h), (lf[0][1] - ex[0][1]) / (h * h)],
            [(lf[1][0] - ex[1][0]) / (h * h), (lf[1][1] - ex[1][1]) / (h * h)],
        ];
        assert!(frob_diff(&got, &want) <= 1e-3, "{osc:?}: {got:?} vs {want:?}");
    }
}

#[test]
fn symplectic_rules_preserve_area_without_damping() {
    for &omega0 in &[0.5, 2.0, 5.0] {
        let osc = Oscillator { omega0, gamma: 0.0 };
        for &h in &[0.01, 0.1, 0.5] {
            for name in ["symplectic_euler", "leapfrog"] {
                let d = det(&rule(name, &osc, h));
                assert!((d - 1.0).abs() <= 1e-14, "{name} ω0={omega0} h={h}: {d}");
            }
            // a non-symplectic rule does not
            assert!((det(&rule("euler", &osc, h)) - 1.0).abs() > 1e-6);
        }
    }
}

#[test]
fn leapfrog_matches_kick_drift_kick_step_by_step() {
    for osc in &OSCS {
        let (w2, g) = (osc.omega0 * osc.omega0, osc.gamma);
        let f = |x: f64, p: f64| -w2 * x - 2.0 * g * p;
        for &h in &[0.01, 0.1, 0.7] {
            let m = rule("leapfrog", osc, h);
            let (mut x, mut p) = (0.8, -0.3);
            let mut s = [x, p];
            for step in 0..100 {
                let p_half = p + 0.5 * h * f(x, p);
                x += h * p_half;
                p = p_half + 0.5 * h * f(x, p_half);
                s = mv(&m, s);
                let err = (s[0] - x).abs().max((s[1] - p).abs());
                assert!(err <= 1e-13 * (1.0 + x.abs() + p.abs()), "{osc:?} h={h} step {step}");
            }
        }
    }
}

#[test]
fn symplectic_euler_matches_kick_then_drift_step_by_step() {
    for osc in &OSCS {
        let (w2, g) = (osc.omega0 * osc.omega0, osc.gamma);
        for &h in &[0.01, 0.1, 0.7] {
            let m = rule("symplectic_euler", osc, h);
            let (mut x, mut p) = (0.8, -0.3);
            let mut s = [x, p];
            for step in 0..100 {
                p += h * (-w2 * x - 2.0 * g * p);
                x += h * p;
                s = mv(&m, s);
                let err = (s[0] - x).abs().max((s[1] - p).abs());
                assert!(err <= 1e-13 * (1.0 + x.abs() + p.abs()), "{osc:?} h={h} step {step}");
            }
        }
    }
}

#[test]
fn crank_nicolson_is_the_one_one_pade_approximant() {
    // (I − Ah/2) M = I + Ah/2
    for osc in &OSCS {
        for &h in &[0.01, 0.1, 1.0] {
            let m = rule("crank_nicolson", osc, h);
            let lhs = mm(&id_plus(osc, h, -0.5), &m);
            let rhs = id_plus(osc, h, 0.5);
            assert!(frob_diff(&lhs, &rhs) <= 1e-14, "{osc:?} h={h}");
        }
    }
}

#[test]
fn implicit_euler_inverts_i_minus_ah() {
    for osc in &OSCS {
        for &h in &[0.01, 0.1, 1.0] {
            let m = rule("implicit_euler", osc, h);
            let prod = mm(&id_plus(osc, h, -1.0), &m);
            assert!(frob_diff(&prod, &[[1.0, 0.0], [0.0, 1.0]]) <= 1e-14);
        }
    }
}

#[test]
fn explicit_rules_are_taylor_polynomials() {
    for osc in &OSCS {
        let h = 0.3;
        let ah = {
            let a = id_plus(osc, h, 1.0);
            [[a[0][0] - 1.0, a[0][1]], [a[1][0], a[1][1] - 1.0]]
        };
        let mut term = [[1.0, 0.0], [0.0, 1.0]];
        let mut sum = term;
        for (k, name) in ["euler", "rk2", "rk3", "rk4"].iter().enumerate() {
            term = mm(&term, &ah);
            let inv_k = 1.0 / (k + 1) as f64;
            for row in term.iter_mut() {
                for x in row.iter_mut() {
                    *x *= inv_k;
                }
            }
            for i in 0..2 {
                for j in 0..2 {
                    sum[i][j] += term[i][j];
                }
            }
            assert!(frob_diff(&rule(name, osc, h), &sum) <= 1e-15, "{name}");
        }
    }
}

#[test]
fn exact_rule_is_the_propagator() {
    for osc in &OSCS {
        assert_eq!(rule("exact", osc, 0.1), osc.propagator(0.1));
    }
}

#[test]
fn unknown_names_give_none() {
    let osc = OSCS[1];
    for name in ["", "RK4", "verlet", "exact ", "midpoint"] {
        assert!(rule_map(name, &osc, 0.1).is_none(), "{name:?}");
    }
}

#[test]
fn all_rules_lists_every_rule_in_order() {
    let osc = OSCS[1];
    let all = all_rules(&osc, 0.1);
    let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, RULES.to_vec());
    for (name, m) in &all {
        assert_eq!(*m, rule(name, &osc, 0.1));
    }
}
