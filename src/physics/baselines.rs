//! What an in-context model is measured against: algorithms that predict the
//! next state of a trajectory from the states before it, in f64 on the
//! exact states (docs/physics.md, "In-context systems"). Beside the update
//! rules of [`crate::physics::rules`], these are the candidates for a model
//! whose system changes from one sequence to the next.
//!
//! - `ls_fit`: the 2×2 map M fitted per sequence by least squares to the
//!   pairs `(s_j, s_{j+1})` before the prediction, applied to the last state.
//!   Exact (up to rounding) from two pairs on, for any ω0, γ and Δt.
//! - `filter_k`: one fixed linear filter `ŝ_t = Σ_j W_j s_{t−j}`, `j = 1…k`
//!   (2×2 taps), fitted once by least squares on the training sequences. It
//!   never knows ω0: it is what "a filter that needs no identification"
//!   achieves across the training distribution.
//! - `extrapolation_k`: the polynomial of degree k − 1 through the last k
//!   states, evaluated one step on: `ŝ_t = Σ_j (−1)^{j+1} C(k, j) s_{t−j}`.
//!
//! Each predicts state t from `history = s_0 … s_{t−1}`, or gives `None`
//! where it needs more states than the history holds.

use nalgebra::{DMatrix, Matrix2};

use crate::util::mat2::Vec2;

/// Training sequences the fixed filters are fitted on (the first ones of
/// the training set).
pub const FIT_SEQUENCES: usize = 4096;

/// Largest k of the fixed filters.
pub const MAX_FILTER: usize = 8;
/// Largest k of the polynomial extrapolations.
pub const MAX_EXTRAPOLATION: usize = 4;

/// A baseline by name, as in `summary.json`.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// M fitted per sequence.
    LsFit,
    /// A fixed filter over the last k states.
    Filter(LinearFilter),
    /// The filter over the last k states, which the training sequences do
    /// not determine (too short, or of one system): it predicts nothing.
    Unfitted(usize),
    /// Polynomial extrapolation through the last k states.
    Extrapolation(usize),
}

impl Baseline {
    /// Its key: `ls_fit`, `filter_k` or `extrapolation_k`.
    pub fn name(&self) -> String {
        match self {
            Baseline::LsFit => "ls_fit".into(),
            Baseline::Filter(f) => format!("filter_{}", f.k),
            Baseline::Unfitted(k) => format!("filter_{k}"),
            Baseline::Extrapolation(k) => format!("extrapolation_{k}"),
        }
    }

    /// Its prediction of the state after `history`.
    pub fn predict(&self, history: &[Vec2]) -> Option<Vec2> {
        match self {
            Baseline::LsFit => ls_fit(history),
            Baseline::Filter(f) => f.predict(history),
            Baseline::Unfitted(_) => None,
            Baseline::Extrapolation(k) => extrapolate(history, *k),
        }
    }
}

/// Every baseline: `ls_fit`, `filter_1 … filter_8` fitted on `training`
/// (sequences of clean states), `extrapolation_1 … extrapolation_4`. A
/// filter the sequences do not determine is [`Baseline::Unfitted`].
pub fn all_baselines(training: &[Vec<Vec2>]) -> Vec<Baseline> {
    let filters =
        (1..=MAX_FILTER).map(|k| LinearFilter::fit(training, k).map_or(Baseline::Unfitted(k), Baseline::Filter));
    let extrapolations = (1..=MAX_EXTRAPOLATION).map(Baseline::Extrapolation);
    std::iter::once(Baseline::LsFit).chain(filters).chain(extrapolations).collect()
}

/// The least-squares M of the pairs in `history`, applied to its last state;
/// `None` with fewer than two pairs (M has four unknowns, a pair gives two).
pub fn ls_fit(history: &[Vec2]) -> Option<Vec2> {
    if history.len() < 3 {
        return None;
    }
    let pairs = history.len() - 1;
    let x = DMatrix::from_fn(pairs, 2, |i, j| history[i][j]);
    let y = DMatrix::from_fn(pairs, 2, |i, j| history[i + 1][j]);
    let mt = least_squares(x, y)?; // Mᵀ: x_i ᵀ Mᵀ = y_i ᵀ
    let m = Matrix2::new(mt[(0, 0)], mt[(1, 0)], mt[(0, 1)], mt[(1, 1)]);
    let last = history[pairs];
    let next = m * nalgebra::Vector2::new(last[0], last[1]);
    Some([next[0], next[1]])
}

/// The polynomial extrapolation through the last `k` states of `history`.
pub fn extrapolate(history: &[Vec2], k: usize) -> Option<Vec2> {
    if k == 0 || history.len() < k {
        return None;
    }
    let mut out = [0.0; 2];
    let mut binomial = 1.0; // C(k, j), updated as j grows
    for j in 1..=k {
        binomial *= (k + 1 - j) as f64 / j as f64;
        let sign = if j % 2 == 1 { 1.0 } else { -1.0 };
        let s = history[history.len() - j];
        out[0] += sign * binomial * s[0];
        out[1] += sign * binomial * s[1];
    }
    Some(out)
}

