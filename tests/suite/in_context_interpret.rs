//! In-context interpretation read back from models built by hand (docs/in-context.md):
//! a fixed 3-tap filter is read as that filter, whose taps never depend on
//! ω0 while its behaviour tracks ω0; a context-1 model of one system never
//! adapts, both ways.

use physlens::interpret::full::{InterpretOptions, interpret_checkpoint};
use physlens::interpret::in_context::{InContextReport, interpret_in_context, training_sequences, validation_set};
use physlens::model::checkpoint;
use physlens::physics::baselines::LinearFilter;
use physlens::physics::{Param, System, SystemSpec};
use physlens::util::mat2;

use crate::handbuilt::{filter_model, gauge, two_head_model};

/// ω0 drawn per sequence on [1, 4], γ = 0.1, Δt = 0.1.
fn ranged() -> SystemSpec {
    SystemSpec { omega0: Param::Uniform([1.0, 4.0]), ..SystemSpec::from(System::new(2.0, 0.1, 0.1)) }
}

const N_CTX: usize = 6;
const E_MAX: f64 = 4.0;

/// The 3-tap filter fitted on training-range sequences (as `filter_3` is),
/// run by hand, and its in-context report on 256 validation sequences.
fn filter_report() -> (Vec<mat2::Mat2>, InContextReport) {
    let training = training_sequences(&ranged(), N_CTX, E_MAX, 0);
    let taps = LinearFilter::fit(&training, 3).unwrap().taps;
    let model = filter_model(&taps, N_CTX, gauge(3));
    let set = validation_set(&ranged(), N_CTX, 256, E_MAX, 0);
    (taps, interpret_in_context(&model, &set, &training, 0))
}

#[test]
fn a_hand_built_three_tap_filter_is_read_back_as_that_filter() {
    let (taps, r) = filter_report();
    println!("{}", serde_json::to_string_pretty(&r).unwrap());
    let f = &r.filter;
    assert_eq!(f.taps.len(), N_CTX);
    for (k, read) in f.taps.iter().enumerate() {
        let want = taps.get(k).copied().unwrap_or([[0.0; 2]; 2]);
        let err = mat2::frobenius(&mat2::sub(read, &want));
        assert!(err < 1e-6, "tap {k}: {read:?} vs {want:?} ({err:.1e})");
    }
    assert_eq!(f.nearest, "filter_3", "{:?}", f.candidates);
    assert!(f.candidates[0].distance < 1e-6 && f.margin > 1e3, "{:?}", f.candidates);
    assert!(f.candidates.windows(2).all(|w| w[0].distance <= w[1].distance), "ascending");
}

#[test]
fn a_fixed_filter_has_taps_independent_of_omega0_while_its_behaviour_tracks_omega0() {
    let (_, r) = filter_report();
    let f = &r.filter;
    assert!(f.param_r2.is_none_or(|r2| r2 < 1e-6), "{:?} {:?}", f.param_r2, f.param_r2_reason);
    assert!(f.tap_std < 1e-9, "{}", f.tap_std);
    let b = &r.implied.omega0;
    assert_eq!(r.implied.n_oscillator_form, r.n_sequences, "{:?}", r.implied.left_out);
    assert!((b.slope - 1.0).abs() < 0.05 && b.r2 > 0.99 && b.median_abs_err < 0.05, "{b:?}");
    // Its last tap alone is no one-step map (it grows): no mechanism readout, and why.
    assert!(r.jacobian_implied.is_none(), "{:?}", r.jacobian_implied);
    assert!(
        r.jacobian_implied_reason.as_deref().is_some_and(|w| w.contains("growing")),
        "{:?}",
        r.jacobian_implied_reason
    );
    assert!(r.verdict.starts_with("runs a fixed filter (nearest filter_3"), "{}", r.verdict);
    assert!(r.verdict.contains("without identifying ω0"), "{}", r.verdict);
}

