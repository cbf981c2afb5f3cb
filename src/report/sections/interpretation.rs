//! The in-context interpretation of a case (docs/in-context.md,
//! "Reading the results"): the verdict, implied ω0 and γ against the truth
//! (behaviour and Jacobian), the effective filter and its roots, and the
//! patching heat maps, from `interpret.json`'s `in_context`, `implied.csv`,
//! `filter.csv` and `patch.json`.

use super::{Content, Entry, drawn, skipped};
use crate::report::data::interpretation::{
    BestRead, ImpliedRead, InContextRead, RegressionRead, implied_table, patch_table, probe_table, roots_table,
};
use crate::report::data::{CaseData, Table};
use crate::report::figures::Figure;
use crate::report::plot::sci;
use crate::util::error::Result;

/// The ids of the slots, in page order.
pub(crate) const IDS: [&str; 11] = [
    "in_context_verdict",
    "implied_behaviour",
    "implied_jacobian",
    "filter_taps",
    "filter_roots",
    "probe_omega0",
    "probe_gamma",
    "probe_tr_M",
    "probe_det_M",
    "patch_residual",
    "patch_heads",
];

/// Every slot of a case whose parameters are drawn per sequence; none for
/// one system (`physlens interpret` has no `in_context` for it).
pub(crate) fn interpretation(c: &CaseData) -> Result<Vec<Entry>> {
    if c.config.system.fixed().is_some() {
        return Ok(vec![]);
    }
    let Some(ic) = &c.in_context else {
        let why = format!(
            "No in_context in {}: the folder predates the in-context interpretation (`physlens eval --run {}` \
             writes it, with implied.csv, filter.csv and patch.json).",
            c.dir.join("interpret.json").display(),
            c.dir.display()
        );
        return Ok(IDS.iter().map(|id| skipped(id, why.clone())).collect());
    };
    let mut out = vec![(
        "in_context_verdict",
        Content::Text(format!(
            "Read on {} validation sequences from the training ranges, the model {}.",
            ic.n_sequences, ic.verdict
        )),
    )];
    out.push(implied_entry(c, "implied_behaviour", "behaviour", Some(&ic.implied), None, ic.windows)?);
    let (jacobian, why) = (ic.jacobian_implied.as_ref(), ic.jacobian_implied_reason.as_deref());
    out.push(implied_entry(c, "implied_jacobian", "jacobian", jacobian, why, ic.windows)?);
    out.extend(filter_entries(c, ic)?);
    out.extend(probe_entries(c, ic));
    out.extend(patch_entries(c));
    Ok(out)
}

/// A regression in words: slope, R² and median error, or why there is no slope.
fn regression_words(name: &str, r: &RegressionRead) -> String {
    if !r.slope.is_finite() {
        return format!(
            "{name} does not vary across the sequences (no slope; median |error| {})",
            sci(r.median_abs_err, 3)
        );
    }
    format!(
        "{name}: slope {}, R² {}, median |implied − true| {}",
        sci(r.slope, 3),
        sci(r.r2, 3),
        sci(r.median_abs_err, 3)
    )
}

/// `implied_behaviour` or `implied_jacobian`: implied ω0 and γ of the
/// readout `readout` (`behaviour`, `jacobian`) against the truth, from
/// `implied.csv`; left out with `reason` when the readout is `null`.
fn implied_entry(
    c: &CaseData,
    id: &'static str,
    readout: &str,
    implied: Option<&ImpliedRead>,
    reason: Option<&str>,
    windows: usize,
) -> Result<Entry> {
    let Some(r) = implied else {
        let why = reason.unwrap_or("the readout is null in interpret.json");
        return Ok(skipped(id, format!("Not drawn: the Jacobian readout ∂ŝ_T/∂s_(T−1) is null, because {why}.")));
    };
    let Some(csv) = &c.implied else {
        return Ok(skipped(id, format!("No implied.csv in {}.", c.dir.display())));
    };
    let table = implied_table(csv, readout)?;
    let how = match readout {
        "behaviour" => format!(
            "per sequence, the least-squares 2×2 map taking each true state to the model's prediction of the next \
             over {windows} full-context windows of its trajectory, read out as physics"
        ),
        _ => "per sequence, the exact Jacobian ∂ŝ_{T}/∂s_{T−1} of the last prediction with respect to the last \
              token, read out as physics"
            .to_string(),
    };
    let caption = format!(
        "{} ω0 and γ against each validation sequence's true ones: {how}. {} of {} sequences have an oscillator \
         reading (complex eigenvalues, identifiable ω, no growth) and are drawn. {}; {}. A readout that identifies \
         the dynamics lies on the dashed line (slope 1, R² 1); implied.csv holds every sequence.",
        if readout == "behaviour" { "Behaviour-implied" } else { "Jacobian-implied" },
        r.n_oscillator_form,
        r.n_sequences,
        regression_words("ω0", &r.omega0),
        regression_words("γ", &r.gamma),
    );
    let fits = Box::new([[r.omega0.slope, r.omega0.intercept], [r.gamma.slope, r.gamma.intercept]]);
    let what = if readout == "behaviour" { "behaviour-implied ω0 and γ" } else { "Jacobian-implied ω0 and γ" };
    Ok(drawn(c, id, what, move |t| Figure::Implied(t, fits), table, caption))
}

