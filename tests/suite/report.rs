//! The report: `physlens run` writes it, `physlens report --run DIR` rebuilds
//! it from the folder alone; report.html is well-formed, has every figure,
//! and its headline table, summary.md and summary.tex hold exactly the
//! numbers of summary.json.

use crate::common::{physlens, stderr};
use std::path::{Path, PathBuf};
use std::process::Command;

use physlens::report::build::SECTIONS;
use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

/// Two cases (the seed's γ = 0 and 0.1), trained for a few hundred steps.
const SMALL: &str = "[data]\nn_train = 2000\nn_valid = 256\n[train]\nsteps = 600\nlr = 1e-2\nbatch_size = 64\nlog_every = 100\n\
                     [eval]\nrollout_steps = 40\nn_rollouts = 8\n";

/// `physlens run` of `config` into `<tmp>/out`; returns the temp dir and the run folder.
fn run(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.toml"), config).unwrap();
    let out = physlens(&["run", "--config", "small.toml", "--out", "out", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let run = dir.path().join("out");
    (dir, run)
}

/// The figure sections of a study of one system per case (the in-context
/// sections need context > 1 or parameters drawn per sequence; the
/// interpretation's need parameters drawn per sequence).
fn one_system_sections() -> Vec<(&'static str, &'static str)> {
    let in_context = [
        "in_context_error",
        "error_vs_parameters",
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
    SECTIONS.iter().copied().filter(|(id, _)| !in_context.contains(id)).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// A number as displayed in the HTML text, Markdown or LaTeX: `8.37×10−7`,
/// `8.37×10⁻⁷`, `$8.37\times10^{-7}$`, `0.100`; with the number of
/// significant digits shown. `None` for words (`n/a`, rule names).
pub(crate) fn displayed(text: &str) -> Option<(f64, usize)> {
    let mut s =
        text.trim().replace(['$', '{', '}', '`'], "").replace("\\times", "×").replace('−', "-").replace("×10^", "×10");
    for (i, c) in "⁰¹²³⁴⁵⁶⁷⁸⁹".chars().enumerate() {
        s = s.replace(c, &i.to_string());
    }
    s = s.replace('⁻', "-");
    let (mantissa, exp) = match s.split_once("×10") {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().ok()?),
        None => (s.clone(), 0),
    };
    let value: f64 = mantissa.parse().ok()?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sig = digits.trim_start_matches('0').len().max(1);
    Some((value * 10f64.powi(exp), sig))
}

/// Whether `text` is `want` rounded to the digits it shows.
pub(crate) fn shows(text: &str, want: f64) -> bool {
    let Some((got, sig)) = displayed(text) else { return false };
    if want == 0.0 {
        return got == 0.0;
    }
    let ulp = 10f64.powi(want.abs().log10().floor() as i32 - sig as i32 + 1);
    (got - want).abs() <= 0.5 * ulp * (1.0 + 1e-9) + 1e-300
}

/// The `summary.json` value a headline row stands for (two are differences of its numbers).
fn expected(case: &Value, key: &str) -> Value {
    let num = |p: &str| case.pointer(p).and_then(Value::as_f64);
    match key {
        "omega0_rel_err" => match num("/learned/omega0") {
            Some(w) => Value::from(((w - num("/omega0").unwrap()) / num("/omega0").unwrap()).abs()),
            None => Value::Null,
        },
        "gamma_abs_err" => match num("/learned/gamma") {
            Some(g) => Value::from((g - num("/gamma").unwrap()).abs()),
            None => Value::Null,
        },
        _ => case
            .pointer(&format!("/{}", key.replace('.', "/")))
            .cloned()
            .unwrap_or_else(|| panic!("summary.json lacks {key}")),
    }
}

fn assert_cell_matches(where_: &str, text: &str, want: &Value) {
    match want {
        Value::Number(n) => {
            let v = n.as_f64().unwrap();
            assert!(shows(text, v), "{where_}: `{text}` is not {v} rounded");
        }
        Value::String(s) => assert_eq!(
            text.trim().trim_matches('`').replace("\\texttt", "").replace(['{', '}', '\\'], ""),
            *s,
            "{where_}"
        ),
        Value::Null => assert_eq!(text.trim(), "n/a", "{where_}"),
        other => panic!("{where_}: unexpected {other}"),
    }
}

fn summary(run: &Path) -> Vec<Value> {
    let json: Value = serde_json::from_str(&read(&run.join("summary.json"))).unwrap();
    json["cases"].as_array().unwrap().clone()
}

#[test]
fn run_writes_the_report_and_report_rebuilds_it_from_the_folder_alone() {
    let (dir, run) = run(SMALL);
    let html = read(&run.join("report.html"));
    let (md, tex) = (read(&run.join("summary.md")), read(&run.join("summary.tex")));
    let svg = read(&run.join("damped/figures/rollout_error.svg"));
    // Only the run folder is left: no config file, no other state.
    std::fs::remove_file(dir.path().join("small.toml")).unwrap();
    for file in ["report.html", "summary.md", "summary.tex"] {
        std::fs::remove_file(run.join(file)).unwrap();
    }
    for case in ["undamped", "damped"] {
        std::fs::remove_dir_all(run.join(case).join("figures")).unwrap();
    }
    let out = physlens(&["report", "--run", "out"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("report.html"));
    assert_eq!(read(&run.join("report.html")), html, "the rebuilt report differs");
    assert_eq!(read(&run.join("summary.md")), md);
    assert_eq!(read(&run.join("summary.tex")), tex);
    assert_eq!(read(&run.join("damped/figures/rollout_error.svg")), svg);
}

#[test]
fn every_figure_is_drawn_from_the_csv_beside_it() {
    let (_dir, run) = run(SMALL);
    for case in ["undamped", "damped"] {
        for (id, _) in one_system_sections().iter().filter(|(id, _)| *id != "attention") {
            let stem = run.join(case).join("figures").join(id);
            let svg = read(&stem.with_extension("svg"));
            assert!(svg.starts_with("<svg") && svg.len() > 2000, "{case}/{id}.svg is empty");
            let png = std::fs::read(stem.with_extension("png")).unwrap();
            assert!(
                png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
                "{case}/{id}.png is not a PNG with content"
            );
            let csv = read(&stem.with_extension("csv"));
            let mut lines = csv.lines();
            let width = lines.next().unwrap().split(',').count();
            assert!(width >= 2, "{case}/{id}.csv has no header");
            assert!(lines.clone().count() >= 2, "{case}/{id}.csv has no rows");
            assert!(lines.all(|l| l.split(',').count() == width), "{case}/{id}.csv is ragged");
        }
        // The per-sample error file that the extrapolation figure needs is written at evaluation.
        let errors = read(&run.join(case).join("error_vs_energy.csv"));
        assert_eq!(errors.lines().next(), Some("energy,sq_err,rel_err"));
        assert_eq!(errors.lines().count(), 1 + 256, "one row per validation sample");
    }
}

#[test]
fn report_html_is_well_formed_with_every_figure_and_the_numbers_of_summary_json() {
    let (_dir, run) = run(SMALL);
    let text = read(&run.join("report.html"));
    let doc = Html::parse_document(&text);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    assert!(text.starts_with("<!DOCTYPE html>"));
    // Self-contained: nothing to fetch, every link points into the run folder.
    for bad in ["script", "link", "img", "iframe", "object", "[src]", "[style*=\"url(\"]"] {
        assert!(doc.select(&sel(bad)).next().is_none(), "report.html has {bad}");
    }
    let namespaces = text.matches("xmlns=\"http://www.w3.org/2000/svg\"").count();
    assert_eq!(text.matches("http://").count(), namespaces, "report.html refers to a web address");
    assert!(!text.contains("https://"));
    for a in doc.select(&sel("a[href]")) {
        let href = a.attr("href").unwrap();
        assert!(run.join(href).is_file(), "link to a missing file: {href}");
    }
    let cases = summary(&run);
    // Every figure of every case, non-empty; attention is a note for context-1 models.
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        for (id, _) in one_system_sections() {
            let figure = doc.select(&sel(&format!("figure[data-case=\"{name}\"][data-figure=\"{id}\"]"))).next();
            let note = doc.select(&sel(&format!(".skipped[data-case=\"{name}\"][data-figure=\"{id}\"]"))).next();
            if id == "attention" {
                assert!(figure.is_none() && note.is_some(), "{name}: attention should be a note at context 1");
                continue;
            }
            let figure = figure.unwrap_or_else(|| panic!("{name}: figure {id} missing"));
            let svg = figure.select(&sel("svg")).next().unwrap_or_else(|| panic!("{name}/{id}: no svg"));
            assert!(svg.attr("viewBox").is_some(), "{name}/{id}: svg without viewBox");
            let drawn = svg.descendants().filter_map(ElementRef::wrap).count();
            assert!(drawn > 30, "{name}/{id}: only {drawn} svg elements");
            let caption = figure.select(&sel("figcaption")).next().unwrap().text().collect::<String>();
            assert!(caption.len() > 60, "{name}/{id}: caption too short: {caption}");
        }
    }
    // The headline table: one column per case, every cell equal to summary.json.
    let table = doc.select(&sel("table#headline")).next().expect("headline table");
    let heads: Vec<String> = table.select(&sel("thead th[data-case]")).map(|th| th.text().collect()).collect();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(heads, names);
    let rows: Vec<ElementRef> = table.select(&sel("tbody tr")).collect();
    assert!(rows.len() >= 14, "{} headline rows", rows.len());
    for row in &rows {
        let key = row.attr("data-key").expect("every row has a data-key");
        let cells: Vec<ElementRef> = row.select(&sel("td")).collect();
        assert_eq!(cells.len(), cases.len(), "{key}");
        for (cell, case) in cells.iter().zip(&cases) {
            let want = expected(case, key);
            let where_ = format!("report.html {key} {}", case["name"]);
            if let Value::Number(n) = &want {
                // The full-precision value is kept, and equals summary.json's exactly.
                let full: f64 = cell.attr("data-value").expect("numbers carry data-value").parse().unwrap();
                assert_eq!(full, n.as_f64().unwrap(), "{where_}");
            }
            assert_cell_matches(&where_, &cell.text().collect::<String>(), &want);
        }
    }
    assert!(rows.iter().any(|r| r.attr("data-key") == Some("nearest_method")));
    assert!(rows.iter().any(|r| r.attr("data-key") == Some("rollout.median_rel_err_final")));
}

#[test]
fn summary_md_and_tex_hold_the_numbers_of_summary_json() {
    let (_dir, run) = run(SMALL);
    let cases = summary(&run);
    let doc = Html::parse_document(&read(&run.join("report.html")));
    let keys: Vec<String> =
        doc.select(&sel("table#headline tbody tr")).map(|r| r.attr("data-key").unwrap().to_string()).collect();

    let md = read(&run.join("summary.md"));
    let md_rows: Vec<Vec<String>> = md
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect();
    let header: Vec<&str> =
        md.lines().find(|l| l.starts_with('|')).unwrap().trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(header[1..], cases.iter().map(|c| c["name"].as_str().unwrap()).collect::<Vec<_>>()[..]);

    let tex = read(&run.join("summary.tex"));
    let body = tex.split("\\midrule").nth(1).unwrap().split("\\bottomrule").next().unwrap();
    let tex_rows: Vec<Vec<String>> = body
        .lines()
        .filter(|l| l.contains('&'))
        .map(|l| l.trim().trim_end_matches("\\\\").split(" & ").map(|c| c.trim().to_string()).collect())
        .collect();
    assert!(tex.contains("\\begin{tabular}") && tex.contains("\\toprule") && tex.contains("\\end{table}"));
    assert_eq!(tex.matches('{').count(), tex.matches('}').count(), "unbalanced braces in summary.tex");

    for (form, rows) in [("summary.md", &md_rows), ("summary.tex", &tex_rows)] {
        assert_eq!(rows.len(), keys.len(), "{form}: rows");
        for (row, key) in rows.iter().zip(&keys) {
            assert_eq!(row.len(), 1 + cases.len(), "{form} {key}: {row:?}");
            for (cell, case) in row[1..].iter().zip(&cases) {
                assert_cell_matches(&format!("{form} {key} {}", case["name"]), cell, &expected(case, key));
            }
        }
    }
}

#[test]
fn attention_patterns_are_drawn_when_attention_csv_exists() {
    let config = format!("{SMALL}[run]\ncases = [{{ name = \"ctx\", gamma = 0.1 }}]\n")
        .replace("[data]\n", "[data]\ncontext = 2\n");
    let (dir, run) = run(&config);
    let case = run.join("ctx");
    let mut csv = String::from("layer,head,query,key,weight\n");
    for (q, k, w) in [(0, 0, 1.0), (0, 1, 0.0), (1, 0, 0.25), (1, 1, 0.75)] {
        csv.push_str(&format!("0,0,{q},{k},{w}\n"));
    }
    std::fs::write(case.join("attention.csv"), csv).unwrap();
    let out = physlens(&["report", "--run", "out"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = Html::parse_document(&read(&run.join("report.html")));
    let figure =
        doc.select(&sel("figure[data-case=\"ctx\"][data-figure=\"attention\"]")).next().expect("attention figure");
    assert!(figure.select(&sel("svg rect")).count() >= 4);
    assert!(read(&case.join("figures/attention.csv")).lines().count() == 5);
    // Whatever a context-2 model lacks is said, never silently left out.
    for (id, _) in one_system_sections() {
        let shown = doc.select(&sel(&format!("[data-case=\"ctx\"][data-figure=\"{id}\"]"))).count();
        assert_eq!(shown, 1, "{id}: neither drawn nor explained");
    }
}

#[test]
fn missing_or_broken_run_folder_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = physlens(&["report", "--run", "nope"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = physlens(&["report", "--run", "empty"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("summary.json"), "{}", stderr(&out));

    let (tmp, run) = run(SMALL);
    let broken = |file: &str, content: Option<&str>, expect: &[&str]| {
        let path = run.join(file);
        let original = std::fs::read(&path).unwrap();
        match content {
            Some(c) => std::fs::write(&path, c).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        let out = physlens(&["report", "--run", "out"], tmp.path());
        std::fs::write(&path, original).unwrap();
        assert_eq!(out.status.code(), Some(2), "{file}: {}", stderr(&out));
        for e in expect {
            assert!(stderr(&out).contains(e), "{file}: stderr lacks {e}: {}", stderr(&out));
        }
    };
    broken("summary.json", Some("{\"cases\": 3"), &["summary.json"]);
    broken("damped/rollout.csv", None, &["damped/rollout.csv"]);
    broken(
        "undamped/metrics.csv",
        Some("step,lr,train_loss,valid_mse,elapsed_s\n100,0.01,oops,1e-3,0.1\n"),
        &["undamped/metrics.csv", "line 2", "train_loss"],
    );
    broken("damped/trajectories.csv", Some("trajectory,step\n0,0,1\n"), &["damped/trajectories.csv", "line 2"]);
    broken("damped/config.toml", Some("[train]\nlr = -1.0\n"), &["damped/config.toml", "train.lr"]);
    // Restored: the report builds again.
    let out = physlens(&["report", "--run", "out"], tmp.path());
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_single_train_folder_gets_a_report_once_evaluated() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.toml"), SMALL).unwrap();
    let out = physlens(&["train", "--config", "small.toml", "--out", "one", "--quiet"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = physlens(&["report", "--run", "one"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("eval.json") && stderr(&out).contains("physlens eval"), "{}", stderr(&out));
    assert!(physlens(&["eval", "--run", "one"], dir.path()).status.success());
    let out = physlens(&["report", "--run", "one"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = Html::parse_document(&read(&dir.path().join("one/report.html")));
    assert_eq!(
        doc.select(&sel("figure[data-case=\"one\"]")).count(),
        one_system_sections().len() - 1,
        "all but attention"
    );
    assert!(dir.path().join("one/figures/eigenvalues.png").is_file());
}

/// Renders report.html in headless Chromium (tools/check_report.sh): no
/// console errors, and screenshots in the run folder. Needs `chromium`.
#[test]
#[ignore = "needs Chromium (apt-get install -y chromium); run with --ignored"]
fn report_renders_in_headless_chromium_without_console_errors() {
    let (_dir, run) = run(SMALL);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_report.sh");
    let out = Command::new("bash").arg(script).arg(&run).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(run.join("screenshots/report-top.png").is_file());
}

// ---------------------------------------------------------------- runs built by hand (no training)

/// A lone run folder whose context-1 model computes `s' = scale · e^{AΔt} s`
/// exactly (two heads, random gauge), evaluated and reported in-process:
/// `scale > 1` gives a rollout that grows by `scale` per step until it
/// overflows. With `attention`, an `attention.csv` of one layer with two
/// heads is added, so that the report draws attention patterns too.
fn handbuilt_run(scale: f64, attention: bool) -> (tempfile::TempDir, PathBuf) {
    use crate::handbuilt::{gauge, two_head_model};
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("handbuilt");
    std::fs::create_dir(&run).unwrap();
    let text =
        "[model]\nn_heads = 2\n[data]\nn_train = 256\nn_valid = 64\n[eval]\nrollout_steps = 700\nn_rollouts = 8\n";
    std::fs::write(run.join("config.toml"), text).unwrap();
    std::fs::write(
        run.join("metrics.csv"),
        "step,lr,train_loss,valid_mse,elapsed_s\n0,0.01,1.0,1.0,0.0\n100,0.01,1e-3,2e-3,0.1\n",
    )
    .unwrap();
    let config = physlens::Config::parse(text, "handbuilt").unwrap();
    let system = config.system.fixed().unwrap();
    let m = physlens::util::mat2::scale(&system.step(), scale);
    let model = two_head_model(m, [0.0, 0.0], gauge(5), 5);
    let path = run.join("model.safetensors");
    physlens::model::checkpoint::save(&path, &model, config.system, &Default::default()).unwrap();
    physlens::RunDir::open(&run).unwrap().evaluate().unwrap();
    if attention {
        let mut csv = String::from("layer,head,query,key,weight\n");
        for head in 0..2 {
            for (q, k, w) in [(0, 0, 1.0), (1, 0, 0.25), (1, 1, 0.75), (2, 0, 0.1), (2, 1, 0.2), (2, 2, 0.7)] {
                csv.push_str(&format!("0,{head},{q},{k},{w}\n"));
            }
        }
        std::fs::write(run.join("attention.csv"), csv).unwrap();
    }
    physlens::build_report(&run).unwrap();
    (dir, run)
}

/// The `<figure>` of `id` in a report.
fn figure<'a>(doc: &'a Html, id: &str) -> ElementRef<'a> {
    doc.select(&sel(&format!("figure[data-figure=\"{id}\"]"))).next().unwrap_or_else(|| panic!("no figure {id}"))
}

fn caption(figure: ElementRef<'_>) -> String {
    figure.select(&sel("figcaption")).next().unwrap().text().collect()
}

/// The texts of an SVG that are numbers (tick labels, colour-bar labels, cell values).
fn number_texts(svg: ElementRef<'_>) -> Vec<String> {
    svg.select(&sel("text"))
        .map(|t| t.text().collect::<String>().trim().to_string())
        .filter(|t| t.chars().any(|c| c.is_ascii_digit()) && t.chars().all(|c| "0123456789.−-×⁰¹²³⁴⁵⁶⁷⁸⁹⁻".contains(c)))
        .collect()
}

/// Words that say a number was not finite.
fn has_non_finite_word(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .any(|w| ["nan", "inf", "infinity"].contains(&w.to_lowercase().as_str()))
}

/// Issue 16, item 7: a diverging rollout drew ticks like "…350932992" over
/// the axes, smeared the phase portrait, and its figures never said the
/// rollout diverged. Now every number on every figure is short, the rollout
/// and phase figures clip at a few times the exact extent and say so, the
/// captions name the divergence step, and no figure, caption or CSV holds
/// NaN or inf.
#[test]
fn a_diverging_rollout_gets_short_ticks_clipped_axes_and_a_divergence_caption() {
    let (_dir, run) = handbuilt_run(3.0, false);
    let eval: Value = serde_json::from_str(&read(&run.join("eval.json"))).unwrap();
    let n = eval["rollout"]["diverged_at"].as_u64().expect("the rollout diverges");
    assert!((100..700).contains(&n), "diverged at {n}");
    let html = read(&run.join("report.html"));
    let doc = Html::parse_document(&html);
    for (id, _) in one_system_sections().iter().filter(|(id, _)| *id != "attention") {
        let fig = figure(&doc, id);
        let svg = fig.select(&sel("svg")).next().unwrap();
        for text in number_texts(svg) {
            let len = text.chars().count();
            assert!(len <= 8 || (text.contains('×') && len <= 11), "{id}: number `{text}` is too long");
        }
        let all: String = svg.text().collect();
        assert!(!has_non_finite_word(&all) && !has_non_finite_word(&caption(fig)), "{id}: NaN or inf shown");
        let csv = read(&run.join("figures").join(format!("{id}.csv")));
        assert!(!has_non_finite_word(&csv), "{id}.csv holds NaN or inf");
    }
    // The phase portrait and x(t), p(t) stop at about 3× the exact extent.
    let shown = read(&run.join("figures/phase.csv"));
    let mut extent: f64 = 0.0;
    for line in shown.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        extent = extent.max(cells[5].parse::<f64>().unwrap().abs()).max(cells[6].parse::<f64>().unwrap().abs());
    }
    for id in ["phase", "rollouts"] {
        let fig = figure(&doc, id);
        let ticks: Vec<f64> = number_texts(fig.select(&sel("svg")).next().unwrap())
            .iter()
            .filter_map(|t| displayed(t).map(|(v, _)| v))
            .collect();
        let largest = ticks.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if id == "phase" {
            assert!(largest > extent && largest <= 3.4 * extent, "{id}: ticks reach {largest}, exact extent {extent}");
        }
        let text = caption(fig);
        assert!(text.contains(&format!("diverged: model states are no longer finite from step {n}")), "{id}: {text}");
        assert!(text.contains("leaves the plotted area from step"), "{id}: {text}");
    }
    let energy = caption(figure(&doc, "energy"));
    assert!(energy.contains(&format!("from step {n}")) && energy.contains("n/a"), "{energy}");
    // The ΔE/E₀ panel stops at ±3 like the energy panel, instead of an axis scaled by 10³⁰⁷.
    assert!(energy.contains("ΔE/E₀ axis stops at ±3"), "{energy}");
    let energy_svg = read(&run.join("figures/energy.svg"));
    assert!(!energy_svg.contains("×10³") && !energy_svg.contains("×10¹"), "the ΔE/E₀ axis is scaled up");
    assert!(caption(figure(&doc, "rollout_error")).contains(&format!("from step {n}")));
    // rollout.csv: where a state is no longer finite, the energy drift is as empty as the error.
    let rollout = read(&run.join("rollout.csv"));
    for line in rollout.lines().skip(1 + n as usize) {
        let cells: Vec<&str> = line.split(',').collect();
        assert!(cells[4].is_empty() && cells[9].is_empty(), "rollout.csv: {line}");
    }
    assert!(eval["rollout"]["max_rel_err"].is_null());
}

/// The filled `<rect>`s of `svg` that are stripes of a colour bar: runs of at
/// least 32 (a bar has 48) with the same `x` and `width`. One per heat map.
fn color_bars(svg: ElementRef<'_>) -> usize {
    let mut columns: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for r in svg.select(&sel("rect")).filter(|r| r.attr("fill").is_some_and(|f| f != "none")) {
        let key = (r.attr("x").unwrap_or("").to_string(), r.attr("width").unwrap_or("").to_string());
        *columns.entry(key).or_default() += 1;
    }
    columns.values().filter(|&&n| n >= 32).count()
}

/// Issue 16, item 12: heat maps had no colour bar, the eigenvalue plane's
/// zoom box was drawn under the markers (and too small to see), and captions
/// wrote `e^(AΔt)` and `ω0`. Now every heat map has a colour bar, each zoom
/// box is drawn after the markers it frames, at least 10 pixels wide, with
/// two leader lines to its inset, and captions set exponents in `<sup>`.
#[test]
fn heat_maps_have_colour_bars_the_zoom_box_is_on_top_and_captions_use_sup() {
    let (_dir, run) = handbuilt_run(1.0, true);
    let doc = Html::parse_document(&read(&run.join("report.html")));
    let svg = |id: &str| figure(&doc, id).select(&sel("svg")).next().unwrap();
    assert_eq!(color_bars(svg("map")), 3, "learned, exact and difference each have a colour bar");
    assert_eq!(color_bars(svg("paths")), 4, "direct, two heads and total each have a colour bar");
    assert_eq!(color_bars(svg("attention")), 2, "each head has a colour bar");
    assert_eq!(color_bars(svg("rollouts")), 0);

    // The zoom boxes: unfilled dark rectangles, after the markers inside them.
    let eigen = svg("eigenvalues");
    let elements: Vec<ElementRef> = eigen.descendants().filter_map(ElementRef::wrap).collect();
    let num = |e: &ElementRef, a: &str| e.attr(a).unwrap().parse::<f64>().unwrap();
    let boxes: Vec<usize> = (0..elements.len())
        .filter(|&i| {
            let e = &elements[i];
            e.value().name() == "rect" && e.attr("fill") == Some("none") && e.attr("stroke") == Some("#1E1E1E")
        })
        .collect();
    assert_eq!(boxes.len(), 2, "a box on the plane and one on the first zoom");
    for &b in &boxes {
        let r = &elements[b];
        let (x, y, w, h) = (num(r, "x"), num(r, "y"), num(r, "width"), num(r, "height"));
        assert!(w >= 10.0 && h >= 10.0, "zoom box {w}×{h} pixels");
        let inside: Vec<usize> = (0..elements.len())
            .filter(|&i| elements[i].value().name() == "circle")
            .filter(|&i| {
                let (cx, cy) = (num(&elements[i], "cx"), num(&elements[i], "cy"));
                (x..=x + w).contains(&cx) && (y..=y + h).contains(&cy)
            })
            .collect();
        assert!(!inside.is_empty(), "no marker inside the zoom box");
        assert!(inside.iter().all(|&i| i < b), "a marker is drawn over the zoom box");
        let leaders = elements[b - 2..b].iter().filter(|e| e.value().name() == "polyline").count();
        assert_eq!(leaders, 2, "two leader lines from the box to its inset");
    }

    // Captions: math as <sup>/<sub>, no caret notation.
    for fig in doc.select(&sel("figure")) {
        let id = fig.attr("data-figure").unwrap();
        let cap = fig.select(&sel("figcaption")).next().unwrap();
        let text: String = cap.text().collect();
        assert!(!text.contains("^{") && !text.contains("_{"), "{id}: markup left in the caption: {text}");
        assert!(!text.contains('^'), "{id}: caret notation in the caption: {text}");
    }
    let eigen = figure(&doc, "eigenvalues").select(&sel("figcaption")).next().unwrap().inner_html();
    assert!(eigen.contains("e<sup>(−γ ± iω)Δt</sup>"), "{eigen}");
    let map = figure(&doc, "map").select(&sel("figcaption")).next().unwrap().inner_html();
    assert!(map.contains("e<sup>AΔt</sup>"), "{map}");
    let energy = figure(&doc, "energy").select(&sel("figcaption")).next().unwrap().inner_html();
    assert!(energy.contains("ω<sub>0</sub>") && energy.contains("e<sup>−2γt</sup>"), "{energy}");
}
