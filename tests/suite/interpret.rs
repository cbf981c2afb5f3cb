//! `physlens interpret` on models built by hand with a known answer (issue 3):
//! the effective map, readouts, rule verdicts, Jacobians, circuits, probes,
//! attention patterns, dumps and the truncation order.

use std::collections::BTreeMap;
use std::path::Path;

use crate::handbuilt::{gauge, to_f32, two_head_model, two_step_model, write_like_numpy};
use physlens::System;
use physlens::interpret::dump::{DumpFormat, dump_activations};
use physlens::interpret::full::{FullReport, InterpretOptions, interpret_checkpoint, interpret_many};
use physlens::interpret::jacobian::last_prediction_jacobians;
use physlens::interpret::probe::{held_out_r2, probe_table};
use physlens::interpret::text::render;
use physlens::model::checkpoint::{self, Checkpoint};
use physlens::model::{Activations, AttnScale, Model, ModelConfig};
use physlens::physics::Oscillator;
use physlens::physics::rules::{RULES, rule_map};
use physlens::util::mat2::{self, Mat2};
use physlens::util::rng::{Rng, Stream};

/// Fewer validation states than the default keeps the tests quick.
fn options() -> InterpretOptions {
    InterpretOptions { n_valid: 512, ..InterpretOptions::default() }
}

fn dist(a: &Mat2, b: &Mat2) -> f64 {
    mat2::frobenius(&mat2::sub(a, b))
}

fn save_and_interpret(dir: &Path, name: &str, model: &Model<f64>, system: &System) -> (Checkpoint, FullReport) {
    let path = dir.join(name);
    checkpoint::save(&path, model, system, &BTreeMap::new()).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let report = interpret_checkpoint(&ckpt, name, &options()).unwrap();
    (ckpt, report)
}

/// The eigenvalues `e^{(−γ ± iω)Δt}` the spectral readout implies.
fn implied_eigenvalue(r: &FullReport) -> (f64, f64) {
    let dt = r.map.truth.system.dt;
    let modulus = (-r.map.learned.gamma * dt).exp();
    (modulus * (r.map.learned.omega * dt).cos(), modulus * (r.map.learned.omega * dt).sin())
}

/// Checks everything a hand-built one-step model must give back, to `tol`.
fn check_rule_report(r: &FullReport, rule: &str, want: &Mat2, offset: [f64; 2], tol: f64) {
    let m = &r.map;
    assert!(dist(&m.effective_map, want) <= tol, "{rule}: map {:?} vs {want:?}", m.effective_map);
    assert!(
        (m.offset[0] - offset[0]).abs() <= tol && (m.offset[1] - offset[1]).abs() <= tol,
        "{rule}: offset {:?}",
        m.offset
    );
    assert_eq!(m.nearest_method, rule, "{rule}: {:?}", m.methods);
    assert!(m.identifiable && m.margin >= 10.0, "{rule}: margin {}", m.margin);
    assert_eq!(r.margin_explanation.indistinguishable, vec![rule.to_string()]);
    assert_eq!(r.effective_map_source, "affine");
    // The readout's (γ, ω) reproduce the map's eigenvalues.
    let eig = mat2::eigenvalues(want);
    let (re, im) = implied_eigenvalue(r);
    assert!((re - eig[0].re).abs() <= tol && (im - eig[0].im).abs() <= tol, "{rule}: ({re}, {im}) vs {:?}", eig[0]);
    // The Jacobian of a context-1 model is its affine map, everywhere.
    let j = r.jacobians.last();
    assert!(dist(&j.mean, &m.effective_map) <= 1e-12 && j.max_dev <= 1e-12, "{rule}: Jacobian {j:?}");
    // Direct path + head paths add up to the map.
    let c = &r.circuits;
    let path = |p: &Option<physlens::interpret::circuits::PathMap>| p.as_ref().expect("attention only: paths").map;
    let sum = c.heads.iter().fold(path(&c.direct), |acc, h| mat2::add(&acc, &path(&h.path)));
    assert!(dist(&sum, &m.effective_map) <= 1e-12, "{rule}: paths sum to {sum:?}");
    assert!(dist(&c.sum_of_paths.unwrap(), &m.effective_map) <= 1e-12);
    // Context 1: every head attends to the only token.
    assert!(r.patterns.heads.iter().all(|h| h.last_query == vec![1.0] && h.entropy_last == 0.0));
}

