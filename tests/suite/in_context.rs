//! Parameters drawn per sequence (docs/physics.md, "In-context systems"):
//! the `[system]` ranges and the `[run]` cases that set them, the data a
//! sampler draws (per-sequence systems, observation noise), the checkpoint's
//! `system` metadata, and the in-context evaluation against planted models
//! whose answer is known and against a trained study recomputed from its
//! saved weights.

use std::collections::BTreeMap;

use physlens::config::Config;
use physlens::data::{Dataset, Sampler};
use physlens::eval::in_context::{evaluate, wider};
use physlens::model::checkpoint;
use physlens::physics::{Param, System, SystemSpec};
use physlens::util::mat2::{self, Vec2, apply};
use physlens::util::rng::{Rng, Stream};

use crate::common::{assert_config_refused, physlens, stderr};
use crate::handbuilt::{gauge, two_head_model, two_step_model};

fn ranged() -> SystemSpec {
    SystemSpec {
        omega0: Param::Uniform([1.0, 4.0]),
        gamma: Param::Uniform([0.0, 0.5]),
        ..SystemSpec::from(System::new(2.0, 0.1, 0.1))
    }
}

#[test]
fn a_parameter_is_a_number_or_a_range_and_anything_else_is_refused_by_name() {
    let c = Config::parse("[system]\nomega0 = [1, 4]\ngamma = 0\ndt = [0.05, 0.2]\n", "t").unwrap();
    assert_eq!(c.system.omega0, Param::Uniform([1.0, 4.0]));
    assert_eq!(c.system.gamma, Param::Fixed(0.0));
    assert!(c.system.fixed().is_none());
    assert_eq!(Config::parse(&c.to_toml(), "resolved").unwrap(), c);
    for (text, key, needle) in [
        ("[system]\nomega0 = [4.0, 1.0]\n", "system.omega0", "lo < hi"),
        ("[system]\nomega0 = [2.0, 2.0]\n", "system.omega0", "lo < hi"),
        ("[system]\ngamma = [-0.1, 0.5]\n", "system.gamma", "≥ 0"),
        ("[system]\ndt = [0.0, 0.1]\n", "system.dt", "> 0"),
        ("[system]\nomega0 = [1.0, 2.0, 3.0]\n", "system.omega0", "[lo, hi]"),
        ("[system]\nomega0 = \"fast\"\n", "system.omega0", "[lo, hi]"),
        ("[data]\nnoise = -0.1\n", "data.noise", "≥ 0"),
    ] {
        assert_config_refused(text, key, needle);
    }
}

#[test]
fn a_fixed_spec_without_noise_draws_what_it_always_drew() {
    // Two sequences drawn by hand the way the first version did: energy, phase, exact steps.
    let system = System::new(2.0, 0.1, 0.1);
    let data = Dataset::<f64>::generate(&Sampler::new(&system.into(), 1.0, 0.0, 3), 2, &mut Rng::new(5, Stream::Train));
    let mut rng = Rng::new(5, Stream::Train);
    let m = system.step();
    let mut want = vec![];
    for _ in 0..2 {
        let mut s = physlens::data::sample_state(&system.oscillator(), 1.0, &mut rng);
        for _ in 0..3 {
            want.extend(s);
            s = apply(&m, s);
        }
    }
    assert_eq!(data.inputs, want);
    assert!(data.systems.iter().all(|s| *s == system));
}

#[test]
fn each_sequence_has_its_own_system_in_range_and_its_targets_follow_it() {
    let spec = ranged();
    let data = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, 0.0, 5), 200, &mut Rng::new(1, Stream::Valid));
    let omegas: Vec<f64> = data.systems.iter().map(|s| s.omega0).collect();
    assert!(omegas.iter().all(|w| (1.0..=4.0).contains(w)));
    assert!(omegas.iter().any(|w| *w < 2.0) && omegas.iter().any(|w| *w > 3.0), "drawn per sequence");
    for (n, system) in data.systems.iter().enumerate() {
        assert!(spec.contains(system));
        let m = system.step();
        for t in 0..5 {
            let i = (n * 5 + t) * 2;
            let want = apply(&m, [data.inputs[i], data.inputs[i + 1]]);
            assert!((want[0] - data.targets[i]).abs() < 1e-15 && (want[1] - data.targets[i + 1]).abs() < 1e-15);
        }
        let clean = data.clean_states(n);
        assert_eq!(&clean[1..].concat()[..], &data.targets[n * 10..(n + 1) * 10]);
    }
    // The same seed draws the same sequences.
    let again = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, 0.0, 5), 200, &mut Rng::new(1, Stream::Valid));
    assert_eq!(again, data);
}

