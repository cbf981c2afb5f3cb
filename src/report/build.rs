//! `physlens report`: rebuilds, from a run folder alone, the figures (SVG
//! and PNG, each beside the CSV it is drawn from, in `<case>/figures/`),
//! `report.html` (one self-contained page: setup, headline numbers, figures
//! with captions, config), `summary.md` and `summary.tex`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::physics::readout::RuleVerdict;
use crate::report::data::{CaseData, load_run};
use crate::report::plot::{render, sci};
use crate::report::sections::{
    Content, Entry, attention, component_error, energy, error_vs_energy, in_context, interpretation::interpretation,
    map_figures, paths, phase, rollout_error, rollouts, training,
};
use crate::report::tables::{
    caption_html, headline_html, headline_latex, headline_markdown, headline_rows, html_escape, setup_html,
};
use crate::util::error::Result;
use crate::util::io::write_text;

/// The figure sections of the report, in order: id (file stem) and heading.
pub const SECTIONS: [(&str, &str); 25] = [
    ("training", "Training curves"),
    ("in_context_error", "In context: error along the context"),
    ("error_vs_parameters", "In context: error against ω0 and γ"),
    ("in_context_verdict", "In context: the verdict"),
    ("implied_behaviour", "In context: behaviour-implied ω0 and γ"),
    ("implied_jacobian", "In context: Jacobian-implied ω0 and γ"),
    ("filter_taps", "In context: the effective filter"),
    ("filter_roots", "In context: roots of the effective filter"),
    ("probe_omega0", "In context: where ω0 can be read"),
    ("probe_gamma", "In context: where γ can be read"),
    ("probe_tr_M", "In context: where tr M can be read"),
    ("probe_det_M", "In context: where det M can be read"),
    ("patch_residual", "In context: patching the residual stream"),
    ("patch_heads", "In context: patching each head"),
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

/// A rendered slot of the page: a figure (`svg`) with its caption, a
/// paragraph of findings (`finding`), or why a figure is left out.
struct Slot {
    case: usize,
    id: &'static str,
    svg: Option<String>,
    text: String,
    finding: bool,
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
                Ok(Slot { case, id, svg: Some(svg), text: caption, finding: false })
            }
            Content::Skipped(why) => Ok(Slot { case, id, svg: None, text: why, finding: false }),
            Content::Text(text) => Ok(Slot { case, id, svg: None, text, finding: true }),
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
            .filter(|s| s.svg.is_none() && !s.finding)
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

/// The figures of one case with their data and captions, in the order of
/// [`SECTIONS`] (each made in [`crate::report::sections`]).
fn plan(c: &CaseData) -> Result<Vec<Entry>> {
    let mut out = vec![training(c)?, rollouts(c)?, phase(c)?, rollout_error(c)?, component_error(c)?, energy(c)?];
    out.extend(map_figures(c)?);
    out.extend([paths(c)?, attention(c)?, error_vs_energy(c)?]);
    if let Some(ic) = &c.numbers.in_context {
        out.extend([in_context::error_vs_position(c, ic)?, in_context::error_vs_parameters(c, ic)?]);
    }
    out.extend(interpretation(c)?);
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
.finding { grid-column: 1 / -1; border-left: 3px solid #d62728; padding: 8px 12px; margin: 0; }
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
         ‖ŝ − s‖/‖s‖ (docs/physics.md); ω0 and γ are read from the eigenvalues of the learned map. The same table is in \
         <a href=\"summary.md\">summary.md</a> and, for a paper, <a href=\"summary.tex\">summary.tex</a>; all numbers come from \
         <a href=\"summary.json\">summary.json</a>.</p>\n</section>"
    );
    for (id, heading) in SECTIONS {
        if !slots.iter().any(|s| s.id == id) {
            continue; // a section no case has (the in-context ones of a seed study)
        }
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
                        caption_html(&slot.text)
                    );
                }
                None if slot.finding => {
                    let _ = writeln!(
                        w,
                        "<p class=\"finding\" data-case=\"{name}\" data-figure=\"{id}\"><b>{name}:</b> {}</p>",
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

/// The rule verdict of a case in words (docs/outputs.md#verdict).
fn rule_words(verdict: RuleVerdict, nearest: &str, margin: f64) -> String {
    let nearest = html_escape(nearest);
    let margin = sci(margin, 3);
    match verdict {
        RuleVerdict::Runs => format!("runs <code>{nearest}</code> (margin {margin} ≥ 10)"),
        RuleVerdict::CannotTellApart => format!(
            "nearest rule <code>{nearest}</code>, but the runner-up is within a factor {margin} &lt; 10: it cannot be \
             told from it at this Δt"
        ),
        RuleVerdict::NoneOfThem => format!(
            "runs none of the candidate rules: the model is farther from the nearest, <code>{nearest}</code>, than \
             that rule is from the runner-up, so its own error is too large to tell the rules apart"
        ),
    }
}

/// What a case learned, in words: the physics read from its map (when it
/// has one system), then for context > 1 its in-context error and nearest
/// baseline.
fn physics_words(c: &CaseData) -> String {
    let n = &c.numbers;
    let map = match (&n.learned, c.config.system.fixed()) {
        (Some(l), Some(s)) if l.omega0.is_finite() && l.gamma.is_finite() => {
            let verdict = match (n.rule_verdict, &n.nearest_method) {
                (Some(v), Some(nearest)) => rule_words(v, nearest, n.margin),
                _ => "no rule verdict".into(),
            };
            format!(
                "learned ω0 = {} (relative error {}) and γ = {} (absolute error {}); {verdict}",
                sci(l.omega0, 9),
                sci(((l.omega0 - s.omega0) / s.omega0).abs(), 2),
                sci(l.gamma, 6),
                sci((l.gamma - s.gamma).abs(), 2),
            )
        }
        (_, Some(_)) => format!("no single affine map to read ω0 and γ from (context {})", c.config.data.context),
        (_, None) => "parameters drawn per sequence: no one map to read ω0 and γ from".into(),
    };
    match &n.in_context {
        Some(ic) => format!(
            "{map}; in context: median relative error {} at the last position. {}",
            sci(ic.median_rel_err_last, 3),
            html_escape(&in_context::resemblance(ic)),
        ),
        None => map,
    }
}

/// One sentence per case: what it learned and how well it rolls out.
fn glance(c: &CaseData) -> String {
    let n = &c.numbers;
    let physics = physics_words(c);
    format!(
        "<b>{}</b> (ω0 = {}, γ = {}, Δt = {}): {physics}; rollout median relative error {} after {} steps (max over all \
         steps {}), median error relative to the initial state {}; validation MSE {}.",
        html_escape(&n.name),
        n.system.omega0,
        n.system.gamma,
        n.system.dt,
        sci(n.rollout.median_rel_err_final, 3),
        n.rollout.steps,
        sci(n.rollout.max_rel_err, 3),
        sci(n.rollout.median_err_vs_initial_final, 3),
        sci(n.valid_mse, 3)
    )
}