#[test]
fn every_rule_built_by_hand_in_f64_is_recovered_and_named() {
    let dir = tempfile::tempdir().unwrap();
    for gamma in [0.0, 0.1] {
        let system = System::new(2.0, gamma, 0.1);
        let osc = system.oscillator();
        for (i, rule) in RULES.iter().enumerate() {
            let want = rule_map(rule, &osc, 0.1).unwrap();
            let c = [1e-3 * (i as f64 - 4.0), -2e-3];
            let model = two_head_model(want, c, gauge(10 + i as u64), i as u64 + 1);
            let (_, r) = save_and_interpret(dir.path(), &format!("{rule}.safetensors"), &model, &system);
            check_rule_report(&r, rule, &want, c, 1e-9);
            if *rule == "exact" {
                let (l, t) = (&r.map.learned, &r.map.truth);
                assert!(
                    (l.omega0 - t.system.omega0).abs() <= 1e-9 && (l.gamma - t.system.gamma).abs() <= 1e-9,
                    "{l:?}"
                );
                assert!((r.map.best_fit.omega0 - 2.0).abs() <= 1e-9 && r.map.error_vs_exact <= 1e-12);
                let g = r.generator.as_ref().unwrap();
                assert!(
                    (g.omega0_sq - 4.0).abs() <= 1e-9 && (g.gamma - gamma).abs() <= 1e-9 && g.structure_error <= 1e-9
                );
            }
        }
    }
}

#[test]
fn rules_written_with_numpy_layout_in_f32_and_f64_are_recovered() {
    let dir = tempfile::tempdir().unwrap();
    // A larger step so that f32 rounding (1e-7) stays far below the gaps between rules.
    let system = System::new(2.0, 0.1, 0.25);
    let osc = system.oscillator();
    for (i, rule) in ["exact", "euler", "rk4", "leapfrog", "symplectic_euler", "crank_nicolson"].iter().enumerate() {
        let want = rule_map(rule, &osc, system.dt).unwrap();
        let c = [0.01, -0.02];
        let model = two_head_model(want, c, gauge(40 + i as u64), 3);
        for single in [true, false] {
            let path = dir.path().join(format!("{rule}-{single}.safetensors"));
            write_like_numpy(&path, &model, &system, single);
            let ckpt = checkpoint::load(&path).unwrap();
            assert_eq!(ckpt.model.dtype().name(), if single { "f32" } else { "f64" });
            assert_eq!(ckpt.metadata["written_by"], "numpy");
            let r = interpret_checkpoint(&ckpt, rule, &options()).unwrap();
            check_rule_report(&r, rule, &want, c, if single { 2e-6 } else { 1e-9 });
        }
    }
    // The f32 path through physlens' own writer agrees with the numpy-style file.
    let want = rule_map("rk4", &osc, system.dt).unwrap();
    let model32 = to_f32(&two_head_model(want, [0.0, 0.0], gauge(7), 2));
    let path = dir.path().join("own-f32.safetensors");
    checkpoint::save(&path, &model32, system, &BTreeMap::new()).unwrap();
    let r = interpret_checkpoint(&checkpoint::load(&path).unwrap(), "own", &options()).unwrap();
    check_rule_report(&r, "rk4", &want, [0.0, 0.0], 2e-6);
}

