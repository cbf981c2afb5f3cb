//! The oscillator's propagator against an independent matrix exponential, and
//! the physics it must obey (composition, determinant, energy).

use crate::common::{M, mm, mv};
use physlens::physics::{Oscillator, Regime};

// ------------------------------------------------ independent reference

/// exp(a) by scaling and squaring with a degree-24 Taylor polynomial on
/// a / 2^s, ‖a / 2^s‖∞ ≤ 1/8 (truncation < 1e-40).
fn expm(a: &M) -> M {
    let norm = (a[0][0].abs() + a[0][1].abs()).max(a[1][0].abs() + a[1][1].abs());
    let mut s = 0;
    while norm / f64::powi(2.0, s) > 0.125 {
        s += 1;
    }
    let k = f64::powi(2.0, -s);
    let b = [[a[0][0] * k, a[0][1] * k], [a[1][0] * k, a[1][1] * k]];
    let mut term = [[1.0, 0.0], [0.0, 1.0]];
    let mut sum = term;
    for n in 1..=24 {
        term = mm(&term, &b);
        for row in term.iter_mut() {
            for x in row.iter_mut() {
                *x /= f64::from(n);
            }
        }
        for i in 0..2 {
            for j in 0..2 {
                sum[i][j] += term[i][j];
            }
        }
    }
    for _ in 0..s {
        sum = mm(&sum, &sum);
    }
    sum
}

fn exact_reference(omega0: f64, gamma: f64, dt: f64) -> M {
    expm(&[[0.0, dt], [-omega0 * omega0 * dt, -2.0 * gamma * dt]])
}

/// max_ij |a_ij − b_ij| / max(1, |b_ij|)
fn rel_diff(a: &M, b: &M) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..2 {
        for j in 0..2 {
            worst = worst.max((a[i][j] - b[i][j]).abs() / b[i][j].abs().max(1.0));
        }
    }
    worst
}

fn max_abs_diff(a: &M, b: &M) -> f64 {
    let mut worst: f64 = 0.0;
    for i in 0..2 {
        for j in 0..2 {
            worst = worst.max((a[i][j] - b[i][j]).abs());
        }
    }
    worst
}

const OMEGA0S: [f64; 4] = [0.5, 1.0, 2.0, 5.0];
const DTS: [f64; 5] = [0.01, 0.1, 0.3, 0.5, 1.0];
/// γ / ω0: all regimes, and both sides of γ = ω0 at 1e-9, 1e-6, 1e-3.
const GAMMA_FACTORS: [f64; 15] = [
    0.0,
    0.1,
    0.5,
    0.9,
    1.0 - 1e-3,
    1.0 - 1e-6,
    1.0 - 1e-9,
    1.0,
    1.0 + 1e-9,
    1.0 + 1e-6,
    1.0 + 1e-3,
    1.1,
    1.5,
    3.0,
    6.0,
];

fn grid() -> Vec<(Oscillator, f64)> {
    let mut cases = Vec::new();
    for &omega0 in &OMEGA0S {
        for &f in &GAMMA_FACTORS {
            for &dt in &DTS {
                let gamma = f * omega0;
                cases.push((Oscillator { omega0, gamma }, dt));
            }
        }
    }
    cases
}

// ------------------------------------------------------------ tests

#[test]
fn propagator_matches_independent_expm_on_regime_grid() {
    let mut worst: f64 = 0.0;
    for (osc, dt) in grid() {
        let got = osc.propagator(dt);
        let want = exact_reference(osc.omega0, osc.gamma, dt);
        let d = rel_diff(&got, &want);
        assert!(d <= 1e-12, "{osc:?} dt={dt}: diff {d:e}\n{got:?}\n{want:?}");
        worst = worst.max(d);
    }
    println!("worst relative entry difference: {worst:e}");
}