/// `filter_taps` and `filter_roots`: the model's mean taps beside the
/// nearest candidate's, from `filter.csv`, and the roots of its
/// characteristic polynomial against the true eigenvalues.
fn filter_entries(c: &CaseData, ic: &InContextRead) -> Result<Vec<Entry>> {
    let f = &ic.filter;
    let nearest = match f.candidates.first() {
        Some(first) => format!(
            "the nearest candidate, {} (dashed; averaged over the sequences like the model's), at a distance of {} % \
             of the filter's size{}",
            first.name,
            sci(100.0 * first.relative_distance, 2),
            if f.margin.is_finite() {
                format!(", the runner-up {}× farther", sci(f.margin, 3))
            } else {
                String::new()
            }
        ),
        None => "no candidate to compare with".into(),
    };
    let vary = match f.param_r2 {
        Some(r2) => format!("(ω0, γ) explain {} % of that", sci(100.0 * r2, 3)),
        None => "no share of it is read from (ω0, γ) (param_r2 null)".into(),
    };
    let taps_caption = format!(
        "The effective filter ŝ_{{T}} ≈ Σ_k taps[k] s_{{T−1−k}}: taps[k] = mean over the validation sequences of \
         ∂ŝ_{{T}}/∂s_{{T−1−k}} (column convention, k = 0 the last token), each entry's magnitude on a log axis \
         (filled: positive, open: negative; exact zeros are not drawn), beside {nearest}. Across sequences the taps \
         spread by {} % of the filter's size; {vary}.",
        sci(100.0 * f.tap_relative_std, 3)
    );
    let taps = match &c.filter {
        Some(t) => {
            let name = f.nearest.clone();
            drawn(c, "filter_taps", "effective filter", move |t| Figure::FilterTaps(t, name), t.clone(), taps_caption)
        }
        None => skipped("filter_taps", format!("No filter.csv in {}.", c.dir.display())),
    };
    let k = f.roots.len() / 2;
    let roots_caption = format!(
        "Roots of det(λ^{{K}} I − Σ_k taps[k] λ^{{K−1−k}}) for the mean taps (K = {k}: the taps up to the last \
         nonzero one, so 2K = {} roots), against the true eigenvalues e^{{(−γ ± iω)Δt}} at the mean (ω0, γ, Δt) of \
         the sequences (crosses; each sequence has its own), with the unit circle. The nearest filter root lies {} \
         and {} from the two crosses.",
        f.roots.len(),
        sci(f.root_errors[0], 3),
        sci(f.root_errors[1], 3)
    );
    let roots =
        drawn(c, "filter_roots", "roots of the effective filter", Figure::FilterRoots, roots_table(f), roots_caption);
    Ok(vec![taps, roots])
}

/// The probe slots: id, target, its symbol, what it is.
const PROBES: [(&str, &str, &str, &str); 4] = [
    ("probe_omega0", "omega0", "ω0", "ω0"),
    ("probe_gamma", "gamma", "γ", "γ"),
    ("probe_tr_M", "tr_M", "tr M", "tr M (the first Cayley–Hamilton coefficient)"),
    ("probe_det_M", "det_M", "det M", "det M (minus the second Cayley–Hamilton coefficient)"),
];

