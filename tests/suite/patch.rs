//! Activation patching and ablation (`physlens patch`, docs/in-context.md) on models
//! whose answer is known: the hand-built filter `ŝ = Σ_k A_k s_{T−1−k}`,
//! where patching position p's residual moves the last prediction by
//! exactly `A_{T−1−p}(s_b[p] − s_a[p])`; and the resumed forward pass
//! against a full pass with the activation overwritten.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{physlens, stderr, stdout};
use crate::handbuilt::{filter_model, gauge, write_like_numpy};
use physlens::System;
use physlens::interpret::patch::pairs::push_sequence;
use physlens::interpret::patch::{
    PairOptions, ParamSet, Site, ablated_last_predictions, last_predictions, make_pairs, patch_deltas, patch_effects,
    rerun, sites,
};
use physlens::model::checkpoint;
use physlens::model::{Act, Activations, Model, ModelConfig};
use physlens::physics::{Param, SystemSpec};
use physlens::util::mat2::{self, Mat2, Vec2};
use physlens::util::rng::{Rng, Stream};

const T: usize = 6;

/// Three random taps.
fn taps() -> Vec<Mat2> {
    let mut rng = Rng::new(11, Stream::Init);
    (0..3).map(|_| [[rng.normal() * 0.5, rng.normal() * 0.5], [rng.normal() * 0.5, rng.normal() * 0.5]]).collect()
}

/// The tap `h` writes through: `A_0 − I` for head 0 (the residual carries `s_t`), `A_k` otherwise.
fn head_map(taps: &[Mat2], h: usize) -> Mat2 {
    if h == 0 { mat2::sub(&taps[0], &mat2::identity()) } else { taps[h] }
}

fn state(seq: &[f64], t: usize) -> Vec2 {
    [seq[2 * t], seq[2 * t + 1]]
}

fn sub(a: Vec2, b: Vec2) -> Vec2 {
    [a[0] - b[0], a[1] - b[1]]
}

/// Two exact trajectories of different systems from one energy and phase, and a random pair of sequences.
fn sequences() -> (Vec<f64>, Vec<f64>) {
    let (mut a, mut b) = (vec![], vec![]);
    push_sequence(&System::new(2.0, 0.1, 0.1), 1.3, 0.7, T, &mut a);
    push_sequence(&System::new(3.1, 0.4, 0.1), 1.3, 0.7, T, &mut b);
    let mut rng = Rng::new(5, Stream::Valid);
    a.extend((0..2 * T).map(|_| rng.normal()));
    b.extend((0..2 * T).map(|_| rng.normal()));
    (a, b)
}

#[test]
fn patching_a_residual_moves_the_filter_prediction_by_its_tap() {
    let taps = taps();
    let model = filter_model(&taps, T, gauge(3));
    let (a, b) = sequences();
    for p in 0..T {
        let deltas = patch_deltas(&model, &a, &b, Site::ResidPre(0), p);
        for (n, delta) in deltas.iter().enumerate() {
            let (sa, sb) = (&a[n * 2 * T..][..2 * T], &b[n * 2 * T..][..2 * T]);
            let k = T - 1 - p;
            let want = if k < taps.len() { mat2::apply(&taps[k], sub(state(sb, p), state(sa, p))) } else { [0.0; 2] };
            for c in 0..2 {
                assert!((delta[c] - want[c]).abs() < 1e-12, "p {p} pair {n}: Δ {delta:?}, want {want:?}");
            }
        }
        // The same as a full forward pass on a with token p taken from b (W_E = [G | 0], no bias: the
        // residual entering layer 0 at p is then b's exactly).
        let mut edited = a.clone();
        for n in 0..2 {
            edited[n * 2 * T + 2 * p..][..2].copy_from_slice(&b[n * 2 * T + 2 * p..][..2]);
        }
        let (mut full, mut clean) = (Activations::new(&model.cfg, 2), Activations::new(&model.cfg, 2));
        model.forward(&edited, &mut full);
        model.forward(&a, &mut clean);
        let full_delta: Vec<[f64; 2]> = last_predictions(&model.cfg, &full)
            .iter()
            .zip(last_predictions(&model.cfg, &clean))
            .map(|(x, y)| sub(*x, y))
            .collect();
        assert_eq!(full_delta, deltas, "position {p}: patched run differs from the full pass");
    }
}

