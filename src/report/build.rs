//! `physlens report`: rebuilds, from a run folder alone, the figures (SVG
//! and PNG, each beside the CSV it is drawn from, in `<case>/figures/`),
//! `report.html` (one self-contained page: setup, headline numbers, figures
//! with captions, config), `summary.md` and `summary.tex`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::util::error::Result;
use crate::util::io::write_text;
use crate::report::plot::{render, sci};
use crate::report::figures::{Figure, Titled};
use crate::report::data::{
    CaseData, SHOWN_TRAJECTORIES, Table, component_errors, distance_table, eigenvalue_table, energies, load_run,
    map_table, path_table, select, shown_trajectories,
};
use crate::report::tables::{headline_html, headline_latex, headline_markdown, headline_rows, html_escape, setup_html};

/// The figure sections of the report, in order: id (file stem) and heading.
pub const SECTIONS: [(&str, &str); 12] = [
    ("training", "Training curves"),
    ("rollouts", "Rollouts: x(t) and p(t)"),
    ("phase", "Phase portrait"),
    ("rollout_error", "Rollout error"),
    ("component_error", "Per-component error (the seed's metric)"),
    ("energy", "Energy"),
    ("eigenvalues", "Eigenvalues of the learned map"),
    ("rule_distances", "Which update rule does it run?"),
    ("map", "The learned map"),
    ("paths", "Path decomposition of the map"),
    ("attention", "Attention patterns"),
    ("error_vs_energy", "Error against energy: extrapolation"),
];

/// What `build_report` wrote.
#[derive(Clone, Debug)]
pub struct ReportOutcome {
    /// `report.html`.
    pub html: PathBuf,
    /// `summary.md`.
    pub markdown: PathBuf,
    /// `summary.tex`.
    pub latex: PathBuf,
    /// Figures drawn (each as SVG, PNG and CSV).
    pub figures: usize,
    /// `case: figure: why` for every figure left out.
    pub skipped: Vec<String>,
}

/// One figure of one case, or why it is left out.
enum Content {
    Figure { figure: Titled, data: Table, caption: String },
    Skipped(String),
}

/// A rendered slot of the page.
struct Slot {
    case: usize,
    id: &'static str,
    svg: Option<String>,
    text: String,
}