/// `probe_omega0` … `probe_det_M`: held-out probe R² over site × position
/// per target, from `in_context.probes`, with the untrained control quoted.
fn probe_entries(c: &CaseData, ic: &InContextRead) -> Vec<Entry> {
    let Some(p) = &ic.probes else {
        let why = format!("interpret.json in {} has no in_context.probes (an older file).", c.dir.display());
        return PROBES.iter().map(|(id, ..)| skipped(id, why.clone())).collect();
    };
    PROBES
        .iter()
        .map(|&(id, target, symbol, what)| {
            let q = p.targets.iter().position(|t| t == target);
            let (Some(q), Some(table)) = (q, probe_table(p, target)) else {
                return skipped(id, format!("in_context.probes has no target {target}."));
            };
            let best = &p.best[q];
            let Some(words) = best_words(best) else {
                return skipped(
                    id,
                    format!("Not drawn: {what} is the same for every sequence, so there is nothing to probe."),
                );
            };
            let control = match p.untrained_best.get(q) {
                Some(u) if u.r2.is_finite() => format!(
                    "; the same probe on the untrained model (the same shape at its initial weights) scores {}, and \
                     its best probe anywhere {} — what training added is the difference",
                    sci(best.untrained_r2, 3),
                    sci(u.r2, 3)
                ),
                _ => String::new(),
            };
            let caption = format!(
                "Where {what} can be read: the held-out R² of a ridge probe from each site (rows: the residual stream \
                 entering each layer and leaving the last, then each head's and MLP's write to it) at each token \
                 position (columns) to each sequence's {what}, fitted on {} sequences and scored on {} others. White: \
                 R² ≤ 0 (no better than the mean); grey: no value. Best: {words}{control}. context_probes.csv holds \
                 every target (also the entries of M and the model's own filter taps).",
                p.n_fit, p.n_score
            );
            let title = format!("where {symbol} can be read");
            drawn(c, id, &title, Figure::ProbeMap, table, caption)
        })
        .collect()
}

/// A best probe in words, `None` when it has no finite R².
fn best_words(b: &BestRead) -> Option<String> {
    match (&b.site, b.position) {
        (Some(site), Some(p)) if b.r2.is_finite() => Some(format!("{site} at position {p}, R² {}", sci(b.r2, 3))),
        _ => None,
    }
}

/// The three cells of largest |`prediction_shift`| of a patching table, in words.
fn largest_cells(t: &Table) -> Result<String> {
    let (label, pos, shift) = (t.text("label")?, t.numbers("position")?, t.numbers("prediction_shift")?);
    let mut cells: Vec<usize> = (0..shift.len()).filter(|&i| shift[i].is_finite()).collect();
    cells.sort_by(|&a, &b| shift[b].abs().total_cmp(&shift[a].abs()));
    let words: Vec<String> =
        cells.iter().take(3).map(|&i| format!("{} at position {}: {}", label[i], pos[i], sci(shift[i], 3))).collect();
    Ok(if words.is_empty() { "no finite shift (no pair had different predictions)".into() } else { words.join("; ") })
}

/// `patch_residual` and `patch_heads`: `prediction_shift` over layer ×
/// position for the residual stream and over head × position, from `patch.json`.
fn patch_entries(c: &CaseData) -> Vec<Entry> {
    let Some(p) = &c.patch else {
        let why = format!("No patch.json in {}.", c.dir.display());
        return vec![skipped("patch_residual", why.clone()), skipped("patch_heads", why)];
    };
    let pairs = format!(
        "{} pairs of sequences (seed {}, energies up to {}), {} with different last predictions",
        p.pairs.n_pairs, p.pairs.seed, p.pairs.e_max, p.pairs.n_used
    );
    let slots = [
        (
            "patch_residual",
            "residual",
            "layer",
            "the residual stream entering each layer (L pre) and leaving the last (L post)",
        ),
        ("patch_heads", "heads", "head", "each head's output (its contribution to the residual stream)"),
    ];
    slots
        .into_iter()
        .map(|(id, name, rows, what)| {
            let Some(map) = p.heatmaps.iter().find(|h| h.name == name) else {
                return skipped(id, format!("patch.json has no `{name}` heat map."));
            };
            let table = patch_table(map);
            let caption = match largest_cells(&table) {
                Ok(cells) => format!(
                    "Activation patching ({pairs}; each pair shares the first state's energy and phase and differs \
                     in ω0 and γ): prediction_shift when {what} at one position of run a takes its value from run b, \
                     the mean over pairs of Δ·(ŝ_{{b}} − ŝ_{{a}})/‖ŝ_{{b}} − ŝ_{{a}}‖² of a's last prediction \
                     (0: no effect, 1: moved fully to b's). Largest: {cells}. patch.json holds these with delta_norm, \
                     the other sites and the ablations."
                ),
                Err(e) => e.to_string(),
            };
            let what_title = if name == "residual" { "patching the residual stream" } else { "patching each head" };
            drawn(c, id, what_title, move |t| Figure::PatchMap(t, rows), table, caption)
        })
        .collect()
}