#[test]
fn observation_noise_is_on_the_inputs_only_and_scales_with_the_amplitude() {
    let spec = ranged();
    let sigma = 0.01;
    let data = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, sigma, 8), 2000, &mut Rng::new(2, Stream::Valid));
    let mut z = vec![];
    for n in 0..data.len() {
        let clean = data.clean_states(n);
        assert_eq!(&clean[1..].concat()[..], &data.targets[n * 16..(n + 1) * 16], "targets stay clean");
        let amplitude = (2.0 * data.systems[n].oscillator().energy(clean[0])).sqrt();
        let inputs = &data.inputs[n * 16..(n + 1) * 16];
        for (observed, exact) in inputs.iter().zip(clean[..8].concat()) {
            z.push((observed - exact) / (sigma * amplitude));
        }
    }
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64;
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "standardised noise: mean {mean}, variance {var}");
}

#[test]
fn a_checkpoint_keeps_the_training_ranges_and_refuses_a_backwards_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ic.safetensors");
    let model = two_head_model(System::new(2.0, 0.1, 0.1).step(), [0.0; 2], gauge(1), 1);
    checkpoint::save(&path, &model, ranged(), &BTreeMap::new()).unwrap();
    let ckpt = checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.system, ranged());
    assert!(ckpt.metadata["system"].contains("\"omega0\":[1.0,4.0]"), "{}", ckpt.metadata["system"]);
    let backwards = SystemSpec { omega0: Param::Uniform([4.0, 1.0]), ..ranged() };
    let err = checkpoint::save(&path, &model, backwards, &BTreeMap::new()).unwrap_err().to_string();
    assert!(err.contains("omega0") && err.contains("lo < hi"), "{err}");
    // `physlens interpret` reads such a checkpoint with its in-context section.
    checkpoint::save(&path, &model, ranged(), &BTreeMap::new()).unwrap();
    let out = physlens(&["interpret", "--model", path.to_str().unwrap(), "--json"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["in_context"]["verdict"].is_string(), "{json}");
}

/// Clean f64 sequences of `spec` to fit the fixed filters on.
fn training(spec: &SystemSpec, context: usize) -> Vec<Vec<Vec2>> {
    let data = Dataset::<f64>::generate(&Sampler::new(spec, 1.0, 0.0, context), 1000, &mut Rng::new(0, Stream::Train));
    (0..data.len()).map(|n| data.clean_states(n)).collect()
}