#[test]
fn propagator_matches_expm_on_dense_gamma_sweep() {
    // crosses every internal switch between series and closed forms
    for &(omega0, dt) in &[(2.0, 1.0), (0.5, 0.3), (5.0, 0.1)] {
        for i in 0..=600 {
            let gamma = omega0 * f64::from(i) / 200.0;
            let got = Oscillator { omega0, gamma }.propagator(dt);
            let want = exact_reference(omega0, gamma, dt);
            let d = rel_diff(&got, &want);
            assert!(d <= 1e-12, "ω0={omega0} γ={gamma} dt={dt}: {d:e}");
        }
    }
}

#[test]
fn critical_propagator_equals_spec_closed_form() {
    for &omega0 in &OMEGA0S {
        for &dt in &DTS {
            let osc = Oscillator { omega0, gamma: omega0 };
            assert_eq!(osc.regime(), Regime::Critical);
            let g = omega0;
            let e = (-g * dt).exp();
            let want = [[e * (1.0 + g * dt), e * dt], [-e * omega0 * omega0 * dt, e * (1.0 - g * dt)]];
            let d = rel_diff(&osc.propagator(dt), &want);
            assert!(d <= 1e-15, "ω0={omega0} dt={dt}: {d:e}");
        }
    }
}

#[test]
fn underdamped_propagator_equals_spec_closed_form() {
    // away from the boundary the closed-form formula is itself well conditioned
    for &(omega0, gamma, dt) in &[(2.0f64, 0.1f64, 0.1f64), (2.0, 0.0, 1.0), (5.0, 1.0, 0.5)] {
        let w = (omega0 * omega0 - gamma * gamma).sqrt();
        let (s, c) = (w * dt).sin_cos();
        let e = (-gamma * dt).exp();
        let want = [[e * (c + gamma / w * s), e * s / w], [-e * omega0 * omega0 / w * s, e * (c - gamma / w * s)]];
        let got = Oscillator { omega0, gamma }.propagator(dt);
        assert!(rel_diff(&got, &want) <= 1e-14);
    }
}

#[test]
fn propagator_is_continuous_across_critical_damping() {
    for &omega0 in &OMEGA0S {
        for &dt in &DTS {
            let at = |gamma: f64| Oscillator { omega0, gamma }.propagator(dt);
            // slope dM/dγ at the boundary, by a symmetric difference
            let h = 1e-5 * omega0;
            let slope = max_abs_diff(&at(omega0 + h), &at(omega0 - h)) / (2.0 * h);
            for &rel in &[1e-3, 1e-6, 1e-9, 1e-12, 1e-15] {
                let delta = rel * omega0;
                let jump = max_abs_diff(&at(omega0 + delta), &at(omega0 - delta));
                let bound = 2.0 * delta * slope * 1.01 + 4e-16;
                assert!(jump <= bound, "ω0={omega0} dt={dt} δ={delta:e}: jump {jump:e} > {bound:e}");
            }
        }
    }
}

#[test]
fn propagator_composes_over_time() {
    for (osc, dt) in grid() {
        for &frac in &[0.5, 0.3] {
            let (dt1, dt2) = (frac * dt, (1.0 - frac) * dt);
            let composed = mm(&osc.propagator(dt1), &osc.propagator(dt2));
            let whole = osc.propagator(dt1 + dt2);
            let d = rel_diff(&composed, &whole);
            assert!(d <= 1e-13, "{osc:?} dt={dt} frac={frac}: {d:e}");
        }
    }
}

#[test]
fn determinant_is_exp_of_minus_two_gamma_dt() {
    for (osc, dt) in grid() {
        let m = osc.propagator(dt);
        let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
        let want = (-2.0 * osc.gamma * dt).exp();
        // rounding scale of the determinant from its two products
        let scale = (m[0][0] * m[1][1]).abs() + (m[0][1] * m[1][0]).abs();
        assert!((det - want).abs() <= 1e-14 * scale + 1e-15 * want, "{osc:?} dt={dt}: det {det:e} vs {want:e}");
    }
}

