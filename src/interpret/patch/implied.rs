//! How far a patch moves the *dynamics* the model applies, not only its
//! prediction (docs/outputs.md): the implied ω0 shift.
//!
//! The behaviour readout of the in-context analysis
//! ([`behaviour_map`]) fits, per sequence, the 2×2 map `M̂` with
//! `ŝ ≈ M̂ s` over [`WINDOWS`] consecutive full-context windows and reads
//! ω0 from it. For a pair (a, b) the clean runs give `ω0_a` (a's states to
//! a's predictions) and `ω0_b` (b's to b's). Patching a site at one position
//! of every window of run a with its value from the matching window of run b
//! gives patched predictions; the map from a's states to them gives
//! `ω0_patched`, and
//!
//! ```text
//! omega0_shift = median over pairs of (ω0_patched − ω0_a) / (ω0_b − ω0_a)
//! ```
//!
//! 0: the model still applies a's dynamics to a's states; 1: it now applies
//! b's dynamics to a's states — the patched activation carried the
//! parameters. This differs from `prediction_shift`: patching the last
//! residual stream copies b's whole prediction `M_b s_b`, which is no map
//! of a's states, so its ω0 shift is whatever that least-squares fit reads.
//! The median, not the mean, because the ratio of a pair whose patched map
//! is barely oscillatory can be arbitrarily large.
//!
//! A pair counts only when all three maps have an oscillator reading
//! ([`has_oscillator_form`]) and `|ω0_b − ω0_a| ≥` [`MIN_OMEGA0_GAP`].
//!
//! # Shapes
//! N pairs, W = [`WINDOWS`], T = `n_ctx`: the windowed runs are
//! `[N·W, T, 2]`, pair-major (the W windows of pair 0 first).

use crate::interpret::in_context::{WINDOWS, behaviour_map, has_oscillator_form};
use crate::interpret::patch::pairs::{Pairs, push_sequence};
use crate::interpret::patch::site::{Site, last_predictions, rerun};
use crate::model::{Activations, D_IN, Model};
use crate::physics::System;
use crate::physics::readout::spectral;
use crate::util::mat2::Vec2;

/// Pairs whose clean implied ω0 differ by less than this are left out: the
/// ratio would divide by (nearly) zero.
pub const MIN_OMEGA0_GAP: f64 = 1e-3;

/// The W windows of each pair, and the last state of each window of run a.
struct Windowed {
    /// `[N·W, T, 2]`.
    a: Vec<f64>,
    /// `[N·W, T, 2]`.
    b: Vec<f64>,
    /// `[N][W]`: the last input state of each window of run a.
    last_a: Vec<Vec<Vec2>>,
    /// `[N][W]`: the same for run b.
    last_b: Vec<Vec<Vec2>>,
}

/// Each pair's trajectories extended to `T + W − 1` states and cut into W windows.
fn windowed(pairs: &Pairs, t: usize) -> Windowed {
    let len = t + WINDOWS - 1;
    let mut out = Windowed { a: vec![], b: vec![], last_a: vec![], last_b: vec![] };
    for (&(sa, sb), &(e, phi)) in pairs.systems.iter().zip(&pairs.starts) {
        for (system, windows, last) in [(sa, &mut out.a, &mut out.last_a), (sb, &mut out.b, &mut out.last_b)] {
            let mut trajectory = vec![];
            push_sequence(&system, e, phi, len, &mut trajectory);
            for j in 0..WINDOWS {
                windows.extend_from_slice(&trajectory[j * D_IN..(j + t) * D_IN]);
            }
            last.push(
                (0..WINDOWS).map(|j| [trajectory[(j + t - 1) * D_IN], trajectory[(j + t - 1) * D_IN + 1]]).collect(),
            );
        }
    }
    out
}

/// The implied ω0 of the map taking `states` to `preds` at step `dt`, when
/// it has an oscillator reading.
fn implied_omega0(states: &[Vec2], preds: &[Vec2], dt: f64) -> Option<f64> {
    let readout = spectral(&behaviour_map(states, preds)?, dt);
    has_oscillator_form(&readout, dt).then_some(readout.omega0)
}

/// One pair's shift: `(ω0_patched − ω0_a)/(ω0_b − ω0_a)`, or `None` when a
/// map has no oscillator reading or the clean ω0 are closer than
/// [`MIN_OMEGA0_GAP`].
///
/// # Shapes
/// `last_a`, `last_b`, `pred_a`, `pred_b`, `patched` `[W]`.
pub fn pair_shift(
    system: &System,
    last_a: &[Vec2],
    last_b: &[Vec2],
    pred_a: &[Vec2],
    pred_b: &[Vec2],
    patched: &[Vec2],
) -> Option<f64> {
    let dt = system.dt;
    let (wa, wb) = (implied_omega0(last_a, pred_a, dt)?, implied_omega0(last_b, pred_b, dt)?);
    if (wb - wa).abs() < MIN_OMEGA0_GAP {
        return None;
    }
    Some((implied_omega0(last_a, patched, dt)? - wa) / (wb - wa))
}

