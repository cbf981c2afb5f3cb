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
        for (id, _) in SECTIONS.iter().filter(|(id, _)| *id != "attention") {
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
        for (id, _) in SECTIONS {
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
    for (id, _) in SECTIONS {
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
    assert_eq!(doc.select(&sel("figure[data-case=\"one\"]")).count(), SECTIONS.len() - 1, "all but attention");
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