#[test]
fn energy_is_conserved_without_damping() {
    for &omega0 in &OMEGA0S {
        for &dt in &[0.01, 0.1, 1.0] {
            let osc = Oscillator { omega0, gamma: 0.0 };
            let s0 = osc.state_from_energy_phase(0.7, 0.4);
            let e0 = osc.energy(s0);
            let path = osc.trajectory(s0, dt, 1000);
            for (n, s) in path.iter().enumerate() {
                let drift = (osc.energy(*s) - e0).abs() / e0;
                assert!(drift <= 1e-12, "ω0={omega0} dt={dt} step {n}: {drift:e}");
            }
        }
    }
}

/// `S(t)` of the propagator: sin(ωt)/ω, t or sinh(κt)/κ (independent of the
/// library's series).
fn s_of_t(omega0: f64, gamma: f64, t: f64) -> f64 {
    let q = gamma * gamma - omega0 * omega0;
    if q < 0.0 {
        let w = (-q).sqrt();
        (w * t).sin() / w
    } else if q > 0.0 {
        let kappa = q.sqrt();
        (kappa * t).sinh() / kappa
    } else {
        t
    }
}

/// Mean energy at step `n` over `n_phase` equally spaced initial phases of
/// energy `e0` (an exact average for the quadratic `E`, for `n_phase ≥ 3`).
fn phase_averaged_energy(osc: &Oscillator, e0: f64, dt: f64, n: usize, n_phase: usize) -> f64 {
    let m = osc.propagator(dt);
    let mut total = 0.0;
    for k in 0..n_phase {
        let phi = 0.3 + std::f64::consts::TAU * k as f64 / n_phase as f64;
        let mut s = osc.state_from_energy_phase(e0, phi);
        for _ in 0..n {
            s = mv(&m, s);
        }
        total += osc.energy(s);
    }
    total / n_phase as f64
}

/// Phase-averaged energy decay, derived exactly.
///
/// Over a uniform phase, `⟨s0 s0ᵀ⟩ = E0 D⁻¹` with `D = diag(ω0², 1)`, so
/// `⟨E(t)⟩ = (E0/2) ‖D^½ M D^-½‖_F²`. `D^½ A D^-½ = −γI + K` with
/// `K = [[γ, ω0], [−ω0, −γ]]`, `K² = (γ² − ω0²) I`, hence
/// `D^½ M D^-½ = e^{−γt}(C I + S K)` and
/// `⟨E(t)⟩ = E0 e^{−2γt} (C² + (γ² + ω0²) S²) = E0 e^{−2γt} (1 + 2γ² S(t)²)`
/// (using `C² − (γ² − ω0²) S² = 1`), with `S = sin(ωt)/ω`, `t`, `sinh(κt)/κ`.
/// So the phase average is NOT exactly `e^{−2γt}` for γ > 0: it touches
/// `e^{−2γt}` only where `sin ωt = 0` (next test).
#[test]
fn phase_averaged_energy_follows_exact_law() {
    let e0 = 0.8;
    for &(omega0, gamma, dt) in
        &[(2.0, 0.1, 0.1), (2.0, 0.5, 0.1), (1.0, 1.0, 0.05), (1.0, 2.0, 0.05), (5.0, 0.3, 0.01)]
    {
        let osc = Oscillator { omega0, gamma };
        for &n in &[1, 7, 25, 100, 200] {
            let t = n as f64 * dt;
            let got = phase_averaged_energy(&osc, e0, dt, n, 64);
            let s = s_of_t(omega0, gamma, t);
            let want = e0 * (-2.0 * gamma * t).exp() * (1.0 + 2.0 * gamma * gamma * s * s);
            let rel = (got - want).abs() / want;
            assert!(rel <= 1e-11, "ω0={omega0} γ={gamma} t={t}: {got} vs {want}");
        }
    }
}