/// The positive control trained rather than built: the seed model (context
/// 1, ω0 = 2, γ = 0.1, Δt = 0.1, f64) trained by `physlens train`, read on
/// sequences whose ω0 spans [1, 4], never adapts: both readouts stay at its
/// own ω0 whatever the truth.
#[test]
fn a_trained_context_one_model_never_adapts_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[system]\nomega0 = 2.0\ngamma = 0.1\n[train]\ndtype = \"f64\"\nsteps = 4000\n";
    std::fs::write(dir.path().join("seed.toml"), config).unwrap();
    let out = crate::common::physlens(&["train", "--config", "seed.toml", "--out", "seed", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let model = checkpoint::load(&dir.path().join("seed/model.safetensors")).unwrap().model.to_f64();
    let training = training_sequences(&ranged(), 1, E_MAX, 0);
    let set = validation_set(&ranged(), 1, 256, E_MAX, 0);
    let r = interpret_in_context(&model, &set, &training, 0);
    let (b, j) = (&r.implied.omega0, &r.jacobian_implied.as_ref().expect("a context-1 map has oscillator form").omega0);
    for readout in [b, j] {
        assert!(readout.slope.abs() < 1e-3 && (readout.median_implied - 2.0).abs() < 1e-3, "{readout:?}");
    }
    assert!(b.truth_range[0] < 1.2 && b.truth_range[1] > 3.8, "{b:?}");
    assert!(r.verdict.starts_with("never adapts"), "{}", r.verdict);
    println!("{}", r.verdict);
}

#[test]
fn a_context_one_model_of_one_system_never_adapts_both_ways() {
    let m = System::new(2.0, 0.1, 0.1).step();
    let model = two_head_model(m, [0.0; 2], gauge(1), 1);
    let training = training_sequences(&ranged(), 1, E_MAX, 0);
    let set = validation_set(&ranged(), 1, 256, E_MAX, 0);
    let r = interpret_in_context(&model, &set, &training, 0);
    let b = &r.implied.omega0;
    assert!(b.slope.abs() < 1e-6 && (b.median_implied - 2.0).abs() < 1e-6, "{b:?}");
    assert!(b.truth_range[0] < 1.2 && b.truth_range[1] > 3.8, "{b:?}");
    let j = r.jacobian_implied.as_ref().expect("a context-1 map has oscillator form");
    assert!(j.omega0.slope.abs() < 1e-6 && (j.omega0.median_implied - 2.0).abs() < 1e-6, "{:?}", j.omega0);
    assert!(r.filter.param_r2.is_none(), "{:?}", r.filter.param_r2);
    assert!(r.verdict.starts_with("never adapts"), "{}", r.verdict);
    println!("{}", r.verdict);
}

#[test]
fn interpret_json_of_an_in_context_checkpoint_carries_the_in_context_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ic.safetensors");
    let training = training_sequences(&ranged(), N_CTX, E_MAX, 0);
    let taps = LinearFilter::fit(&training, 3).unwrap().taps;
    let model = filter_model(&taps, N_CTX, gauge(3));
    checkpoint::save(&path, &model, ranged(), &Default::default()).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let opts = InterpretOptions { n_valid: 64, ..InterpretOptions::default() };
    let report = interpret_checkpoint(&ckpt, "ic", &opts).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    let ic = &json["in_context"];
    for key in ["slope", "r2", "median_abs_err"] {
        assert!(ic["implied"]["omega0"][key].is_number(), "{key}: {}", ic["implied"]);
        assert!(ic["implied"]["gamma"].get(key).is_some(), "{key}");
    }
    assert!(ic.get("jacobian_implied").is_some());
    assert_eq!(ic["filter"]["taps"].as_array().unwrap().len(), N_CTX);
    assert_eq!(ic["filter"]["nearest"], "filter_3");
    for key in ["param_r2", "candidates", "margin"] {
        assert!(ic["filter"].get(key).is_some(), "{key}");
    }
    assert!(ic["verdict"].as_str().unwrap().contains("fixed filter"), "{}", ic["verdict"]);
    let text = physlens::interpret::text::render(&report);
    assert!(text.contains("runs a fixed filter"), "{text}");
    // A checkpoint of one system has no `in_context` key.
    let fixed = SystemSpec::from(System::new(2.0, 0.1, 0.1));
    checkpoint::save(&path, &model, fixed, &Default::default()).unwrap();
    let report = interpret_checkpoint(&checkpoint::load(&path).unwrap(), "fixed", &opts).unwrap();
    assert!(serde_json::to_value(&report).unwrap()["in_context"].is_null());
}