#[test]
fn context3_two_step_rule_shows_jacobians_on_the_right_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let m = system.oscillator().propagator(0.1);
    let m2 = mat2::mul(&m, &m);
    let (model, offset) = two_step_model(m, [0.01, -0.005], gauge(3), [0.2, -0.1]);
    let (_, r) = save_and_interpret(dir.path(), "two-step.safetensors", &model, &system);
    let j = &r.jacobians;
    assert_eq!(j.tokens.len(), 3);
    let zero = [[0.0; 2]; 2];
    for (tok, want) in [(2, mat2::scale(&m, 2.0)), (1, mat2::scale(&m2, -1.0)), (0, zero)] {
        let got = &j.tokens[tok];
        assert_eq!(got.lag, 2 - tok);
        assert!(dist(&got.mean, &want) <= 1e-9, "token {tok}: {:?} vs {want:?}", got.mean);
        assert!(got.max_dev <= 1e-9, "token {tok}: spread {}", got.max_dev);
    }
    assert!(
        (j.offset[0] - offset[0]).abs() <= 1e-9 && (j.offset[1] - offset[1]).abs() <= 1e-9,
        "{:?} vs {offset:?}",
        j.offset
    );
    // docs/outputs.md: effective_map is the mean Jacobian w.r.t. the last token, and the report says so.
    assert_eq!(r.effective_map_source, "jacobian");
    assert!(r.map.map_kind.contains("Jacobian"), "{}", r.map.map_kind);
    assert!(dist(&r.map.effective_map, &mat2::scale(&m, 2.0)) <= 1e-9);
    assert!(render(&r).contains("MEAN JACOBIAN"));
    // 2M is no one-step rule: the verdict must not name one, nor say it is torn between two.
    assert!(!r.map.identifiable);
    assert_eq!(r.map.rule_verdict, physlens::physics::readout::RuleVerdict::NoneOfThem);
    assert!(r.margin_explanation.statement.starts_with("runs none"), "{}", r.margin_explanation.statement);
    // Along true trajectories the two-step rule is exact: the one-step fit finds M.
    let one = r.one_step.as_ref().unwrap();
    assert!(dist(&one.report.effective_map, &m) <= 1e-9, "{:?}", one.report.effective_map);
    assert!(one.rms_residual <= 1e-9);
    assert_eq!(one.report.nearest_method, "exact");
    assert!((one.report.learned.omega0 - 2.0).abs() <= 1e-8 && (one.report.learned.gamma - 0.1).abs() <= 1e-8);
    // Head 0 looks at the token itself, head 1 at the one before.
    let heads = &r.patterns.heads;
    assert!((heads[0].last_query[2] - 1.0).abs() <= 1e-15 && heads[0].mean_offset_last.abs() <= 1e-15);
    assert!((heads[1].last_query[1] - 1.0).abs() <= 1e-15 && (heads[1].mean_offset_last - 1.0).abs() <= 1e-15);
    assert!(heads.iter().all(|h| h.entropy_last <= 1e-30 && h.valid_entropy_last.unwrap() <= 1e-30));
    // The positional scores of the circuits say the same, without running the model.
    let scores = r.circuits.heads[1].positional_scores.as_ref().unwrap();
    assert!((scores[2][1] - crate::handbuilt::LOGIT).abs() <= 1e-9 && scores[2][2].abs() <= 1e-9);
}

#[test]
fn jacobians_match_central_differences_on_random_models() {
    for (causal, positional, n_layers) in [(true, true, 2), (false, false, 1), (true, false, 3)] {
        let cfg = ModelConfig {
            d_model: 4,
            n_heads: 2,
            d_head: 3,
            n_layers,
            d_mlp: 0,
            act: physlens::model::Act::Gelu,
            n_ctx: 4,
            attn_scale: AttnScale::DHead,
            causal,
            positional,
            loss_positions: None,
        };
        let mut rng = Rng::new(5, Stream::Init);
        let mut model = Model::<f64>::init(&cfg, &mut rng);
        // Larger weights than the init so the softmax is far from uniform.
        model.params.iter_mut().for_each(|w| *w = 0.9 * rng.normal());
        let batch = 3;
        let input: Vec<f64> = (0..batch * 4 * 2).map(|_| rng.normal()).collect();
        let jac = last_prediction_jacobians(&model, &input);
        let last = |x: &[f64]| {
            let mut acts = Activations::new(&cfg, batch);
            model.forward(x, &mut acts);
            acts.pred
        };
        let h = 1e-6;
        let mut worst: f64 = 0.0;
        for b in 0..batch {
            for t in 0..4 {
                for j in 0..2 {
                    let (mut hi, mut lo) = (input.clone(), input.clone());
                    hi[(b * 4 + t) * 2 + j] += h;
                    lo[(b * 4 + t) * 2 + j] -= h;
                    let (ph, pl) = (last(&hi), last(&lo));
                    for i in 0..2 {
                        let fd = (ph[(b * 4 + 3) * 2 + i] - pl[(b * 4 + 3) * 2 + i]) / (2.0 * h);
                        let exact = jac.get(b, t)[i][j];
                        worst = worst.max((fd - exact).abs() / fd.abs().max(1.0));
                    }
                }
            }
        }
        assert!(worst < 1e-7, "causal {causal} positional {positional} layers {n_layers}: {worst:e}");
        // Without the causal mask the older tokens matter; with it they still do through attention.
        assert!((0..3).any(|t| mat2::frobenius(&jac.get(0, t)) > 1e-3));
    }
}