/// Planted: a context-1 model that applies the fitted `filter_1` map is read
/// as `filter_1`, with its errors; one that applies `2 s_t − s_{t−1}` (the
/// two-step model with M = I) as `extrapolation_2`; one that predicts zero
/// as none of them.
#[test]
fn a_planted_filter_is_found_as_the_nearest_baseline_with_its_errors() {
    let spec = ranged();
    let train = training(&spec, 1);
    let filter = physlens::physics::baselines::LinearFilter::fit(&train, 1).unwrap();
    let m = filter.taps[0];
    let model = two_head_model(m, [0.0; 2], gauge(3), 3);
    let valid = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, 0.0, 1), 500, &mut Rng::new(0, Stream::Valid));
    let r = evaluate(&model, &spec, &valid, None, &train).record;
    assert_eq!(r.positions, [1]);
    assert_eq!((r.nearest_baseline.as_str(), r.resembles_nearest), ("filter_1", true));
    assert!(r.nearest_baseline_distance < 1e-12, "{}", r.nearest_baseline_distance);
    let want = r.baselines["filter_1"].median_rel_err[0];
    assert!((r.median_rel_err_last - want).abs() < 1e-12 * want, "{} vs {want}", r.median_rel_err_last);
    assert!(r.baselines["ls_fit"].median_rel_err[0].is_nan(), "ls_fit needs two pairs");

    // A model that predicts the zero state is no closer to any baseline than to the truth.
    let zero = two_head_model([[0.0; 2]; 2], [0.0; 2], gauge(3), 3);
    let r = evaluate(&zero, &spec, &valid, None, &train).record;
    assert!(!r.resembles_nearest, "distance {}", r.nearest_baseline_distance);
    assert!((r.median_rel_err_last - 1.0).abs() < 1e-12);

    let (two_step, _) = two_step_model(mat2::identity(), [0.0; 2], gauge(4), [0.0; 2]);
    let train3 = training(&spec, 3);
    let valid = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, 0.0, 3), 500, &mut Rng::new(0, Stream::Valid));
    let wide_spec = wider(&spec).unwrap();
    let wide = Dataset::<f64>::generate(&Sampler::new(&wide_spec, 1.0, 0.0, 3), 500, &mut Rng::new(0, Stream::Wide));
    let r = evaluate(&two_step, &spec, &valid, Some(&(wide_spec, wide)), &train3).record;
    assert_eq!((r.nearest_baseline.as_str(), r.resembles_nearest), ("extrapolation_2", true));
    assert!(r.nearest_baseline_distance < 1e-9, "{}", r.nearest_baseline_distance);
    let want = r.baselines["extrapolation_2"].median_rel_err[2];
    assert!((r.median_rel_err_last - want).abs() < 1e-9 * want);
    assert_eq!(r.baselines["ls_fit"].median_rel_err.len(), 3);
    assert!(r.baselines["ls_fit"].median_rel_err[2] < 1e-13, "ls_fit is exact from three states");
    let outside = r.outside.unwrap();
    assert_eq!(outside.system.omega0, Param::Uniform([0.5, 5.0]));
    assert!(outside.n_sequences > 50 && outside.n_sequences < 500, "{}", outside.n_sequences);
}

#[test]
fn cases_set_any_key_by_its_dotted_name_and_a_bad_one_is_named() {
    let text = "[run]\ncases = [{ name = \"a\" }, { name = \"ic\", \"system.omega0\" = [1.0, 4.0], \"data.context\" = 8, \
                \"model.causal\" = false }, { name = \"old\", gamma = 0.3 }]\n";
    let c = Config::parse(text, "t").unwrap();
    let cases = c.case_configs().unwrap();
    assert_eq!(cases[0].system, c.system);
    assert_eq!((cases[1].system.omega0, cases[1].data.context), (Param::Uniform([1.0, 4.0]), 8));
    assert_eq!(cases[1].train.loss_positions, Some(physlens::model::LossPositions::Last), "follows the case's mask");
    assert_eq!(cases[2].system.gamma, Param::Fixed(0.3));
    for (cases, key, needle) in [
        ("{ name = \"x\", \"system.omegaa\" = 1.0 }", "run.cases[0].system.omegaa", "omega0"),
        ("{ name = \"x\", \"model.n_layers\" = \"two\" }", "run.cases[0].model.n_layers", "expected"),
        ("{ name = \"x\", \"system.gamma\" = -1.0 }", "run.cases[0].system.gamma", "≥ 0"),
        ("{ name = \"x\", steps = 10 }", "run.cases[0].steps", "dotted"),
        ("{ name = \"x\" }, { name = \"x\" }", "run.cases[1].name", "also the name"),
        (
            "{ name = \"x\", \"model.causal\" = false, \"train.loss_positions\" = \"all\" }",
            "run.cases[0].train.loss_positions",
            "leak",
        ),
    ] {
        assert_config_refused(&format!("[run]\ncases = [{cases}]\n"), key, needle);
    }
}