#[test]
fn patching_the_last_residual_at_the_last_position_moves_the_prediction_fully() {
    let model = filter_model(&taps(), T, gauge(4));
    let spec = SystemSpec::from(System::new(2.0, 0.1, 0.1));
    let set = |text: &str| Some(ParamSet::parse(text, "a").unwrap());
    let opts = PairOptions {
        pairs: Some(8),
        a: set("omega0=2,gamma=0.1"),
        b: set("omega0=3,gamma=0.5"),
        ..Default::default()
    };
    let pairs = make_pairs(&spec, T, &opts).unwrap();
    let effects = patch_effects(&model, &pairs, &[Site::ResidPost(0), Site::ResidPre(0)]);
    assert_eq!(effects.used, 8);
    let post = &effects.effects[0];
    assert_eq!(post.activation, "blocks.0.resid_post");
    assert!((post.prediction_shift[T - 1] - 1.0).abs() < 1e-12, "{:?}", post.prediction_shift);
    assert!((post.delta_norm[T - 1] - 1.0).abs() < 1e-12, "{:?}", post.delta_norm);
    assert!(post.prediction_shift[..T - 1].iter().all(|s| *s == 0.0), "{:?}", post.prediction_shift);
    // The filter is linear: the residual patches of its window add up to the whole move.
    let total: f64 = effects.effects[1].prediction_shift.iter().sum();
    assert!((total - 1.0).abs() < 1e-12, "{:?}", effects.effects[1].prediction_shift);
}

#[test]
fn zero_ablating_a_head_removes_its_tap() {
    let taps = taps();
    let model = filter_model(&taps, T, gauge(5));
    let (inputs, _) = sequences();
    let mut clean = Activations::new(&model.cfg, 2);
    model.forward(&inputs, &mut clean);
    let before = last_predictions(&model.cfg, &clean);
    let zeros = vec![0.0; T * model.cfg.d_model];
    for h in 0..taps.len() {
        let after = ablated_last_predictions(&model, &inputs, Site::Head(0, h), &zeros);
        for (n, (x, y)) in before.iter().zip(&after).enumerate() {
            let s = state(&inputs[n * 2 * T..][..2 * T], T - 1 - h);
            let want = mat2::apply(&head_map(&taps, h), s).map(|v| -v);
            let got = sub(*y, *x);
            for c in 0..2 {
                assert!((got[c] - want[c]).abs() < 1e-12, "head {h} seq {n}: {got:?} vs {want:?}");
            }
        }
    }
}

/// A random two-layer model with MLP blocks, every switch on.
fn random_model() -> Model<f64> {
    let cfg = ModelConfig {
        d_model: 6,
        n_heads: 2,
        d_head: 3,
        n_layers: 2,
        d_mlp: 5,
        act: Act::Gelu,
        n_ctx: 4,
        attn_scale: physlens::model::AttnScale::DHead,
        causal: true,
        positional: true,
        loss_positions: None,
    };
    Model::init(&cfg, &mut Rng::new(9, Stream::Init))
}

#[test]
fn the_resumed_pass_equals_a_full_pass_with_the_activation_overwritten() {
    let model = random_model();
    let cfg = &model.cfg;
    let (batch, d) = (3, cfg.d_model);
    let mut rng = Rng::new(2, Stream::Valid);
    let input: Vec<f64> = (0..batch * cfg.n_ctx * 2).map(|_| rng.normal()).collect();
    let mut clean = Activations::new(cfg, batch);
    model.forward(&input, &mut clean);
    // An edit that changes nothing gives Model::forward's bits.
    let mut same = Activations::new(cfg, batch);
    model.forward_edited(&input, &mut same, &mut |_, _| {});
    assert_eq!(same.pred, clean.pred);
    assert_eq!(same.resid, clean.resid);
    let mut work = Activations::new(cfg, batch);
    let all = sites(cfg, &[]).unwrap();
    assert_eq!(all.len(), 2 * (1 + 2 + 1) + 1);
    for site in all {
        for p in 0..cfg.n_ctx {
            let value: Vec<f64> = (0..batch * d).map(|_| rng.normal()).collect();
            rerun(&model, &clean, &mut work, site, p..p + 1, |b, _, slot| slot.copy_from_slice(&value[b * d..][..d]));
            let mut full = Activations::new(cfg, batch);
            let name = site.activation();
            model.forward_edited(&input, &mut full, &mut |what, buf| {
                if what == name {
                    for b in 0..batch {
                        let token = b * cfg.n_ctx + p;
                        let at = match site.head() {
                            Some(h) => (token * cfg.n_heads + h) * d,
                            None => token * d,
                        };
                        buf[at..][..d].copy_from_slice(&value[b * d..][..d]);
                    }
                }
            });
            assert_eq!(work.pred[..batch * cfg.n_ctx * 2], full.pred[..], "{name} {:?} at {p}", site.head());
            assert_ne!(work.pred, clean.pred, "{name} at {p}: the patch changed nothing");
        }
    }
}