#[test]
fn probes_find_linear_targets_and_not_noise() {
    // Features: a nonlinear activation (the last position of a random context-3 model).
    let cfg = ModelConfig {
        d_model: 4,
        n_heads: 2,
        d_head: 2,
        n_layers: 1,
        d_mlp: 0,
        act: physlens::model::Act::Gelu,
        n_ctx: 3,
        attn_scale: AttnScale::DModel,
        causal: true,
        positional: true,
        loss_positions: None,
    };
    let mut rng = Rng::new(9, Stream::Init);
    let mut model = Model::<f64>::init(&cfg, &mut rng);
    model.params.iter_mut().for_each(|w| *w = rng.normal());
    let n = 2000;
    let input: Vec<f64> = (0..n * 6).map(|_| rng.normal()).collect();
    let mut acts = Activations::new(&cfg, n);
    model.forward(&input, &mut acts);
    let (x, p) = physlens::interpret::probe::last_position_features(&acts, &cfg, "blocks.0.resid_post").unwrap();
    assert_eq!(p, 4);
    let linear: Vec<f64> = x.chunks(p).map(|r| 2.0 * r[0] - 0.5 * r[1] + 3.0 * r[3] + 1.0).collect();
    let noise: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let nonlinear: Vec<f64> = x.chunks(p).map(|r| (3.0 * r[0]).sin() * r[1] * r[1]).collect();
    let r2_linear = held_out_r2(&x, p, &linear, 1e-8);
    let r2_noise = held_out_r2(&x, p, &noise, 1e-8);
    let r2_nonlinear = held_out_r2(&x, p, &nonlinear, 1e-8);
    assert!(r2_linear > 1.0 - 1e-9, "linear target: R² {r2_linear}");
    assert!(r2_noise.abs() < 0.03, "noise target: R² {r2_noise}");
    assert!(r2_nonlinear < 0.9, "a nonlinear target must not look linear: R² {r2_nonlinear}");

    // On the hand-built exact model: x, p and every rule output decode; the energy (quadratic) does not.
    let system = System::new(2.0, 0.1, 0.1);
    let osc = system.oscillator();
    let model = two_head_model(osc.propagator(0.1), [0.0, 0.0], gauge(2), 1);
    let mut vrng = Rng::new(0, Stream::Valid);
    let sampler = physlens::data::Sampler::new(&system.into(), 4.0, 0.0, 1);
    let data = physlens::data::Dataset::<f64>::generate(&sampler, 1000, &mut vrng);
    let names = vec!["blocks.0.resid_post".to_string(), "blocks.0.attn.pattern".to_string()];
    let table = probe_table(&model, &data.inputs, &osc, 0.1, &names, 1e-8).unwrap();
    let r2 = |a: &str, t: &str| table.iter().find(|r| r.activation == a && r.target == t).unwrap().r2;
    for t in ["x", "p", "exact.x", "leapfrog.p_half", "(Ah)^2 s.p", "euler.p"] {
        assert!(r2("blocks.0.resid_post", t) > 1.0 - 1e-9, "{t}: {}", r2("blocks.0.resid_post", t));
        // The pattern is constant at context 1: it carries nothing.
        assert!(r2("blocks.0.attn.pattern", t) <= 0.0, "{t} from the pattern");
    }
    assert!(r2("blocks.0.resid_post", "energy").abs() < 0.1);
    let err = probe_table(&model, &data.inputs, &osc, 0.1, &["blocks.9.resid_post".to_string()], 1e-8).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("blocks.9.resid_post"), "{err}");
}

