//! Held-out probes across sequences (`in_context.probes`): what is exactly
//! known about a hand-built filter's residual stream is read back (a state
//! decodes where it sits, ω0 not from one state, a fixed filter's taps and
//! a fixed γ are constant), scoring is on sequences the fit never saw, and
//! `physlens interpret --json` carries the grid.

use physlens::interpret::context_probes::{ProbeGrid, probe_grid};
use physlens::interpret::in_context::{interpret_in_context, training_sequences, validation_set};
use physlens::model::{Act, AttnScale, Model, ModelConfig, checkpoint};
use physlens::physics::baselines::LinearFilter;
use physlens::physics::{Param, System, SystemSpec};
use physlens::util::mat2::Mat2;
use physlens::util::rng::{Rng, Stream};

use crate::common::{physlens, stderr, stdout};
use crate::handbuilt::{filter_model, gauge};

/// ω0 drawn per sequence on [1, 4], γ = 0.1, Δt = 0.1.
fn ranged() -> SystemSpec {
    SystemSpec { omega0: Param::Uniform([1.0, 4.0]), ..SystemSpec::from(System::new(2.0, 0.1, 0.1)) }
}

const N_CTX: usize = 6;
const E_MAX: f64 = 4.0;

/// The 3-tap filter fitted on training-range sequences, run by hand (one
/// layer, three heads, d_model 2 + T).
fn three_tap_model() -> Model<f64> {
    let training = training_sequences(&ranged(), N_CTX, E_MAX, 0);
    filter_model(&LinearFilter::fit(&training, 3).unwrap().taps, N_CTX, gauge(3))
}

/// `grid.r2` of `target` at `site`, position `pos`.
fn r2_at(grid: &ProbeGrid, target: &str, site: &str, pos: usize) -> f64 {
    let q = grid.targets.iter().position(|t| t == target).unwrap_or_else(|| panic!("no target {target}"));
    let s = grid.sites.iter().position(|t| t == site).unwrap_or_else(|| panic!("no site {site}"));
    grid.r2[q][s][pos]
}

/// Per-sequence taps `[N][T]` whose entry (0, i, j) is `planted[b]` for the
/// given entries and 0 elsewhere (constant).
fn planted_taps(entries: &[((usize, usize), Vec<f64>)], n: usize) -> Vec<Vec<Mat2>> {
    (0..n)
        .map(|b| {
            let mut taps = vec![[[0.0; 2]; 2]; N_CTX];
            for ((i, j), values) in entries {
                taps[0][*i][*j] = values[b];
            }
            taps
        })
        .collect()
}

/// At `blocks.0.resid_pre` position t the features are `s_t G + W_pos[t]`:
/// a target linear in `s_t` decodes there exactly, and ω0 does not decode
/// from `s_0` (the phase is uniform, so no linear function of one state
/// correlates with ω0). The fixed filter's own taps and γ do not vary: null.
#[test]
fn a_hand_built_filter_reads_back_what_is_exactly_known() {
    let model = three_tap_model();
    let training = training_sequences(&ranged(), N_CTX, E_MAX, 0);
    let set = validation_set(&ranged(), N_CTX, 512, E_MAX, 0);
    let r = interpret_in_context(&model, &set, &training, 0);
    let g = &r.probes;
    assert_eq!(
        g.sites,
        [
            "blocks.0.resid_pre",
            "blocks.0.resid_post",
            "blocks.0.attn.head0",
            "blocks.0.attn.head1",
            "blocks.0.attn.head2"
        ]
    );
    assert_eq!((g.n_fit, g.n_score, g.positions.len()), (256, 256, N_CTX));
    let omega0 = r2_at(g, "omega0", "blocks.0.resid_pre", 0);
    assert!(omega0.abs() <= 0.05, "ω0 from s_0 alone: R² {omega0}");
    for target in ["gamma", "taps0.00", "taps0.01", "taps0.10", "taps0.11", "taps1.00", "taps1.11"] {
        let q = g.targets.iter().position(|t| t == target).unwrap();
        assert!(g.r2[q].iter().flatten().all(|v| v.is_nan()), "{target} is constant: {:?}", g.r2[q]);
        assert!(g.best[q].site.is_none() && g.best[q].r2.is_nan(), "{:?}", g.best[q]);
    }
    // ω0 varies: its best probe is somewhere, with a finite R² at most 1.
    let best = &g.best[0];
    assert_eq!(best.target, "omega0");
    assert!(best.site.is_some() && best.r2.is_finite() && best.r2 <= 1.0, "{best:?}");

    // Planted: targets linear in the last state and in the first.
    let w = N_CTX * 2;
    let n = set.systems.len();
    let state = |b: usize, t: usize| [set.inputs[b * w + 2 * t], set.inputs[b * w + 2 * t + 1]];
    let last: Vec<f64> = (0..n).map(|b| 3.0 * state(b, N_CTX - 1)[0] - 2.0 * state(b, N_CTX - 1)[1] + 1.0).collect();
    let first: Vec<f64> = (0..n).map(|b| 0.5 * state(b, 0)[0] + state(b, 0)[1]).collect();
    let taps = planted_taps(&[((0, 0), last), ((0, 1), first)], n);
    let g = probe_grid(&model, None, &set.inputs, &set.systems, Some(&taps));
    let at_last = r2_at(&g, "taps0.00", "blocks.0.resid_pre", N_CTX - 1);
    let at_first = r2_at(&g, "taps0.01", "blocks.0.resid_pre", 0);
    assert!(at_last > 1.0 - 1e-9 && at_first > 1.0 - 1e-9, "{at_last} {at_first}");
    assert!(r2_at(&g, "taps0.01", "blocks.0.resid_pre", N_CTX - 1) < 0.99, "s_0 is not linear in s_T−1");
}