/// The median of the finite values; NaN when there is none.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

/// The implied-ω0 shift and the number of pairs it is the median of.
#[derive(Clone, Debug, PartialEq)]
pub struct Omega0Shifts {
    /// `[sites][T]`: the median shift; NaN where no pair counts.
    pub shift: Vec<Vec<f64>>,
    /// `[sites][T]`: the pairs in each median.
    pub pairs: Vec<Vec<usize>>,
}

/// The implied-ω0 shift of patching each of `sites` at each position. The
/// windowed runs go through the model in chunks of whole pairs.
pub fn omega0_shifts(model: &Model<f64>, pairs: &Pairs, sites: &[Site]) -> Omega0Shifts {
    let cfg = &model.cfg;
    let t = cfg.n_ctx;
    let w = windowed(pairs, t);
    let per_chunk = (Activations::<f64>::chunk(cfg, pairs.len() * WINDOWS) / WINDOWS).max(1);
    let rows = per_chunk * WINDOWS;
    let [mut clean_a, mut clean_b, mut work] = std::array::from_fn(|_| Activations::<f64>::new(cfg, rows));
    let mut ratios: Vec<Vec<Vec<f64>>> = vec![vec![vec![]; t]; sites.len()];
    let width = WINDOWS * t * D_IN;
    for (c, (a, b)) in w.a.chunks(per_chunk * width).zip(w.b.chunks(per_chunk * width)).enumerate() {
        model.forward(a, &mut clean_a);
        model.forward(b, &mut clean_b);
        let (pa, pb) = (last_predictions(cfg, &clean_a), last_predictions(cfg, &clean_b));
        for (i, site) in sites.iter().enumerate() {
            for (p, out) in ratios[i].iter_mut().enumerate() {
                rerun(model, &clean_a, &mut work, *site, p..p + 1, |seq, tt, slot| {
                    slot.copy_from_slice(site.slot(cfg, &clean_b, seq, tt))
                });
                let patched = last_predictions(cfg, &work);
                out.extend((0..a.len() / width).filter_map(|k| {
                    let (n, r) = (c * per_chunk + k, k * WINDOWS..(k + 1) * WINDOWS);
                    let (la, lb) = (&w.last_a[n], &w.last_b[n]);
                    pair_shift(&pairs.systems[n].0, la, lb, &pa[r.clone()], &pb[r.clone()], &patched[r])
                }));
            }
        }
    }
    Omega0Shifts {
        pairs: ratios.iter().map(|site| site.iter().map(Vec::len).collect()).collect(),
        shift: ratios.into_iter().map(|site| site.into_iter().map(median).collect()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::mat2::apply;

    /// Predictions made with b's map from a's states shift ω0 fully (1);
    /// a's own map, not at all (0); the ratio is linear in between.
    #[test]
    fn b_dynamics_on_a_states_is_a_full_shift() {
        let (sa, sb) = (System::new(1.5, 0.1, 0.1), System::new(3.0, 0.3, 0.1));
        let (ma, mb) = (sa.step(), sb.step());
        let states = |m: &crate::util::mat2::Mat2| -> Vec<Vec2> {
            std::iter::successors(Some([1.0, 0.4]), |s| Some(apply(m, *s))).take(WINDOWS).collect()
        };
        let (la, lb) = (states(&ma), states(&mb));
        let pred = |m, s: &[Vec2]| -> Vec<Vec2> { s.iter().map(|x| apply(m, *x)).collect() };
        let (pa, pb) = (pred(&ma, &la), pred(&mb, &lb));
        let full = pair_shift(&sa, &la, &lb, &pa, &pb, &pred(&mb, &la)).unwrap();
        assert!((full - 1.0).abs() < 1e-9, "{full}");
        let none = pair_shift(&sa, &la, &lb, &pa, &pb, &pa).unwrap();
        assert!(none.abs() < 1e-9, "{none}");
        assert_eq!(pair_shift(&sa, &la, &la, &pa, &pa, &pa), None, "equal ω0: no ratio");
    }

    #[test]
    fn the_median_skips_non_finite_values() {
        assert_eq!(median(vec![3.0, f64::NAN, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