#[test]
fn margin_explanation_names_rules_it_cannot_tell_apart() {
    // Halfway between exact and RK4: equally near both.
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let osc = system.oscillator();
    let (exact, rk4) = (rule_map("exact", &osc, 0.1).unwrap(), rule_map("rk4", &osc, 0.1).unwrap());
    let halfway = mat2::scale(&mat2::add(&exact, &rk4), 0.5);
    let (_, r) = save_and_interpret(
        dir.path(),
        "halfway.safetensors",
        &two_head_model(halfway, [0.0, 0.0], gauge(1), 1),
        &system,
    );
    assert!(!r.map.identifiable && r.map.margin < 1.01, "margin {}", r.map.margin);
    let e = &r.margin_explanation;
    assert!(e.indistinguishable.contains(&"exact".to_string()) && e.indistinguishable.contains(&"rk4".to_string()));
    assert!((e.rule_separation - dist(&exact, &rk4)).abs() <= 1e-15);
    let text = render(&r);
    assert!(text.contains("cannot tell") && text.contains("exact") && text.contains("rk4"), "{text}");
    assert!(!text.contains("verdict: runs"), "{text}");
}

#[test]
fn omega_beyond_nyquist_is_reported_not_identifiable() {
    // ω0 = 40, Δt = 0.1: ωΔt ≈ 4 > π. The exact map aliases.
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(40.0, 0.0, 0.1);
    let m = system.oscillator().propagator(0.1);
    let (_, r) =
        save_and_interpret(dir.path(), "alias.safetensors", &two_head_model(m, [0.0, 0.0], gauge(4), 1), &system);
    assert!(!r.omega_identifiability.identifiable);
    assert!(r.omega_identifiability.statement.contains("not identifiable"), "{}", r.omega_identifiability.statement);
    assert!(render(&r).contains("no map at this Δt can identify ω"));
    // An identifiable one says so.
    let ok = System::new(2.0, 0.0, 0.1);
    let (_, r) = save_and_interpret(
        dir.path(),
        "ok.safetensors",
        &two_head_model(ok.oscillator().propagator(0.1), [0.0, 0.0], gauge(4), 1),
        &ok,
    );
    assert!(r.omega_identifiability.identifiable && r.omega_identifiability.statement.starts_with("ω is identifiable"));
}

#[test]
fn readings_a_map_does_not_define_are_printed_as_undefined_not_nan() {
    // A negative eigenvalue (no real logarithm, no ω0 from the spectrum) and
    // −M21/M12 < 0 (no square root): the JSON holds null, the text says so.
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(2.0, 0.1, 0.1);
    let m = [[0.5, 0.2], [0.3, -0.1]];
    let (_, r) =
        save_and_interpret(dir.path(), "flip.safetensors", &two_head_model(m, [0.0, 0.0], gauge(2), 1), &system);
    assert!(r.map.learned.omega0.is_nan() && r.map.omega0_sq_ratio < 0.0);
    let text = render(&r);
    assert!(text.contains("spectral : ω0 = undefined") && text.contains("not positive"), "{text}");
    assert!(text.contains("no overdamped reading either"), "{text}");
    assert!(!text.contains("NaN"), "{text}");
    // Both eigenvalues positive, one above 1 (a growing mode): ln λ1 · ln λ2 < 0.
    let m = [[1.2, 0.0], [0.0, 0.8]];
    let (_, r) =
        save_and_interpret(dir.path(), "grow.safetensors", &two_head_model(m, [0.0, 0.0], gauge(3), 1), &system);
    let text = render(&r);
    assert!(r.map.learned.omega0.is_nan() && text.contains("one mode grows"), "{text}");
    assert!(!text.contains("NaN"), "{text}");
}