/// Builds the report of the run folder `run` (see the module doc).
pub fn build_report(run: &Path) -> Result<ReportOutcome> {
    let cases = load_run(run)?;
    let jobs: Vec<(usize, &'static str, Content)> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| plan(c).map(|p| p.into_iter().map(move |(id, content)| (i, id, content))))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    let slots: Vec<Slot> = jobs
        .into_par_iter()
        .map(|(case, id, content)| match content {
            Content::Figure { figure, data, caption } => {
                let dir = cases[case].dir.join("figures");
                write_text(&dir.join(format!("{id}.csv")), &data.to_csv())?;
                let svg = render(&figure, &dir.join(id))?;
                Ok(Slot { case, id, svg: Some(svg), text: caption })
            }
            Content::Skipped(why) => Ok(Slot { case, id, svg: None, text: why }),
        })
        .collect::<Result<_>>()?;
    let numbers: Vec<_> = cases.iter().map(|c| c.numbers.clone()).collect();
    let rows = headline_rows(&numbers);
    let title = format!("physlens report: {}", run_name(run));
    let outcome = ReportOutcome {
        html: run.join("report.html"),
        markdown: run.join("summary.md"),
        latex: run.join("summary.tex"),
        figures: slots.iter().filter(|s| s.svg.is_some()).count(),
        skipped: slots
            .iter()
            .filter(|s| s.svg.is_none())
            .map(|s| format!("{}: {}: {}", cases[s.case].numbers.name, s.id, s.text))
            .collect(),
    };
    write_text(&outcome.markdown, &headline_markdown(&title, &numbers, &rows))?;
    write_text(&outcome.latex, &headline_latex(&numbers, &rows))?;
    write_text(&outcome.html, &page(run, &title, &cases, &headline_html(&numbers, &rows), &slots))?;
    Ok(outcome)
}

fn run_name(run: &Path) -> String {
    let canonical = run.canonicalize().unwrap_or_else(|_| run.to_path_buf());
    canonical.file_name().map_or_else(|| run.display().to_string(), |n| n.to_string_lossy().into_owned())
}

// ---------------------------------------------------------------- what each figure shows

fn titled(case: &CaseData, what: &str, figure: Figure) -> Titled {
    Titled { title: format!("{} — {what}", case.numbers.name), figure }
}

/// The figures of one case with their data and captions.
fn plan(c: &CaseData) -> Result<Vec<(&'static str, Content)>> {
    let cfg = &c.config;
    let n = &c.numbers;
    let steps = n.rollout.steps;
    let omega0 = cfg.system.omega0;
    let fig = |figure: Titled, data: Table, caption: String| Content::Figure { figure, data, caption };
    let mut out: Vec<(&'static str, Content)> = vec![];

    let training = select(&c.metrics, &["step", "train_loss", "valid_mse", "lr"])?;
    let last_valid = training.numbers("valid_mse")?.last().copied().unwrap_or(f64::NAN);
    out.push((
        "training",
        fig(
            titled(c, "training", Figure::Training(training.clone())),
            training,
            format!(
                "Train loss and validation MSE against step (log scale); validation energies reach {}, beyond the training range \
                 E ≤ {}, and its MSE ends at {}. Below: the learning rate.",
                cfg.data.e_valid_max,
                cfg.data.e_train_max,
                sci(last_valid, 3)
            ),
        ),
    ));

    let shown = shown_trajectories(&c.trajectories)?;
    out.push((
        "rollouts",
        fig(
            titled(c, "rollouts", Figure::Rollout(shown.clone(), omega0)),
            shown.clone(),
            format!(
                "{SHOWN_TRAJECTORIES} of the {} rollouts over {steps} steps, the model fed its own predictions: wherever a thin \
                 model line leaves its wide exact line the model has drifted (median error after {steps} steps: {}).",
                cfg.eval.n_rollouts,
                n.rollout.median_rel_err_final.map_or("n/a".into(), |v| sci(v, 3))
            ),
        ),
    ));
    let orbit = if cfg.system.gamma == 0.0 {
        "the exact orbits are closed ellipses (γ = 0 conserves energy)".to_string()
    } else {
        format!("the exact orbits spiral inwards (γ = {} dissipates energy)", cfg.system.gamma)
    };
    out.push((
        "phase",
        fig(
            titled(c, "phase portrait", Figure::Phase(shown.clone(), omega0)),
            shown,
            format!(
                "Phase portrait p against x of the same rollouts (dots: starting states): {orbit}; a model that adds or \
                 removes energy would spiral off them."
            ),
        ),
    ));

    let errors = select(&c.rollout, &["step", "median_rel_err", "q05_rel_err", "q95_rel_err", "max_rel_err"])?;
    let median = errors.numbers("median_rel_err")?;
    out.push((
        "rollout_error",
        fig(
            titled(c, "rollout error", Figure::RolloutError(errors.clone())),
            errors,
            format!(
                "Norm-based relative error ‖ŝₙ − sₙ‖/‖sₙ‖ over {} rollouts (median, 5–95 % band, maximum): the median goes \
                 from {} at step 0 to {} at step {steps}.",
                cfg.eval.n_rollouts,
                sci(median.first().copied().unwrap_or(f64::NAN), 3),
                sci(median.last().copied().unwrap_or(f64::NAN), 3)
            ),
        ),
    ));
    let components = component_errors(&c.trajectories)?;
    out.push((
        "component_error",
        fig(
            titled(c, "per-component error", Figure::ComponentError(components.clone())),
            components,
            "The seed's per-component error |Δx|/|x| (and |Δp|/|p|, Δ = model − exact) of one trajectory spikes wherever \
             x (or p) crosses zero (dashed lines for x) because its denominator vanishes there, not because the model \
             errs; the norm-based ‖Δs‖/‖s‖ (black) has no spikes, which is why it is the headline."
                .into(),
        ),
    ));
    let energy = energies(&c.trajectories, omega0)?;
    let drift = energy.numbers("rel_diff")?.iter().fold(0.0, |m: f64, v| m.max(v.abs()));
    let trend = if cfg.system.gamma == 0.0 { "exactly conserved" } else { "decaying on average as e^(−2γt)" };
    out.push((
        "energy",
        fig(
            titled(c, "energy", Figure::Energy(energy.clone())),
            energy,
            format!(
                "Energy E = ½(p² + ω0² x²) along the rollouts, model against exact ({trend}), and below their difference \
                 relative to the starting energy, ΔE/E₀ with ΔE = E_model − E_exact: at most {} here.",
                sci(drift, 3)
            ),
        ),
    ));

    match &c.map {
        Some(map) => {
            let kind = map.map_kind.clone().unwrap_or_else(|| "effective map".into());
            let eig = eigenvalue_table(map);
            let gap = map
                .eigenvalues
                .iter()
                .map(|z| {
                    let exact = crate::util::mat2::eigenvalues(
                        &crate::physics::Oscillator { omega0: map.truth.omega0, gamma: map.truth.gamma }
                            .propagator(map.truth.dt),
                    );
                    exact.iter().map(|e| (e.re - z.re).hypot(e.im - z.im)).fold(f64::INFINITY, f64::min)
                })
                .fold(0.0, f64::max);
            out.push((
                "eigenvalues",
                fig(
                    titled(c, "eigenvalues", Figure::Eigenvalues(eig.clone())),
                    eig,
                    format!(
                        "Eigenvalues of the learned map ({kind}; filled orange dots) on the exact e^((−γ ± iω)Δt) (black rings), at \
                         most {} apart, and those of every candidate rule: in the zoom, rules outside the unit circle add \
                         energy (Euler), rules inside remove it (implicit Euler).",
                        sci(gap, 2)
                    ),
                ),
            ));
            let distances = distance_table(map);
            let d = distances.numbers("distance")?;
            let names = distances.text("rule")?;
            let verdict = match (d.first(), d.get(1)) {
                (Some(&d1), Some(&d2)) if d2 >= 10.0 * d1 => format!(
                    "the nearest is {} at {}, and the runner-up {} is {}× farther, beyond the factor 10 (dashed line) \
                     needed to name it",
                    names[0],
                    sci(d1, 3),
                    names[1],
                    sci(d2 / d1, 3)
                ),
                (Some(&d1), Some(&d2)) => format!(
                    "{} and {} are within a factor {} < 10 of each other, so at Δt = {} the model cannot be said to run \
                     one rather than the other",
                    names[0],
                    names[1],
                    sci(d2 / d1, 3),
                    map.truth.dt
                ),
                _ => "there are fewer than two rules to compare".into(),
            };
            out.push((
                "rule_distances",
                fig(
                    titled(c, "distance to each rule", Figure::Distances(distances.clone())),
                    distances,
                    format!(
                        "Frobenius distance ‖M − M_rule‖ from the learned map to each candidate update rule: {verdict}."
                    ),
                ),
            ));
            let entries = map_table(map);
            let diff = entries
                .filter("term", "learned - exact")?
                .numbers("value")?
                .iter()
                .fold(0.0, |m: f64, v| m.max(v.abs()));
            out.push((
                "map",
                fig(
                    titled(c, "learned map", Figure::Matrices(entries.clone(), false)),
                    entries,
                    format!(
                        "Entries of the learned map M (column convention s′ = M s + c; rows: output, columns: input) beside \
                         the exact propagator e^(AΔt); the difference has its own colour scale (largest entry {}).",
                        sci(diff, 2)
                    ),
                ),
            ));
        }
        None => {
            let why = format!(
                "No interpret.json in {}: this model (context {}) is not one affine map, so there is no map to read \
                 eigenvalues and rule distances from.",
                c.dir.display(),
                cfg.data.context
            );
            for id in ["eigenvalues", "rule_distances", "map"] {
                out.push((id, Content::Skipped(why.clone())));
            }
        }
    }

    match (&c.model, c.model.as_ref().and_then(path_table)) {
        (_, Some(paths)) => {
            let heads = paths.text("term")?.iter().filter(|t| t.starts_with('L')).count() / 4;
            let heads = if heads == 1 { "the head".to_string() } else { format!("each of the {heads} heads") };
            out.push((
                "paths",
                fig(
                    titled(c, "path decomposition", Figure::Matrices(paths.clone(), true)),
                    paths,
                    format!(
                        "The map split into the direct path (W_E W_U)ᵀ and the OV path (W_E W_V W_O W_U)ᵀ of {heads}, \
                         on one colour scale; they add up to M (last panel). Only the sum is fixed by the \
                         task: how it is shared between the paths is the model's choice."
                    ),
                ),
            ));
        }
        (None, _) => out.push(("paths", Content::Skipped(format!("No model.safetensors in {}.", c.dir.display())))),
        (Some(_), None) => out.push((
            "paths",
            Content::Skipped(format!(
                "Context {}: the map depends on the input through the attention pattern, so it has no fixed path decomposition.",
                cfg.data.context
            )),
        )),
    }

    match &c.attention {
        Some(t) => {
            let data = select(t, &["layer", "head", "query", "key", "weight"])?;
            out.push((
                "attention",
                fig(
                    titled(c, "attention patterns", Figure::Attention(data.clone())),
                    data,
                    "Attention weights of each layer and head (rows: query position, columns: key position), from \
                     attention.csv; a causal mask leaves the upper triangle empty."
                        .into(),
                ),
            ));
        }
        None if cfg.data.context == 1 => out.push((
            "attention",
            Content::Skipped(
                "Context 1: a single token can only attend to itself (weight 1), so there is no pattern to show."
                    .into(),
            ),
        )),
        None => out.push((
            "attention",
            Content::Skipped(format!(
                "No attention.csv in {}: the attention patterns of this context-{} model were not saved.",
                c.dir.display(),
                cfg.data.context
            )),
        )),
    }

    match &c.error_vs_energy {
        Some(t) => {
            let data = select(t, &["energy", "sq_err", "rel_err"])?;
            let (e, r) = (data.numbers("energy")?, data.numbers("rel_err")?);
            let med = |inside: bool| {
                let mut v: Vec<f64> = e
                    .iter()
                    .zip(&r)
                    .filter(|(e, r)| (**e <= cfg.data.e_train_max) == inside && r.is_finite())
                    .map(|(_, r)| *r)
                    .collect();
                v.sort_by(f64::total_cmp);
                v.get(v.len() / 2).copied()
            };
            let compare = match (med(true), med(false)) {
                (Some(a), Some(b)) => format!("the median error is {} inside and {} beyond it", sci(a, 3), sci(b, 3)),
                _ => "all samples lie on one side of it".into(),
            };
            out.push((
                "error_vs_energy",
                fig(
                    titled(c, "error against energy", Figure::ErrorVsEnergy(data.clone(), cfg.data.e_train_max)),
                    data,
                    format!(
                        "Relative one-step error of the {} validation samples against their energy: training covered \
                         E ≤ {} (shaded), to the right the model extrapolates; {compare}.",
                        e.len(),
                        cfg.data.e_train_max
                    ),
                ),
            ));
        }
        None => out.push((
            "error_vs_energy",
            Content::Skipped(format!(
                "No error_vs_energy.csv in {} (a run folder from before it was written): `physlens eval --run {}` writes it.",
                c.dir.display(),
                c.dir.display()
            )),
        )),
    }
    Ok(out)
}

// ---------------------------------------------------------------- the page

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font: 15px/1.5 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1e1e1e; margin: 0 auto; max-width: 1360px; padding: 0 24px 48px; }
h1 { font-size: 1.7em; margin: 1.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #666; margin: 0; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 3px 12px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.na { color: #999; text-align: right; }
sup { line-height: 0; }
th.group { color: #666; font-weight: normal; font-style: italic; }
#headline tbody th, #setup tbody th { font-weight: normal; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px 28px; align-items: start; }
figure { margin: 0; }
figure.wide { grid-column: 1 / -1; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 0.93em; margin-top: 4px; }
.files { color: #666; font-size: 0.9em; white-space: nowrap; }
.skipped { color: #555; background: #f6f6f6; border-left: 3px solid #bbb; padding: 8px 12px; }
ul.glance li { margin-bottom: 0.3em; }
pre { background: #f6f6f6; padding: 10px 14px; overflow-x: auto; }
@media print { figure, .skipped, table { break-inside: avoid; } }
"#;

fn page(run: &Path, title: &str, cases: &[CaseData], headline: &str, slots: &[Slot]) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = write!(
        w,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{0}</title>\n<style>{STYLE}</style>\n\
         </head>\n<body>\n<h1>{0}</h1>\n<p class=\"sub\">Run folder <code>{1}</code> · {2} case(s) · written by physlens {3} \
         from the run folder alone (<code>physlens report --run DIR</code> rebuilds it).</p>\n",
        html_escape(title),
        html_escape(&run.display().to_string()),
        cases.len(),
        env!("CARGO_PKG_VERSION"),
    );
    let _ = writeln!(w, "<section id=\"glance\">\n<h2>At a glance</h2>\n<ul class=\"glance\">");
    for c in cases {
        let _ = writeln!(w, "<li>{}</li>", glance(c));
    }
    let _ = writeln!(w, "</ul>\n</section>");
    let _ = writeln!(w, "<section id=\"setup-section\">\n<h2>Setup</h2>\n{}</section>", setup_html(cases));
    let _ = writeln!(
        w,
        "<section id=\"headline-section\">\n<h2>Headline numbers</h2>\n{headline}<p class=\"sub\">Relative errors are \
         ‖ŝ − s‖/‖s‖ (SPEC §2.3); ω0 and γ are read from the eigenvalues of the learned map. The same table is in \
         <a href=\"summary.md\">summary.md</a> and, for a paper, <a href=\"summary.tex\">summary.tex</a>; all numbers come from \
         <a href=\"summary.json\">summary.json</a>.</p>\n</section>"
    );
    for (id, heading) in SECTIONS {
        let _ = writeln!(
            w,
            "<section class=\"figures\" id=\"section-{id}\">\n<h2>{}</h2>\n<div class=\"grid\">",
            html_escape(heading)
        );
        for slot in slots.iter().filter(|s| s.id == id) {
            let case = &cases[slot.case];
            let name = html_escape(&case.numbers.name);
            match &slot.svg {
                Some(svg) => {
                    let rel = case.dir.strip_prefix(run).unwrap_or(Path::new("")).join("figures").join(id);
                    let rel = html_escape(&rel.display().to_string());
                    // Never enlarged beyond its own size; wider figures take a whole row.
                    let width = svg_width(svg);
                    let wide = if width > 700 { " class=\"wide\"" } else { "" };
                    let _ = writeln!(
                        w,
                        "<figure id=\"{name}-{id}\" data-case=\"{name}\" data-figure=\"{id}\"{wide} style=\"max-width: {width}px\">\n{}\n<figcaption><b>{name}.</b> \
                         {} <span class=\"files\">Data: <a href=\"{rel}.csv\">{id}.csv</a> · <a href=\"{rel}.svg\">SVG</a> · \
                         <a href=\"{rel}.png\">PNG</a></span></figcaption>\n</figure>",
                        svg.trim(),
                        html_escape(&slot.text)
                    );
                }
                None => {
                    let _ = writeln!(
                        w,
                        "<p class=\"skipped\" data-case=\"{name}\" data-figure=\"{id}\"><b>{name}:</b> {}</p>",
                        html_escape(&slot.text)
                    );
                }
            }
        }
        let _ = writeln!(w, "</div>\n</section>");
    }
    let _ = writeln!(w, "<section id=\"config\">\n<h2>Configuration</h2>");
    for (i, c) in cases.iter().enumerate() {
        let rel = c.dir.strip_prefix(run).unwrap_or(Path::new("")).join("config.toml");
        let _ = writeln!(
            w,
            "<details{}><summary><code>{}</code> (resolved: every key)</summary>\n<pre>{}</pre>\n</details>",
            if i == 0 { " open" } else { "" },
            html_escape(&rel.display().to_string()),
            html_escape(&c.config_text)
        );
    }
    let _ = writeln!(w, "</section>\n</body>\n</html>");
    out
}

/// The `width` attribute of an `<svg>` element (plotters writes it first).
fn svg_width(svg: &str) -> u32 {
    svg.split_once("width=\"").and_then(|(_, rest)| rest.split('"').next()).and_then(|w| w.parse().ok()).unwrap_or(640)
}

/// One sentence per case: what it learned and how well it rolls out.
fn glance(c: &CaseData) -> String {
    let n = &c.numbers;
    let f = |v: Option<f64>, sig: usize| v.map_or("n/a".into(), |v| sci(v, sig));
    let physics = match (n.learned.omega0, n.learned.gamma) {
        (Some(w), Some(g)) => format!(
            "learned ω0 = {} (relative error {}) and γ = {} (absolute error {}); nearest rule <code>{}</code>{}",
            sci(w, 9),
            sci(((w - n.omega0) / n.omega0).abs(), 2),
            sci(g, 6),
            sci((g - n.gamma).abs(), 2),
            html_escape(&n.nearest_method),
            n.margin.map_or(String::new(), |m| format!(
                " (margin {}, {})",
                sci(m, 3),
                if m >= 10.0 { "identifiable" } else { "not identifiable" }
            )),
        ),
        _ => format!("no single affine map to read ω0 and γ from (context {})", c.config.data.context),
    };
    format!(
        "<b>{}</b> (ω0 = {}, γ = {}, Δt = {}): {physics}; rollout median relative error {} after {} steps (max over all \
         steps {}); validation MSE {}.",
        html_escape(&n.name),
        n.omega0,
        n.gamma,
        n.dt,
        f(n.rollout.median_rel_err_final, 3),
        n.rollout.steps,
        f(n.rollout.max_rel_err, 3),
        f(n.valid_mse, 3)
    )
}