/// A fixed linear filter over the last `k` states.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearFilter {
    /// States it reads.
    pub k: usize,
    /// `[k]` 2×2 taps, row-major: `taps[j−1]` multiplies `s_{t−j}`.
    pub taps: Vec<[[f64; 2]; 2]>,
}

impl LinearFilter {
    /// The filter over `k` states fitted by least squares (Householder QR,
    /// f64) to every window of `k + 1` consecutive states of every sequence;
    /// `None` when there are fewer windows than the filter's 2k inputs or
    /// the windows do not determine it.
    pub fn fit(sequences: &[Vec<Vec2>], k: usize) -> Option<LinearFilter> {
        let windows: Vec<&[Vec2]> = sequences.iter().flat_map(|s| s.windows(k + 1)).collect();
        if k == 0 || windows.len() < 2 * k {
            return None;
        }
        // Row i: the window's first k states, newest first (s_{t−1}, …, s_{t−k}).
        let x = DMatrix::from_fn(windows.len(), 2 * k, |i, c| windows[i][k - 1 - c / 2][c % 2]);
        let y = DMatrix::from_fn(windows.len(), 2, |i, c| windows[i][k][c]);
        let w = least_squares(x, y)?; // [2k, 2]: y_i = x_i w
        let taps = (0..k).map(|j| [[w[(2 * j, 0)], w[(2 * j + 1, 0)]], [w[(2 * j, 1)], w[(2 * j + 1, 1)]]]).collect();
        Some(LinearFilter { k, taps })
    }

    /// `Σ_j taps[j−1] s_{t−j}`, or `None` when `history` has fewer than k states.
    pub fn predict(&self, history: &[Vec2]) -> Option<Vec2> {
        if history.len() < self.k {
            return None;
        }
        let mut out = [0.0; 2];
        for (j, tap) in self.taps.iter().enumerate() {
            let s = history[history.len() - 1 - j];
            out[0] += tap[0][0] * s[0] + tap[0][1] * s[1];
            out[1] += tap[1][0] * s[0] + tap[1][1] * s[1];
        }
        Some(out)
    }
}

/// The least-squares solution `w` of `x w ≈ y` by Householder QR (no normal
/// equations: the fixed filters' columns are nearly collinear, and squaring
/// their condition number would cost half the digits); `None` when `x` is
/// rank deficient.
pub fn least_squares(x: DMatrix<f64>, mut y: DMatrix<f64>) -> Option<DMatrix<f64>> {
    let n = x.ncols();
    let qr = x.qr();
    qr.q_tr_mul(&mut y);
    let r = qr.r();
    let scale = r.diagonal().amax();
    if scale.is_nan() || scale == 0.0 || r.diagonal().iter().any(|d| d.abs() <= scale * 1e-14) {
        return None;
    }
    r.solve_upper_triangular(&y.rows(0, n).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::Oscillator;
    use crate::util::mat2::apply;

    fn trajectory(omega0: f64, gamma: f64, len: usize) -> Vec<Vec2> {
        let m = Oscillator { omega0, gamma }.propagator(0.1);
        std::iter::successors(Some([1.0, 0.3]), |s| Some(apply(&m, *s))).take(len).collect()
    }

    #[test]
    fn ls_fit_is_exact_from_two_pairs() {
        let s = trajectory(2.5, 0.2, 6);
        assert_eq!(ls_fit(&s[..2]), None);
        for t in 3..6 {
            let p = ls_fit(&s[..t]).unwrap();
            assert!((p[0] - s[t][0]).abs() < 1e-12 && (p[1] - s[t][1]).abs() < 1e-12, "t = {t}: {p:?} vs {:?}", s[t]);
        }
    }

    #[test]
    fn extrapolation_of_order_k_is_exact_on_polynomials_of_degree_below_k() {
        let poly = |t: f64| [1.0 + 2.0 * t - 0.5 * t * t, 3.0 - t];
        let history: Vec<Vec2> = (0..5).map(|t| poly(t as f64)).collect();
        let p = extrapolate(&history, 3).unwrap();
        assert_eq!(p, poly(5.0));
        assert_eq!(extrapolate(&history, 1), Some(history[4]));
        assert_eq!(extrapolate(&history, 6), None);
    }

    #[test]
    fn a_filter_of_two_taps_on_one_system_is_not_determined() {
        // s_{t−1} = M s_{t−2}: the four columns span two dimensions.
        assert_eq!(LinearFilter::fit(&[trajectory(2.0, 0.1, 20)], 2), None);
    }

    #[test]
    fn a_one_tap_filter_on_one_system_is_its_step() {
        let m = Oscillator { omega0: 2.0, gamma: 0.1 }.propagator(0.1);
        let f = LinearFilter::fit(&[trajectory(2.0, 0.1, 20)], 1).unwrap();
        for (tap, row) in f.taps[0].iter().zip(m) {
            assert!((tap[0] - row[0]).abs() < 1e-12 && (tap[1] - row[1]).abs() < 1e-12, "{:?} vs {m:?}", f.taps);
        }
    }
}