#[test]
fn path_maps_are_gauge_invariant_and_single_weights_are_not() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let m = rule_map("leapfrog", &osc, 0.1).unwrap();
    let a = physlens::interpret::circuits::circuits(&two_head_model(m, [0.0, 0.0], gauge(11), 5), 0.1);
    let b = physlens::interpret::circuits::circuits(&two_head_model(m, [0.0, 0.0], gauge(12), 5), 0.1);
    // Same heads (same seed, same split), different residual gauge.
    for (ha, hb) in a.heads.iter().zip(&b.heads) {
        let (pa, pb) = (ha.path.as_ref().unwrap(), hb.path.as_ref().unwrap());
        assert!(dist(&pa.map, &pb.map) <= 1e-12 && pa.gauge_invariant);
        for (ea, eb) in ha.ov.eigenvalues.iter().zip(&hb.ov.eigenvalues) {
            assert!((ea.re - eb.re).abs() <= 1e-12 && (ea.im - eb.im).abs() <= 1e-12, "{ea:?} vs {eb:?}");
        }
        assert!(ha.ov.eigenvalues_gauge_invariant && !ha.ov.singular_values_gauge_invariant);
        let sv_gap = (ha.ov.singular_values[0] - hb.ov.singular_values[0]).abs();
        assert!(sv_gap > 1e-6, "OV singular values should depend on the gauge here");
    }
    let (da, db) = (a.direct.as_ref().unwrap().map, b.direct.as_ref().unwrap().map);
    assert!(dist(&da, &db) <= 1e-12 && dist(&da, &mat2::identity()) <= 1e-12);
    assert!(a.gauge.iter().any(|g| g.quantity.contains("W_E") && !g.gauge_invariant));
}

#[test]
fn truncation_order_across_step_sizes() {
    // Undamped: with γ > 0 the leapfrog of docs/physics.md kicks with a force that
    // depends on the momentum explicitly, which is only first order in γ.
    let dir = tempfile::tempdir().unwrap();
    for (rule, slope) in [("euler", 2.0), ("leapfrog", 3.0), ("rk4", 5.0)] {
        let mut ckpts = Vec::new();
        let mut files = Vec::new();
        for dt in [0.02, 0.04, 0.08] {
            let system = System::new(2.0, 0.0, dt);
            let m = rule_map(rule, &system.oscillator(), dt).unwrap();
            let path = dir.path().join(format!("{rule}-{dt}.safetensors"));
            checkpoint::save(&path, &two_head_model(m, [0.0, 0.0], gauge(5), 1), system, &BTreeMap::new()).unwrap();
            ckpts.push(checkpoint::load(&path).unwrap());
            files.push(path.display().to_string());
        }
        let multi = interpret_many(&ckpts, &files, &options()).unwrap();
        let fit = multi.truncation_order.as_ref().unwrap();
        assert!((fit.slope - slope).abs() < 0.1, "{rule}: slope {}", fit.slope);
        assert!((fit.method_order - (slope - 1.0)).abs() < 0.1 && fit.r2 > 0.999 && fit.note.is_empty());
        assert!(physlens::interpret::text::render_many(&multi).contains("truncation order"));
    }
    // One Δt only: no fit, and a reason.
    let system = System::new(2.0, 0.1, 0.1);
    let path = dir.path().join("one.safetensors");
    checkpoint::save(
        &path,
        &two_head_model(rule_map("euler", &system.oscillator(), 0.1).unwrap(), [0.0; 2], gauge(5), 1),
        system,
        &BTreeMap::new(),
    )
    .unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    let multi = interpret_many(&[ckpt.clone(), ckpt], &["a".into(), "b".into()], &options()).unwrap();
    assert!(multi.truncation_order.is_none() && multi.truncation_order_unavailable.unwrap().contains("Δt"));
}