/// A small in-context study end to end: the `in_context` keys of
/// `summary.json`, `sequences.csv`, the figures, and the headline numbers
/// recomputed from the saved weights and the documented data alone.
#[test]
fn an_in_context_study_reports_per_position_errors_that_the_saved_weights_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[system]\nomega0 = [1.0, 4.0]\ngamma = [0.0, 0.5]\n[data]\ncontext = 6\nn_train = 0\nn_valid = 300\n\
                  e_valid_max = 1.0\n[model]\nd_model = 8\nn_heads = 2\nd_head = 4\npositional = true\n\
                  [train]\nsteps = 300\nlr = 3e-3\nlog_every = 100\nseed = 5\n[eval]\nrollout_steps = 20\nn_rollouts = 8\n\
                  [run]\ncases = [{ name = \"ic\" }]\n";
    std::fs::write(dir.path().join("ic.toml"), config).unwrap();
    let out = physlens(&["run", "--config", "ic.toml", "--out", "out"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("out");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let case = &summary["cases"][0];
    assert_eq!(case["omega0"], serde_json::json!([1.0, 4.0]));
    assert!(case["learned"].is_null() && case["nearest_method"].is_null());
    let ic = &case["in_context"];
    assert_eq!(ic["positions"], serde_json::json!([1, 2, 3, 4, 5, 6]));
    assert_eq!(ic["median_rel_err"].as_array().unwrap().len(), 6);
    let mut names: Vec<&str> = ic["baselines"].as_object().unwrap().keys().map(String::as_str).collect();
    names.sort();
    let mut want: Vec<String> = ["ls_fit".to_string()]
        .into_iter()
        .chain((1..=8).map(|k| format!("filter_{k}")))
        .chain((1..=4).map(|k| format!("extrapolation_{k}")))
        .collect();
    want.sort();
    assert_eq!(names, want);
    for name in &names {
        assert_eq!(ic["baselines"][name]["median_rel_err"].as_array().unwrap().len(), 6, "{name}");
    }
    assert_in_context_interpretation(&run);
    let sequences = std::fs::read_to_string(run.join("ic/sequences.csv")).unwrap();
    assert_eq!(sequences.lines().count(), 1 + 2 * 300);
    for figure in ["in_context_error", "error_vs_parameters"] {
        assert!(run.join(format!("ic/figures/{figure}.svg")).is_file(), "{figure}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(html.contains("section-in_context_error"));
    let doc = scraper::Html::parse_document(&html);
    let note = scraper::Selector::parse(".skipped[data-figure=\"eigenvalues\"]").unwrap();
    let note: String = doc.select(&note).next().expect("the eigenvalues slot is a note").text().collect();
    assert!(note.contains("drawn per sequence"), "{note}");

    // Recompute the headline from the checkpoint and the documented validation draw (train.seed 5).
    let ckpt = checkpoint::load(&run.join("ic/model.safetensors")).unwrap();
    assert_eq!(ckpt.system.omega0, Param::Uniform([1.0, 4.0]));
    let valid =
        Dataset::<f64>::generate(&Sampler::new(&ckpt.system, 1.0, 0.0, 6), 300, &mut Rng::new(5, Stream::Valid));
    let physlens::model::checkpoint::AnyModel::F32(model32) = &ckpt.model else { panic!("f32 by default") };
    let valid32 =
        Dataset::<f32>::generate(&Sampler::new(&ckpt.system, 1.0, 0.0, 6), 300, &mut Rng::new(5, Stream::Valid));
    let mut acts = physlens::model::Activations::new(&model32.cfg, 300);
    model32.forward(&valid32.inputs, &mut acts);
    let mut errs: Vec<f64> = (0..300)
        .map(|n| {
            let s = valid.clean_states(n);
            let p = &acts.pred[(n * 6 + 5) * 2..][..2];
            (p[0] as f64 - s[6][0]).hypot(p[1] as f64 - s[6][1]) / s[6][0].hypot(s[6][1])
        })
        .collect();
    errs.sort_by(f64::total_cmp);
    let median = 0.5 * (errs[149] + errs[150]);
    let reported = ic["median_rel_err_last"].as_f64().unwrap();
    assert!((median - reported).abs() <= 1e-12 * reported, "{median} vs {reported}");
}

/// The in-context interpretation of the study's case `ic` (300 validation
/// sequences, context 6): `interpret.json` holds `in_context` (as
/// `physlens interpret --json` has it) and no map, `implied.csv` one row per
/// sequence, `filter.csv` one per tap, `patch.json` the heat maps; the
/// report draws the figures and quotes the verdict.
fn assert_in_context_interpretation(run: &std::path::Path) {
    let interpret: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("ic/interpret.json")).unwrap()).unwrap();
    assert!(interpret.get("effective_map").is_none(), "no one system to read a map against");
    let verdict = interpret["in_context"]["verdict"].as_str().expect("a verdict").to_string();
    // The same object as `physlens interpret` of the case's checkpoint with the
    // case's validation settings (its probes' control: the training seed's init).
    let args =
        ["interpret", "--model", "ic/model.safetensors", "--json", "--n-valid", "300", "--e-max", "1", "--seed", "5"];
    let out = physlens(&args, run);
    assert!(out.status.success(), "{}", stderr(&out));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["in_context"], interpret["in_context"]);
    assert_eq!(interpret["in_context"]["n_sequences"], 300);
    let implied = std::fs::read_to_string(run.join("ic/implied.csv")).unwrap();
    let mut lines = implied.lines();
    assert_eq!(
        lines.next(),
        Some(
            "sequence,omega0,gamma,behaviour_omega0,behaviour_gamma,behaviour_form,jacobian_omega0,jacobian_gamma,\
             jacobian_form"
        )
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 300);
    let formed = rows.iter().filter(|r| r[5] == "true").count();
    assert_eq!(interpret["in_context"]["implied"]["n_oscillator_form"], formed);
    for r in &rows {
        assert_eq!(r.len(), 9);
        assert_eq!(r[3].is_empty(), r[5] == "false", "{r:?}");
        assert_eq!(r[6].is_empty(), r[8] == "false", "{r:?}");
    }
    let filter = std::fs::read_to_string(run.join("ic/filter.csv")).unwrap();
    assert_eq!(filter.lines().count(), 1 + 6);
    let patch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("ic/patch.json")).unwrap()).unwrap();
    let names: Vec<&str> = patch["heatmaps"].as_array().unwrap().iter().map(|h| h["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["residual", "heads"]);
    assert_eq!(patch["pairs"]["n_pairs"], 64);
    let probes = &interpret["in_context"]["probes"];
    let len = |key: &str| probes[key].as_array().unwrap().len();
    let csv = std::fs::read_to_string(run.join("ic/context_probes.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("target,site,position,r2,untrained_r2"));
    assert_eq!(csv.lines().count(), 1 + len("targets") * len("sites") * len("positions"));
    let figures = [
        "implied_behaviour",
        "filter_taps",
        "filter_roots",
        "probe_omega0",
        "probe_tr_M",
        "probe_det_M",
        "patch_residual",
        "patch_heads",
    ];
    for figure in &figures {
        assert!(run.join(format!("ic/figures/{figure}.svg")).is_file(), "{figure}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let doc = scraper::Html::parse_document(&html);
    let text = |selector: &str| -> Option<String> {
        let s = scraper::Selector::parse(selector).unwrap();
        doc.select(&s).next().map(|e| e.text().collect())
    };
    let shown = text(".finding[data-figure=\"in_context_verdict\"]").expect("the verdict is on the page");
    assert!(shown.contains(&verdict), "{shown}");
    for figure in &figures {
        assert!(text(&format!("figure[data-figure=\"{figure}\"] svg")).is_some(), "{figure}");
    }
    let caption = text("figure[data-figure=\"probe_omega0\"] figcaption").expect("a caption");
    assert!(caption.contains("untrained model"), "{caption}");
    // The Jacobian readout is drawn, or its slot says why not.
    match interpret["in_context"]["jacobian_implied_reason"].as_str() {
        None => assert!(text("figure[data-figure=\"implied_jacobian\"] svg").is_some()),
        Some(why) => {
            let note = text(".skipped[data-figure=\"implied_jacobian\"]").expect("a note");
            assert!(note.contains(why), "{note}");
        }
    }
}

/// `sequences.csv` holds what an outside check needs to remake every
/// validation sequence: its parameters and clean first state.
#[test]
fn sequences_csv_remakes_every_validation_sequence() {
    let spec = ranged();
    let valid = Dataset::<f64>::generate(&Sampler::new(&spec, 1.0, 0.0, 4), 50, &mut Rng::new(0, Stream::Valid));
    let model = two_head_model(System::new(2.0, 0.1, 0.1).step(), [0.0; 2], gauge(2), 2);
    let csv = evaluate(&model, &spec, &valid, None, &training(&spec, 4)).sequences_csv;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    for (n, line) in lines.enumerate() {
        let cells: Vec<f64> = line.split(',').map(|c| c.parse().unwrap_or(f64::NAN)).collect();
        let system = System::new(cells[col("omega0")], cells[col("gamma")], cells[col("dt")]);
        let mut s = [cells[col("x0")], cells[col("p0")]];
        for t in 0..4 {
            assert_eq!([valid.inputs[n * 8 + 2 * t], valid.inputs[n * 8 + 2 * t + 1]], s, "sequence {n}, token {t}");
            s = apply(&system.step(), s);
        }
    }
}
