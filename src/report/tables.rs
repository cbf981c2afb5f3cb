//! The report's tables, each in the three forms it is written in: the
//! headline numbers of every case side by side (HTML, Markdown for
//! `summary.md`, LaTeX for `summary.tex`) and the setup (HTML).
//!
//! Every headline cell comes straight from `summary.json` (two are
//! differences of its numbers: the readout errors); the HTML keeps the
//! full-precision value in `data-value` beside the rounded text.

use std::fmt::Write as _;

use crate::physics::Param;
use crate::report::data::CaseData;
use crate::report::plot::sci;
use crate::run::records::CaseSummary;

/// One cell of a table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// A number shown with this many significant digits.
    Num(f64, usize),
    /// A number shown in full (shortest form that reads back exactly).
    Exact(f64),
    /// A rule name or other word.
    Code(String),
    /// Not available (null in the JSON).
    Missing,
}

/// One row: a stable key (the `summary.json` path, or a name for derived
/// numbers), the label in Unicode and in LaTeX, and one cell per case.
#[derive(Clone, Debug)]
pub struct Row {
    /// `summary.json` key path such as `rollout.max_rel_err`, or `omega0_rel_err` / `gamma_abs_err`.
    pub key: &'static str,
    /// Label in plain Unicode.
    pub label: String,
    /// Label in LaTeX.
    pub tex: String,
    /// One cell per case.
    pub cells: Vec<Cell>,
}

fn num(v: f64, sig: usize) -> Cell {
    if v.is_finite() { Cell::Num(v, sig) } else { Cell::Missing }
}

/// The nearest baseline, or `none (nearest: …)` when the model does not
/// resemble it.
fn resembled(ic: &crate::eval::in_context::InContext) -> String {
    ic.resembled().map_or_else(|| format!("none (nearest: {})", ic.nearest_baseline), str::to_string)
}

/// A parameter: its value in full, or its range `[lo, hi]`.
fn param(p: Param) -> Cell {
    match p {
        Param::Fixed(v) => Cell::Exact(v),
        Param::Uniform(_) => Cell::Code(p.to_string()),
    }
}

/// The error of a learned parameter against a fixed true one (`err`), or
/// Missing when either is absent.
fn readout(learned: Option<f64>, truth: Param, err: fn(f64, f64) -> f64) -> Cell {
    match (learned, truth.fixed()) {
        (Some(l), Some(t)) => num(err(l, t), 2),
        _ => Cell::Missing,
    }
}