#[test]
fn dumped_activations_read_back_as_npy_and_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let (model, _) = two_step_model(osc.propagator(0.1), [0.0, 0.0], gauge(3), [0.0, 0.0]);
    let model = to_f32(&model);
    let mut rng = Rng::new(1, Stream::Valid);
    let sampler = physlens::data::Sampler::new(&physlens::System::new(2.0, 0.1, 0.1).into(), 4.0, 0.0, 3);
    let data = physlens::data::Dataset::<f32>::generate(&sampler, 1500, &mut rng);
    let names = vec!["blocks.0.attn.pattern".to_string(), "embed".to_string()];
    let files = dump_activations(&model, &data.inputs, &names, dir.path(), DumpFormat::Both).unwrap();
    assert_eq!(files.len(), 4, "{files:?}"); // input.npy, two activations, activations.safetensors
    // .npy: parse the header and compare with a direct forward pass on the last chunk.
    let bytes = std::fs::read(dir.path().join("blocks.0.attn.pattern.npy")).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'shape': (1500, 2, 3, 3)"), "{header}");
    assert_eq!((10 + header_len) % 64, 0);
    let values: Vec<f32> =
        bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(values.len(), 1500 * 2 * 9);
    let mut acts = Activations::new(&model.cfg, 1);
    let last = &data.inputs[1499 * 6..];
    model.forward(last, &mut acts);
    let (want, _) = acts.get(&model.cfg, "blocks.0.attn.pattern").unwrap();
    assert_eq!(&values[1499 * 18..], want);
    // safetensors: every array by name, same shapes.
    let st_bytes = std::fs::read(dir.path().join("activations.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert_eq!(st.tensor("embed").unwrap().shape(), &[1500, 3, 5]);
    assert_eq!(st.tensor("input").unwrap().shape(), &[1500, 3, 2]);
    assert_eq!(st.tensor("blocks.0.attn.pattern").unwrap().data(), &bytes[10 + header_len..]);
    // Unknown names are refused before anything is written.
    let empty = tempfile::tempdir().unwrap();
    let err = dump_activations(&model, &data.inputs, &["nope".to_string()], empty.path(), DumpFormat::Npy).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
}

#[test]
fn regression_circuit_eigenvalues_of_a_nilpotent_shift_qk_terminate() {
    // nalgebra's unbounded Schur iteration never returned on the two-step
    // model's shift-shaped QK matrix; the bounded one with rotations must.
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let (model, _) = two_step_model(osc.propagator(0.1), [0.0, 0.0], gauge(3), [0.0, 0.0]);
    let c = physlens::interpret::circuits::circuits(&model, 0.1);
    let qk = &c.heads[1].qk;
    let norm = qk.singular_values[0];
    assert!(norm > 100.0, "the shift has weight a² ≈ 179: {norm}");
    for e in &qk.eigenvalues {
        assert!(e.re.is_finite() && e.im.is_finite() && e.abs() <= 1e-3 * norm, "{:?}", qk.eigenvalues);
    }
}

/// A context-1 model whose attention writes nothing and whose relu MLP
/// computes `s (R − I)` exactly (`relu(x) − relu(−x) = x`): the model is the
/// planted map `M = Rᵀ`, but not by a formula the closed form knows.
fn relu_mlp_model(m: &Mat2) -> Model<f64> {
    let cfg = ModelConfig { d_mlp: 4, act: physlens::model::Act::Relu, ..ModelConfig::seed() };
    let mut model = Model::<f64>::zeros(&cfg);
    let mut set = |name: &str, values: &[f64]| {
        let t = model.layout.tensors(&cfg).into_iter().find(|t| t.name == name).unwrap();
        model.params[t.range].copy_from_slice(values);
    };
    set("embed.W_E", &[1.0, 0.0, 0.0, 1.0]);
    set("unembed.W_U", &[1.0, 0.0, 0.0, 1.0]);
    set("blocks.0.mlp.W_in", &[1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0]); // [I | −I]
    // W_out rows: (R − I) for relu(s), −(R − I) for relu(−s); R = Mᵀ, so (R − I)[i][j] = M[j][i] − δ.
    let a = |i: usize, j: usize| m[j][i] - if i == j { 1.0 } else { 0.0 };
    set("blocks.0.mlp.W_out", &[a(0, 0), a(0, 1), a(1, 0), a(1, 1), -a(0, 0), -a(0, 1), -a(1, 0), -a(1, 1)]);
    model
}

#[test]
fn a_planted_map_inside_a_relu_mlp_is_read_back_through_the_jacobians() {
    let osc = Oscillator { omega0: 2.0, gamma: 0.1 };
    let system = System::new(2.0, 0.1, 0.1);
    let want = rule_map("rk4", &osc, 0.1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, r) = save_and_interpret(dir.path(), "mlp.safetensors", &relu_mlp_model(&want), &system);
    // No closed form (MLP blocks): the map comes from the Jacobians, which are the planted map everywhere.
    assert_eq!(r.effective_map_source, "jacobian");
    assert!(dist(&r.map.effective_map, &want) <= 1e-12, "map {:?} vs {want:?}", r.map.effective_map);
    assert!(r.jacobians.last().max_dev <= 1e-12);
    assert_eq!(r.map.nearest_method, "rk4");
    let one_step = r.one_step.as_ref().expect("a one-step fit for a model that is not one closed-form map");
    assert!(one_step.rms_residual <= 1e-12 && dist(&one_step.report.effective_map, &want) <= 1e-12);
    // No path decomposition, and it says why.
    let why = r.circuits.paths_left_out.as_deref().unwrap();
    assert!(why.contains("MLP") && r.circuits.direct.is_none() && r.circuits.heads[0].path.is_none(), "{why}");
    assert!(render(&r).contains("path maps left out: MLP blocks"));
    // The hidden layer is probed by default, and decodes x and p (it holds relu(±s)).
    let post: Vec<_> = r.probes.iter().filter(|p| p.activation == "blocks.0.mlp.post").collect();
    assert!(!post.is_empty());
    assert!(post.iter().filter(|p| p.target == "x" || p.target == "p").all(|p| p.r2 > 0.999), "{post:?}");
}

#[test]
fn mlp_activations_are_dumped_under_transformer_lens_names() {
    let model = relu_mlp_model(&mat2::identity());
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<f64> = (0..10).map(|i| i as f64 * 0.3 - 1.4).collect();
    let names: Vec<String> =
        ["blocks.0.resid_mid", "blocks.0.mlp.pre", "blocks.0.mlp.post", "blocks.0.mlp_out"].map(String::from).into();
    dump_activations(&model, &inputs, &names, dir.path(), DumpFormat::Npy).unwrap();
    for (name, width) in
        [("blocks.0.resid_mid", 2), ("blocks.0.mlp.pre", 4), ("blocks.0.mlp.post", 4), ("blocks.0.mlp_out", 2)]
    {
        let bytes = std::fs::read(dir.path().join(format!("{name}.npy"))).unwrap();
        let header = String::from_utf8_lossy(&bytes[..128]);
        assert!(header.contains(&format!("'shape': (5, 1, {width})")), "{name}: {header}");
    }
    let mut acts = Activations::new(&model.cfg, 5);
    model.forward(&inputs, &mut acts);
    let (post, _) = acts.get(&model.cfg, "blocks.0.mlp.post").unwrap();
    let (pre, _) = acts.get(&model.cfg, "blocks.0.mlp.pre").unwrap();
    assert!(post.iter().zip(pre).all(|(a, b)| *a == b.max(0.0)));
}

/// The hand-built filter model predicts `Σ_k A_k s_{T−1−k}` at the last
/// position for any sequence, to rounding.
#[test]
fn the_hand_built_filter_model_runs_its_filter() {
    use crate::handbuilt::filter_model;
    let taps = [[[1.9, 0.1], [-0.2, 1.8]], [[-1.0, 0.05], [0.1, -0.9]], [[0.1, 0.0], [0.02, 0.05]]];
    let model = filter_model(&taps, 6, gauge(11));
    let mut rng = physlens::util::rng::Rng::new(3, physlens::util::rng::Stream::Valid);
    let input: Vec<f64> = (0..4 * 6 * 2).map(|_| rng.normal()).collect();
    let mut acts = physlens::model::Activations::new(&model.cfg, 4);
    model.forward(&input, &mut acts);
    let (pred, _) = acts.get(&model.cfg, "pred").unwrap();
    for b in 0..4 {
        let s = |t: usize| [input[(b * 6 + t) * 2], input[(b * 6 + t) * 2 + 1]];
        let mut want = [0.0; 2];
        for (k, tap) in taps.iter().enumerate() {
            let v = physlens::util::mat2::apply(tap, s(5 - k));
            want = [want[0] + v[0], want[1] + v[1]];
        }
        let got = [pred[(b * 6 + 5) * 2], pred[(b * 6 + 5) * 2 + 1]];
        assert!((got[0] - want[0]).abs() < 1e-12 && (got[1] - want[1]).abs() < 1e-12, "{got:?} vs {want:?}");
    }
}