/// A random model with an MLP, 16 features per site, fed `n` sequences.
fn random_model() -> Model<f64> {
    let cfg = ModelConfig {
        d_model: 16,
        n_heads: 2,
        d_head: 8,
        n_layers: 1,
        d_mlp: 32,
        act: Act::Gelu,
        n_ctx: N_CTX,
        attn_scale: AttnScale::DHead,
        causal: true,
        positional: true,
        loss_positions: None,
    };
    Model::init(&cfg, &mut Rng::new(7, Stream::Init))
}

/// Noise on 12 sequences is memorised by 16 features: scored on those same
/// sequences R² ≈ 1, scored on 12 others R² ≤ 0. The grid scores on the
/// second half only.
#[test]
fn a_noise_target_fits_the_fit_half_but_scores_nothing_held_out() {
    let model = random_model();
    let set = validation_set(&ranged(), N_CTX, 24, E_MAX, 1);
    let w = N_CTX * 2;
    let mut rng = Rng::new(11, Stream::Valid);
    let noise: Vec<f64> = (0..24).map(|_| rng.normal()).collect();
    let site = "blocks.0.resid_post";
    // Second half = the first half again: the score is the in-sample fit.
    let twice: Vec<f64> = [&set.inputs[..12 * w], &set.inputs[..12 * w]].concat();
    let systems: Vec<System> = [&set.systems[..12], &set.systems[..12]].concat();
    let same: Vec<f64> = [&noise[..12], &noise[..12]].concat();
    let g = probe_grid(&model, None, &twice, &systems, Some(&planted_taps(&[((0, 0), same)], 24)));
    let in_sample = r2_at(&g, "taps0.00", site, N_CTX - 1);
    // Fresh second half.
    let g = probe_grid(&model, None, &set.inputs, &set.systems, Some(&planted_taps(&[((0, 0), noise)], 24)));
    let held_out = r2_at(&g, "taps0.00", site, N_CTX - 1);
    assert_eq!((g.n_fit, g.n_score), (12, 12));
    assert!(in_sample > 0.99, "the fit half is memorised: {in_sample}");
    assert!(held_out <= 0.0, "held out: {held_out}");
}

/// The untrained control is probed exactly as the model is: its grid is the
/// grid of the control probed as a model, and each best probe quotes the
/// control at the same site and position.
#[test]
fn the_untrained_control_is_probed_the_same_way() {
    let model = random_model();
    let control = Model::init(&model.cfg, &mut Rng::new(8, Stream::Init));
    let set = validation_set(&ranged(), N_CTX, 64, E_MAX, 2);
    let g = probe_grid(&model, Some(&control), &set.inputs, &set.systems, None);
    let alone = probe_grid(&control, None, &set.inputs, &set.systems, None);
    assert_eq!(format!("{:?}", g.untrained_r2), format!("{:?}", alone.r2));
    assert_eq!(format!("{:?}", g.untrained_best), format!("{:?}", alone.best));
    let (q, best) = (0, &g.best[0]);
    let s = g.sites.iter().position(|n| Some(n) == best.site.as_ref()).unwrap();
    assert_eq!(best.untrained_r2.to_bits(), g.untrained_r2[q][s][best.position.unwrap()].to_bits());
    assert!(probe_grid(&model, None, &set.inputs, &set.systems, None).best[0].untrained_r2.is_nan());
}

/// `physlens interpret --json` on an in-context checkpoint: `in_context.probes`
/// with `r2` `[targets][sites][positions]`, and one text line per target.
#[test]
fn interpret_json_carries_the_probe_grid() {
    let dir = tempfile::tempdir().unwrap();
    checkpoint::save(&dir.path().join("ic.safetensors"), &three_tap_model(), ranged(), &Default::default()).unwrap();
    let out = physlens(&["interpret", "--model", "ic.safetensors", "--json", "--n-valid", "64"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &json["in_context"]["probes"];
    let len = |key: &str| p[key].as_array().unwrap_or_else(|| panic!("{key}: {p}")).len();
    let (q, s, t) = (len("targets"), len("sites"), len("positions"));
    assert_eq!((q, s, t), (17, 5, N_CTX), "9 system targets and 8 taps; 2 residual sites and 3 heads");
    assert_eq!(len("r2"), q);
    for per_target in p["r2"].as_array().unwrap() {
        let sites = per_target.as_array().unwrap();
        assert_eq!(sites.len(), s);
        assert!(sites.iter().all(|row| row.as_array().unwrap().len() == t));
    }
    assert_eq!(len("best"), q);
    assert_eq!((p["n_fit"].as_u64(), p["n_score"].as_u64()), (Some(32), Some(32)));
    assert!(p["lambda"].is_number());
    assert!(p["r2"][1][0][0].is_null(), "γ is fixed: null");
    assert!(p["best"][0]["r2"].is_number() && p["best"][0]["site"].is_string(), "{}", p["best"][0]);
    assert!(p["best"][0]["untrained_r2"].is_number(), "{}", p["best"][0]);
    assert_eq!(len("untrained_best"), q);
    let out = physlens(&["interpret", "--model", "ic.safetensors", "--n-valid", "64"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("probe ω0: best blocks.0."), "{text}");
    assert!(text.contains("probe γ: no held-out R²"), "{text}");
}