/// The headline rows for `cases`, in display order; a row that is missing
/// for every case is left out.
pub fn headline_rows(cases: &[CaseSummary]) -> Vec<Row> {
    let steps = cases.first().map_or(0, |c| c.rollout.steps);
    let same_steps = cases.iter().all(|c| c.rollout.steps == steps);
    let at = if same_steps { format!("at step {steps}") } else { "at the last step".to_string() };
    let row = |key, label: &str, tex: &str, f: &dyn Fn(&CaseSummary) -> Cell| Row {
        key,
        label: label.to_string(),
        tex: tex.to_string(),
        cells: cases.iter().map(f).collect(),
    };
    let rows = vec![
        row("omega0", "ω0 (true)", r"$\omega_0$ (true)", &|c| param(c.system.omega0)),
        row("gamma", "γ (true)", r"$\gamma$ (true)", &|c| param(c.system.gamma)),
        row("dt", "Δt", r"$\Delta t$", &|c| param(c.system.dt)),
        row("train_mse", "train MSE", "train MSE", &|c| num(c.train_mse, 3)),
        row(
            "valid_mse",
            "validation MSE (up to E_valid_max)",
            r"validation MSE (up to $E_\mathrm{valid,max}$)",
            &|c| num(c.valid_mse, 3),
        ),
        row(
            "rollout.median_rel_err_final",
            &format!("rollout: median rel. error {at}"),
            &format!(r"rollout: median rel.\ error {at}"),
            &|c| num(c.rollout.median_rel_err_final, 3),
        ),
        row(
            "rollout.max_rel_err_final",
            &format!("rollout: max rel. error {at}"),
            &format!(r"rollout: max rel.\ error {at}"),
            &|c| num(c.rollout.max_rel_err_final, 3),
        ),
        row(
            "rollout.median_err_vs_initial_final",
            &format!("rollout: median error vs initial state {at}"),
            &format!(r"rollout: median error vs initial state {at}"),
            &|c| num(c.rollout.median_err_vs_initial_final, 3),
        ),
        row(
            "rollout.max_err_vs_initial",
            "rollout: max error vs initial state, all steps",
            r"rollout: max error vs initial state, all steps",
            &|c| num(c.rollout.max_err_vs_initial, 3),
        ),
        row(
            "rollout.max_rel_err",
            "rollout: max rel. error, all steps",
            r"rollout: max rel.\ error, all steps",
            &|c| num(c.rollout.max_rel_err, 3),
        ),
        row(
            "in_context.median_rel_err_last",
            "in context: median rel. error, last position",
            r"in context: median rel.\ error, last position",
            &|c| c.in_context.as_ref().map_or(Cell::Missing, |ic| num(ic.median_rel_err_last, 3)),
        ),
        row("in_context.nearest_baseline", "in context: nearest baseline", "in context: nearest baseline", &|c| {
            c.in_context.as_ref().map_or(Cell::Missing, |ic| Cell::Code(resembled(ic)))
        }),
        row("learned.omega0", "learned ω0", r"learned $\omega_0$", &|c| {
            c.learned.as_ref().map_or(Cell::Missing, |l| num(l.omega0, 9))
        }),
        row("omega0_rel_err", "ω0: relative error", r"$\omega_0$: relative error", &|c| {
            readout(c.learned.as_ref().map(|l| l.omega0), c.system.omega0, |l, t| ((l - t) / t).abs())
        }),
        row("learned.gamma", "learned γ", r"learned $\gamma$", &|c| {
            c.learned.as_ref().map_or(Cell::Missing, |l| num(l.gamma, 6))
        }),
        row("gamma_abs_err", "γ: absolute error", r"$\gamma$: absolute error", &|c| {
            readout(c.learned.as_ref().map(|l| l.gamma), c.system.gamma, |l, t| (l - t).abs())
        }),
        row("nearest_method", "nearest update rule", "nearest update rule", &|c| {
            c.nearest_method.clone().map_or(Cell::Missing, Cell::Code)
        }),
        row("margin", "margin d₂/d₁ (≥ 10: identifiable)", r"margin $d_2/d_1$ ($\geq 10$: identifiable)", &|c| {
            num(c.margin, 3)
        }),
        row("rule_verdict", "rule verdict", "rule verdict", &|c| {
            c.rule_verdict.map_or(Cell::Missing, |v| Cell::Code(v.name().into()))
        }),
        row("error_vs_exact", "‖M − M_exact‖ (Frobenius)", r"$\|M - M_\mathrm{exact}\|_F$", &|c| {
            num(c.error_vs_exact, 3)
        }),
        row("train_seconds", "training wall time [s]", "training wall time [s]", &|c| num(c.train_seconds, 2)),
    ];
    // A row no case has a number for (the in-context rows of a seed study,
    // the readout rows of an in-context one) says nothing.
    rows.into_iter().filter(|r| r.cells.iter().any(|c| *c != Cell::Missing)).collect()
}

// ---------------------------------------------------------------- escaping and number forms