/// `filter_model` saved with `system` (fixed or ranged) in `dir/name`.
fn save_filter(dir: &Path, name: &str, taps: &[Mat2], n_ctx: usize, system: SystemSpec) {
    let model = filter_model(taps, n_ctx, gauge(7));
    checkpoint::save(&dir.join(name), &model, system, &BTreeMap::new()).unwrap();
}

#[test]
fn patch_json_of_a_fixed_pair_is_the_hand_computed_filter_effect() {
    let dir = tempfile::tempdir().unwrap();
    let taps = taps();
    let system = System::new(2.0, 0.1, 0.1);
    write_like_numpy(&dir.path().join("filter.safetensors"), &filter_model(&taps, T, gauge(7)), &system, false);
    let args = ["patch", "--model", "filter.safetensors", "--json", "--a", "omega0=2,gamma=0.1", "--b"];
    let out = physlens(&[&args[..], &["omega0=3,gamma=0.3", "--n-valid", "64"]].concat(), dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let effects = json["effects"].as_array().unwrap();
    let keys =
        ["activation", "layer", "positions", "head", "prediction_shift", "delta_norm", "omega0_shift", "omega0_pairs"];
    for e in effects {
        let mut got: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        got.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(got, want);
    }
    let names: Vec<&str> = effects.iter().map(|e| e["activation"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "blocks.0.resid_pre",
            "blocks.0.attn.result",
            "blocks.0.attn.result",
            "blocks.0.attn.result",
            "blocks.0.resid_post"
        ]
    );
    // By hand: both runs from energy 1 at phase 0, stepped exactly.
    let (mut a, mut b) = (vec![], vec![]);
    push_sequence(&system, 1.0, 0.0, T, &mut a);
    push_sequence(&System::new(3.0, 0.3, 0.1), 1.0, 0.0, T, &mut b);
    let predict = |s: &[f64]| {
        (0..3).fold([0.0; 2], |acc, k| {
            let v = mat2::apply(&taps[k], state(s, T - 1 - k));
            [acc[0] + v[0], acc[1] + v[1]]
        })
    };
    let d = sub(predict(&b), predict(&a));
    let dd = d[0] * d[0] + d[1] * d[1];
    let resid = &effects[0];
    assert_eq!(resid["positions"], serde_json::json!([0, 1, 2, 3, 4, 5]));
    assert!(resid["head"].is_null());
    for p in 0..T {
        let k = T - 1 - p;
        let delta = if k < 3 { mat2::apply(&taps[k], sub(state(&b, p), state(&a, p))) } else { [0.0; 2] };
        let shift = (delta[0] * d[0] + delta[1] * d[1]) / dd;
        let norm = delta[0].hypot(delta[1]) / dd.sqrt();
        let got = (resid["prediction_shift"][p].as_f64().unwrap(), resid["delta_norm"][p].as_f64().unwrap());
        assert!((got.0 - shift).abs() < 1e-12 && (got.1 - norm).abs() < 1e-12, "p {p}: {got:?} vs {shift}, {norm}");
        // Head h moves the last prediction only from the last position, by its map applied to s[T−1−h].
        for h in 0..3 {
            let head = &effects[1 + h];
            let want = if p == T - 1 {
                let delta = mat2::apply(&head_map(&taps, h), sub(state(&b, T - 1 - h), state(&a, T - 1 - h)));
                (delta[0] * d[0] + delta[1] * d[1]) / dd
            } else {
                0.0
            };
            let got = head["prediction_shift"][p].as_f64().unwrap();
            assert!((got - want).abs() < 1e-12, "head {h} position {p}: {got} vs {want}");
        }
    }
    assert_eq!(json["pairs"]["source"], "fixed");
    let heat = &json["heatmaps"][0];
    assert_eq!(heat["axes"], serde_json::json!(["layer", "position"]));
    assert!(json["ablation"]["components"].as_array().unwrap().len() == 3);
}

#[test]
fn patch_draws_pairs_from_the_training_ranges_and_writes_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec =
        SystemSpec { omega0: Param::Uniform([1.0, 3.0]), gamma: Param::Uniform([0.0, 0.3]), ..SystemSpec::default() };
    save_filter(dir.path(), "ranged.safetensors", &taps(), T, spec);
    let args = ["patch", "--model", "ranged.safetensors", "--pairs", "16", "--n-valid", "64", "--out", "out"];
    let out = physlens(&args, dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("16 pairs drawn") && text.contains("blocks.0.resid_post") && text.contains("ablation"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out/patch.json")).unwrap()).unwrap();
    let total: f64 = (0..T).map(|p| json["effects"][0]["prediction_shift"][p].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{total}");
    let csv = std::fs::read_to_string(dir.path().join("out/effects.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "activation,layer,head,position,prediction_shift,delta_norm,omega0_shift,omega0_pairs"
    );
    assert_eq!(csv.lines().count(), 1 + 5 * T);
    let csv = std::fs::read_to_string(dir.path().join("out/ablation.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3);
}

#[test]
fn patch_refuses_bad_flags_with_exit_2_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let ranged = SystemSpec { omega0: Param::Uniform([1.0, 3.0]), ..SystemSpec::default() };
    save_filter(dir.path(), "fixed.safetensors", &taps(), T, SystemSpec::default());
    save_filter(dir.path(), "ranged.safetensors", &taps(), T, ranged);
    let one = Model::<f64>::init(&ModelConfig::seed(), &mut Rng::new(1, Stream::Init));
    checkpoint::save(&dir.path().join("ctx1.safetensors"), &one, ranged, &BTreeMap::new()).unwrap();
    let cases: [(&[&str], &str, &str); 9] = [
        (&["--model", "ranged.safetensors", "--a", "omega0=x", "--b", "omega0=3"], "--a", "`x` is not a finite number"),
        (&["--model", "ranged.safetensors", "--a", "omega0=2,spin=1", "--b", "omega0=3"], "--a", "unknown key `spin`"),
        (&["--model", "ranged.safetensors", "--a", "omega0=2"], "--b", "--a needs --b"),
        (&["--model", "ranged.safetensors", "--a", "omega0=-2", "--b", "omega0=3"], "--a", "omega0"),
        (&["--model", "fixed.safetensors"], "--pairs", "give the two parameter sets with --a"),
        (&["--model", "ctx1.safetensors"], "--pairs", "context 1"),
        (&["--model", "ranged.safetensors", "--pairs", "0"], "--pairs", "at least 1"),
        (&["--model", "ranged.safetensors", "--n-valid", "999999999999999"], "--n-valid", "memory"),
        (&["--model", "ranged.safetensors", "--activations", "blocks.3.mlp_out"], "--activations", "resid_pre"),
    ];
    for (args, flag, words) in cases {
        let out = physlens(&[&["patch"], args].concat(), dir.path());
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(&format!("error: {flag}:")) && err.contains(words), "{args:?}: {err}");
    }
    let out = physlens(&["patch", "--model", "missing.safetensors"], dir.path());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The implied-ω0 shift on the fitted 3-tap filter (ω0 drawn on [1, 4]): a
/// token the filter does not read (position < T − 3) moves nothing, so the
/// ω0 shift is exactly 0 over every pair; one it reads changes the
/// predictions (a's states, with one of b's tokens mixed in, are then
/// mapped by no oscillator: no pair counts, `null`, or the ω0 moves), and
/// the arrays have one entry per position with the pairs they are the
/// median of.
#[test]
fn a_token_outside_the_filter_moves_the_implied_omega0_by_exactly_zero() {
    use physlens::interpret::in_context::training_sequences;
    use physlens::interpret::patch::implied::omega0_shifts;
    use physlens::physics::baselines::LinearFilter;
    let spec = SystemSpec { omega0: Param::Uniform([1.0, 4.0]), ..SystemSpec::from(System::new(2.0, 0.1, 0.1)) };
    let taps = LinearFilter::fit(&training_sequences(&spec, T, 4.0, 0), 3).unwrap().taps;
    let model = filter_model(&taps, T, gauge(8));
    let pairs = make_pairs(&spec, T, &PairOptions { pairs: Some(32), ..PairOptions::default() }).unwrap();
    let sites = [Site::ResidPre(0)];
    let w = omega0_shifts(&model, &pairs, &sites);
    assert_eq!((w.shift[0].len(), w.pairs[0].len()), (T, T));
    for p in 0..T - 3 {
        assert!(w.pairs[0][p] > 16, "position {p}: {} pairs", w.pairs[0][p]);
        assert!(w.shift[0][p].abs() < 1e-9, "position {p}: {}", w.shift[0][p]);
    }
    for p in T - 3..T {
        assert!(
            w.shift[0][p].is_nan() || w.shift[0][p].abs() >= 1e-9,
            "position {p} is read by the filter: {:?}",
            w.shift[0]
        );
    }
}