#[test]
fn phase_averaged_energy_is_pure_exponential_only_at_half_periods() {
    let (omega0, gamma) = (2.0, 0.1);
    let osc = Oscillator { omega0, gamma };
    let half_period = std::f64::consts::PI / osc.omega();
    let dt = half_period / 8.0;
    for &n in &[8, 16, 40] {
        let t = n as f64 * dt;
        let got = phase_averaged_energy(&osc, 1.0, dt, n, 64);
        let rel = (got - (-2.0 * gamma * t).exp()).abs() / got;
        assert!(rel <= 1e-12, "t={t}: {rel:e}");
    }
    // a quarter period in, the naive law is off by 2γ²/ω² ≈ 5e-3
    let got = phase_averaged_energy(&osc, 1.0, dt, 4, 64);
    let naive = (-2.0 * gamma * 4.0 * dt).exp();
    assert!((got / naive - 1.0 - 2.0 * gamma * gamma / (osc.omega() * osc.omega())).abs() < 1e-12);
    assert!(got / naive - 1.0 > 1e-3);
}

#[test]
fn state_from_energy_phase_round_trips_through_energy() {
    for &(omega0, gamma) in &[(2.0, 0.0), (2.0, 0.5), (0.5, 3.0)] {
        let osc = Oscillator { omega0, gamma };
        for &e in &[1e-6, 0.25, 1.0, 4.0] {
            for k in 0..12 {
                let phi = 0.5 * f64::from(k);
                let s = osc.state_from_energy_phase(e, phi);
                let back = osc.energy(s);
                assert!((back - e).abs() <= 1e-15 * e, "{back} vs {e}");
                let amp = (2.0 * e).sqrt();
                assert!((s[0] - amp / omega0 * phi.cos()).abs() <= 1e-15 * amp / omega0);
                assert!((s[1] - amp * phi.sin()).abs() <= 1e-15 * amp);
            }
        }
    }
}

#[test]
fn energy_uses_omega0_not_damped_omega() {
    let osc = Oscillator { omega0: 2.0, gamma: 1.0 };
    assert_eq!(osc.energy([1.0, 0.0]), 2.0);
    assert_eq!(osc.energy([0.0, 2.0]), 2.0);
}

#[test]
fn trajectory_starts_at_s0_and_follows_exp_of_total_time() {
    for &(omega0, gamma, dt) in &[(2.0, 0.1, 0.1), (1.0, 1.0, 0.2), (1.0, 1.5, 0.05)] {
        let osc = Oscillator { omega0, gamma };
        let s0 = [0.3, -0.7];
        let path = osc.trajectory(s0, dt, 50);
        assert_eq!(path.len(), 51);
        assert_eq!(path[0], s0);
        for (n, s) in path.iter().enumerate() {
            let want = mv(&exact_reference(omega0, gamma, n as f64 * dt), s0);
            for i in 0..2 {
                assert!((s[i] - want[i]).abs() <= 1e-12, "step {n}: {s:?} vs {want:?}");
            }
        }
    }
}

#[test]
fn generator_regime_and_omega() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.5 };
    assert_eq!(osc.generator(), [[0.0, 1.0], [-4.0, -1.0]]);
    assert_eq!(osc.regime(), Regime::Underdamped);
    assert!((osc.omega() - 3.75f64.sqrt()).abs() < 1e-15);
    let over = Oscillator { omega0: 1.0, gamma: 2.0 };
    assert_eq!(over.regime(), Regime::Overdamped);
    assert_eq!(over.omega(), 0.0);
    let crit = Oscillator { omega0: 1.5, gamma: 1.5 };
    assert_eq!(crit.regime(), Regime::Critical);
    assert_eq!(crit.omega(), 0.0);
    assert_eq!(Regime::Underdamped.name(), "underdamped");
    assert_eq!(Regime::Critical.name(), "critically damped");
    assert_eq!(Regime::Overdamped.name(), "overdamped");
}