/// Escapes `&`, `<`, `>` and `"` for HTML text and attributes.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A caption as HTML: the text escaped ([`html_escape`]), with `^{…}` set as
/// a superscript (`<sup>`) and `_{…}` as a subscript (`<sub>`), so that
/// captions write `e^{AΔt}` and `ω_{0}` and the page shows them as math.
pub fn caption_html(text: &str) -> String {
    let escaped = html_escape(text);
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped.as_str();
    while let Some(i) = rest.find(['^', '_']) {
        let tag = if rest[i..].starts_with('^') { "sup" } else { "sub" };
        let after = &rest[i + 1..];
        match after.strip_prefix('{').and_then(|a| a.split_once('}')) {
            Some((inner, tail)) => {
                out.push_str(&rest[..i]);
                out.push_str(&format!("<{tag}>{inner}</{tag}>"));
                rest = tail;
            }
            None => {
                out.push_str(&rest[..=i]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Escapes the LaTeX special characters of plain text.
pub fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str(r"\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str(r"\textasciitilde{}"),
            '^' => out.push_str(r"\textasciicircum{}"),
            _ => out.push(c),
        }
    }
    out
}

/// `(mantissa, exponent)` of [`sci`]'s text, with an ASCII minus.
fn split_sci(v: f64, sig: usize) -> (String, Option<String>) {
    let text = sci(v, sig).replace('−', "-");
    match text.split_once("×10") {
        Some((m, e)) => {
            let digits: String = e
                .chars()
                .map(|c| match c {
                    '⁻' => '-',
                    c => "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().position(|s| s == c).map_or(c, |d| char::from(b'0' + d as u8)),
                })
                .collect();
            (m.to_string(), Some(digits))
        }
        None => (text, None),
    }
}

fn html_cell(c: &Cell) -> String {
    match c {
        Cell::Num(v, sig) => {
            let (m, e) = split_sci(*v, *sig);
            let text = match e {
                Some(e) => format!("{}×10<sup>{}</sup>", m.replace('-', "−"), e.replace('-', "−")),
                None => m.replace('-', "−"),
            };
            format!("<td class=\"num\" data-value=\"{v:?}\">{text}</td>")
        }
        Cell::Exact(v) => format!("<td class=\"num\" data-value=\"{v:?}\">{}</td>", format!("{v}").replace('-', "−")),
        Cell::Code(s) => format!("<td data-value=\"{0}\"><code>{0}</code></td>", html_escape(s)),
        Cell::Missing => "<td class=\"na\">n/a</td>".into(),
    }
}

fn md_cell(c: &Cell) -> String {
    match c {
        Cell::Num(v, sig) => sci(*v, *sig),
        Cell::Exact(v) => format!("{v}").replace('-', "−"),
        Cell::Code(s) => format!("`{s}`"),
        Cell::Missing => "n/a".into(),
    }
}

fn tex_cell(c: &Cell) -> String {
    match c {
        Cell::Num(v, sig) => match split_sci(*v, *sig) {
            (m, Some(e)) => format!(r"${m}\times10^{{{e}}}$"),
            (m, None) => format!("${m}$"),
        },
        Cell::Exact(v) => format!("${v}$"),
        Cell::Code(s) => format!(r"\texttt{{{}}}", tex_escape(s)),
        Cell::Missing => "n/a".into(),
    }
}

// ---------------------------------------------------------------- the three forms

/// The headline table as HTML (`<table id="headline">`, one `data-key` per row).
pub fn headline_html(cases: &[CaseSummary], rows: &[Row]) -> String {
    let mut out = String::from("<table id=\"headline\">\n<thead><tr><th>quantity</th>");
    for c in cases {
        write!(out, "<th data-case=\"{0}\">{0}</th>", html_escape(&c.name)).expect("write to String");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        write!(out, "<tr data-key=\"{}\"><th>{}</th>", r.key, html_escape(&r.label)).expect("write to String");
        for c in &r.cells {
            out.push_str(&html_cell(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// `summary.md`: the headline table in Markdown.
pub fn headline_markdown(title: &str, cases: &[CaseSummary], rows: &[Row]) -> String {
    let mut out =
        format!("# {title}\n\nHeadline numbers of every case, from `summary.json` (written by `physlens report`).\n\n");
    out.push_str("| quantity |");
    for c in cases {
        write!(out, " {} |", c.name.replace('|', "\\|")).expect("write to String");
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(cases.len()));
    out.push('\n');
    for r in rows {
        write!(out, "| {} |", r.label.replace('_', "\\_")).expect("write to String");
        for c in &r.cells {
            write!(out, " {} |", md_cell(c)).expect("write to String");
        }
        out.push('\n');
    }
    out
}

/// `summary.tex`: the headline table as a LaTeX `table` (needs `booktabs`).
pub fn headline_latex(cases: &[CaseSummary], rows: &[Row]) -> String {
    let mut out = String::from(
        "% Headline numbers of a physlens run, from summary.json (written by `physlens report`).\n\
         % Needs \\usepackage{booktabs}.\n\\begin{table}[htbp]\n  \\centering\n",
    );
    let systems: Vec<String> = cases.iter().map(|c| format!("{}", c.system.omega0)).collect();
    let caption = if systems.iter().all(|s| *s == systems[0]) && cases.iter().all(|c| c.system.dt == cases[0].system.dt)
    {
        format!(
            "Attention-only transformers trained on the damped harmonic oscillator ($\\omega_0 = {}$, $\\Delta t = {}$): \
             errors, the physics read back from the learned map, and the nearest update rule.",
            systems[0], cases[0].system.dt
        )
    } else {
        "Attention-only transformers trained on the damped harmonic oscillator: errors, the physics read back from \
         the learned map, and the nearest update rule."
            .to_string()
    };
    writeln!(out, "  \\caption{{{caption}}}\n  \\label{{tab:physlens}}").expect("write to String");
    writeln!(out, "  \\begin{{tabular}}{{l{}}}\n    \\toprule", " r".repeat(cases.len())).expect("write to String");
    let names: Vec<String> = cases.iter().map(|c| tex_escape(&c.name)).collect();
    writeln!(out, "     & {} \\\\\n    \\midrule", names.join(" & ")).expect("write to String");
    for r in rows {
        let cells: Vec<String> = r.cells.iter().map(tex_cell).collect();
        writeln!(out, "    {} & {} \\\\", r.tex, cells.join(" & ")).expect("write to String");
    }
    out.push_str("    \\bottomrule\n  \\end{tabular}\n\\end{table}\n");
    out
}

/// A config value: plain, or in exponent form when very small or large.
fn value(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e6).contains(&v.abs()) { format!("{v:e}") } else { format!("{v}") }
}

/// The setup of every case (physics, data, model, training, evaluation) as
/// an HTML table; a value shared by all cases spans their columns.
pub fn setup_html(cases: &[CaseData]) -> String {
    type Getter = Box<dyn Fn(&CaseData) -> String>;
    let item = |label: &str, f: Getter| (label.to_string(), f);
    let groups: Vec<(&str, Vec<(String, Getter)>)> = vec![
        (
            "physics",
            vec![
                item("system", Box::new(|_| "x″ + 2γ x′ + ω0² x = 0, p = x′, unit mass".into())),
                item("ω0", Box::new(|c| format!("{}", c.config.system.omega0))),
                item("γ", Box::new(|c| format!("{}", c.config.system.gamma))),
                item(
                    "regime",
                    Box::new(|c| match c.config.system.fixed() {
                        Some(s) => s.oscillator().regime().name().into(),
                        None => "parameters drawn per sequence (uniform on the ranges)".into(),
                    }),
                ),
                item("Δt", Box::new(|c| format!("{}", c.config.system.dt))),
                item(
                    "ωΔt (ω identifiable below π)",
                    Box::new(|c| match c.config.system.fixed() {
                        Some(s) => sci(s.omega() * s.dt, 3),
                        None => "per sequence".into(),
                    }),
                ),
            ],
        ),
        (
            "data",
            vec![
                item("training energies", Box::new(|c| format!("E uniform on [0, {}]", c.config.data.e_train_max))),
                item("validation energies", Box::new(|c| format!("E uniform on [0, {}]", c.config.data.e_valid_max))),
                item(
                    "training set",
                    Box::new(|c| match c.config.data.n_train {
                        0 => "fresh samples every step".into(),
                        n => format!("{n} sequences"),
                    }),
                ),
                item("validation set", Box::new(|c| format!("{} sequences", c.config.data.n_valid))),
                item("context (tokens per sequence)", Box::new(|c| c.config.data.context.to_string())),
                item("observation noise (σ / sqrt(2E), inputs only)", Box::new(|c| format!("{}", c.config.data.noise))),
            ],
        ),
        (
            "model",
            vec![
                item(
                    "architecture",
                    Box::new(|c| {
                        let m = &c.config.model;
                        format!("attention only: {} layer(s) × {} head(s), no MLP, no LayerNorm", m.n_layers, m.n_heads)
                    }),
                ),
                item(
                    "d_model / d_head",
                    Box::new(|c| format!("{} / {}", c.config.model.d_model, c.config.model.d_head)),
                ),
                item(
                    "attention",
                    Box::new(|c| {
                        let m = &c.config.model;
                        format!(
                            "scale 1/√{}, {}, {}",
                            serde_json::to_value(m.attn_scale)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            if m.causal { "causal mask" } else { "no mask" },
                            if m.positional { "positional embeddings" } else { "no positional embeddings" }
                        )
                    }),
                ),
                item(
                    "parameters",
                    Box::new(|c| c.model.as_ref().map_or("n/a (no checkpoint)".into(), |m| m.params.len().to_string())),
                ),
            ],
        ),
        (
            "training",
            vec![
                item(
                    "steps × batch",
                    Box::new(|c| format!("{} × {}", c.config.train.steps, c.config.train.batch_size)),
                ),
                item(
                    "optimiser",
                    Box::new(|c| {
                        let t = &c.config.train;
                        format!(
                            "AdamW (β1 {}, β2 {}, ε {}, weight decay {})",
                            value(t.beta1),
                            value(t.beta2),
                            value(t.eps),
                            value(t.weight_decay)
                        )
                    }),
                ),
                item(
                    "learning rate",
                    Box::new(|c| {
                        let t = &c.config.train;
                        let schedule = serde_json::to_value(t.schedule).ok().and_then(|v| v.as_str().map(String::from));
                        format!("{} → {} ({})", value(t.lr), value(t.lr_min), schedule.unwrap_or_default())
                    }),
                ),
                item(
                    "loss, dtype, seed",
                    Box::new(|c| format!("MSE, {}, {}", c.config.train.dtype.name(), c.config.train.seed)),
                ),
            ],
        ),
        (
            "evaluation",
            vec![item(
                "rollouts",
                Box::new(|c| {
                    format!("{} trajectories × {} steps", c.config.eval.n_rollouts, c.config.eval.rollout_steps)
                }),
            )],
        ),
    ];
    let mut out = String::from("<table id=\"setup\">\n<thead><tr><th></th><th></th>");
    for c in cases {
        write!(out, "<th>{}</th>", html_escape(&c.numbers.name)).expect("write to String");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for (group, items) in &groups {
        for (i, (label, get)) in items.iter().enumerate() {
            out.push_str("<tr>");
            if i == 0 {
                write!(out, "<th class=\"group\" rowspan=\"{}\">{group}</th>", items.len()).expect("write to String");
            }
            write!(out, "<th>{}</th>", html_escape(label)).expect("write to String");
            let values: Vec<String> = cases.iter().map(get).collect();
            if values.iter().all(|v| *v == values[0]) {
                write!(out, "<td colspan=\"{}\">{}</td>", cases.len(), html_escape(&values[0]))
                    .expect("write to String");
            } else {
                for v in &values {
                    write!(out, "<td>{}</td>", html_escape(v)).expect("write to String");
                }
            }
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</tbody>\n</table>\n");
    out
}
