//! `sweep.html`: one self-contained page for a sweep (inline CSS, SVG and
//! JS; nothing fetched): the counts and swept values, the default figures
//! of [`crate::report::sweep::figures`] (each beside its CSV in
//! `figures/`), the failed and missing points, an explorer that plots any
//! numeric column against any swept key or numeric column, and the whole
//! table.

use std::fmt::Write as _;
use std::path::Path;

use crate::report::plot::{Drawable, render};
use crate::report::sweep::figures::{Content, Slot, default_figures};
use crate::report::sweep::table::SweepTable;
use crate::report::tables::{caption_html, html_escape};
use crate::util::error::Result;
use crate::util::io::write_text;

/// The page's style sheet, inline.
const STYLE: &str = r#"
body { font: 15px/1.5 "DejaVu Sans", "Helvetica Neue", Arial, sans-serif; color: #1e1e1e; margin: 0 auto; max-width: 1360px; padding: 0 24px 48px; }
h1 { font-size: 1.7em; margin: 1.2em 0 0.1em; }
h2 { font-size: 1.25em; margin: 1.8em 0 0.5em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.sub { color: #666; margin: 0.2em 0; }
code { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #999; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px 28px; align-items: start; }
figure { margin: 0; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 0.93em; margin-top: 4px; }
.files { color: #666; font-size: 0.9em; white-space: nowrap; }
.skipped { color: #555; background: #f6f6f6; border-left: 3px solid #bbb; padding: 8px 12px; }
#explorer select, #explorer label { margin-right: 1em; }
#ex-plot { width: 100%; max-width: 900px; height: auto; font-size: 12px; }
details table { font-size: 0.85em; }
"#;

/// Draws the explorer's scatter from the `sweep-data` JSON (`header`, `rows`,
/// `keys`, `numeric`) into `#ex-plot`, following the `#ex-*` controls.
const EXPLORER_JS: &str = r#"
(() => {
  'use strict';
  const data = JSON.parse(document.getElementById('sweep-data').textContent);
  const $ = (id) => document.getElementById(id);
  const [W, H, L, R, T, B] = [760, 460, 80, 150, 14, 52];
  const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#787878', '#000000'];
  const numeric = new Set(data.numeric);
  // The text of column `name` in `row`, and a cell as a number (NaN where empty).
  const cell = (row, name) => row[data.header.indexOf(name)];
  const num = (s) => (s === '' ? NaN : Number(s));

  function fill(id, names, chosen) {
    for (const n of names) $(id).add(new Option(n, n, false, n === chosen));
  }
  fill('ex-x', data.keys.concat(data.numeric.filter((n) => !data.keys.includes(n))), data.keys[0]);
  fill('ex-y', data.numeric, data.numeric.includes('valid_mse') ? 'valid_mse' : data.numeric[0]);
  fill('ex-c', ['none'].concat(data.keys), 'none');

  // The plotted range of `values`: whole decades on a log axis (they hold log10), padded by 6 % otherwise.
  function span(values, log) {
    if (!values.length) return [0, 1];
    let lo = Math.min(...values), hi = Math.max(...values);
    if (log) return [Math.floor(lo), Math.max(Math.ceil(hi), Math.floor(lo) + 1)];
    const pad = hi > lo ? 0.06 * (hi - lo) : Math.abs(lo) * 0.1 || 1;
    return [lo - pad, hi + pad];
  }

  // Ticks [position, label] over [lo, hi]: decades 1eN on a log axis, 1-2-5 steps on a linear one.
  function ticks(lo, hi, log) {
    const out = [];
    if (log) {
      const every = Math.ceil((hi - lo) / 8);
      for (let e = lo; e <= hi; e += every) out.push([e, '1e' + e]);
      return out;
    }
    const rough = (hi - lo) / 6, mag = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= rough);
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) {
      out.push([v, String(+v.toPrecision(4))]);
    }
    return out;
  }

  // Appends the SVG element `name` with `attrs` (and `text`) to `parent`.
  function add(parent, name, attrs, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    parent.appendChild(e);
    return e;
  }

  function draw() {
    const [xName, yName, cName] = ['ex-x', 'ex-y', 'ex-c'].map((id) => $(id).value);
    const categorical = !numeric.has(xName);
    const logX = $('ex-logx').checked && !categorical, logY = $('ex-logy').checked;
    const categories = [...new Set(data.rows.map((r) => cell(r, xName)))];
    const groups = cName === 'none' ? [] : [...new Set(data.rows.map((r) => cell(r, cName)))];
    const points = [];
    for (const row of data.rows) {
      const x = categorical ? categories.indexOf(cell(row, xName)) : num(cell(row, xName));
      const y = num(cell(row, yName));
      if (!isFinite(x) || !isFinite(y) || (logX && x <= 0) || (logY && y <= 0)) continue;
      points.push({ x: logX ? Math.log10(x) : x, y: logY ? Math.log10(y) : y, row });
    }
    const svg = $('ex-plot');
    svg.replaceChildren();
    const [x0, x1] = categorical ? [-0.5, categories.length - 0.5] : span(points.map((p) => p.x), logX);
    const [y0, y1] = span(points.map((p) => p.y), logY);
    const px = (v) => L + ((v - x0) / (x1 - x0)) * (W - L - R);
    const py = (v) => H - B - ((v - y0) / (y1 - y0)) * (H - T - B);
    const xTicks = categorical ? categories.map((c, i) => [i, c]) : ticks(x0, x1, logX);
    for (const [v, label] of xTicks) {
      add(svg, 'line', { x1: px(v), x2: px(v), y1: T, y2: H - B, stroke: '#eee' });
      add(svg, 'text', { x: px(v), y: H - B + 16, 'text-anchor': 'middle' }, label);
    }
    for (const [v, label] of ticks(y0, y1, logY)) {
      add(svg, 'line', { x1: L, x2: W - R, y1: py(v), y2: py(v), stroke: '#eee' });
      add(svg, 'text', { x: L - 6, y: py(v) + 4, 'text-anchor': 'end' }, label);
    }
    add(svg, 'rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: 'none', stroke: '#888' });
    add(svg, 'text', { x: (L + W - R) / 2, y: H - 12, 'text-anchor': 'middle' }, xName + (logX ? ' (log)' : ''));
    const mid = (T + H - B) / 2;
    add(svg, 'text', { x: 16, y: mid, transform: `rotate(-90 16 ${mid})`, 'text-anchor': 'middle' },
      yName + (logY ? ' (log)' : ''));
    for (const p of points) {
      const colour = PALETTE[Math.max(groups.indexOf(cell(p.row, cName)), 0) % PALETTE.length];
      const dot = add(svg, 'circle', { cx: px(p.x), cy: py(p.y), r: 4.5, fill: colour, 'fill-opacity': 0.8 });
      add(dot, 'title', {}, `${cell(p.row, 'id')}: ${xName} = ${cell(p.row, xName)}, ${yName} = ${cell(p.row, yName)}`);
    }
    if (groups.length) add(svg, 'text', { x: W - R + 12, y: T + 12, 'font-weight': 'bold' }, cName);
    groups.forEach((g, i) => {
      add(svg, 'circle', { cx: W - R + 18, cy: T + 28 + 18 * i, r: 4.5, fill: PALETTE[i % PALETTE.length] });
      add(svg, 'text', { x: W - R + 28, y: T + 32 + 18 * i }, g);
    });
    const log = logX || logY ? ' (or no positive one, on a log axis)' : '';
    $('ex-note').textContent = `${points.length} of ${data.rows.length} points drawn; the others have no value${log}.`;
  }
  for (const id of ['ex-x', 'ex-y', 'ex-c', 'ex-logx', 'ex-logy']) $(id).addEventListener('change', draw);
  draw();
})();
"#;

/// The page of a sweep: writes its figures into `dir/figures/` (each as
/// `<id>.svg`, `.png` and the `.csv` it is drawn from) and returns the HTML
/// text (see the module doc).
pub(crate) fn sweep_page(table: &SweepTable, title: &str, dir: &Path) -> Result<String> {
    let mut out = head(title);
    out.push_str(&counts_html(table));
    out.push_str(&figures_html(&default_figures(table), &dir.join("figures"))?);
    out.push_str(&failed_and_missing_html(table));
    out.push_str(&explorer_html(table));
    out.push_str(&table_html(table));
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// The document head (inline style; the content security policy forbids
/// anything fetched) and the title.
fn head(title: &str) -> String {
    let title = html_escape(title);
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" \
         content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{title}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    )
}

/// The ids of the rows of `t` whose status is `status`.
fn ids_with<'a>(t: &'a SweepTable, status: &str) -> Vec<&'a str> {
    t.rows.iter().filter(|r| t.text(r, "status") == status).map(|r| t.text(r, "id")).collect()
}

/// The distinct values of column `name`, in order of first appearance.
fn distinct<'a>(t: &'a SweepTable, name: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = vec![];
    for row in &t.rows {
        let v = t.text(row, name);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The line of counts, and the swept keys with their values.
fn counts_html(t: &SweepTable) -> String {
    let [ok, failed, missing] = ["ok", "failed", "missing"].map(|s| ids_with(t, s).len());
    let keys: Vec<String> = t
        .keys
        .iter()
        .map(|k| format!("<code>{}</code> ∈ {{{}}}", html_escape(k), html_escape(&distinct(t, k).join(", "))))
        .collect();
    let keys = if keys.is_empty() { "none".into() } else { keys.join("; ") };
    format!(
        "<p class=\"sub\">{} points: {ok} ok, {failed} failed, {missing} missing. Swept keys: {keys}. Written by physlens \
         {} from sweep.csv (<code>physlens sweep collect DIR</code> rebuilds it).</p>\n",
        t.rows.len(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The default figures: each drawn into `figures` (SVG, PNG and CSV) and
/// shown inline with its caption, or named with why it is left out.
fn figures_html(slots: &[Slot], figures: &Path) -> Result<String> {
    let mut out = String::from("<section id=\"figures\">\n<h2>Figures</h2>\n<div class=\"grid\">\n");
    for (id, heading, content) in slots {
        match content {
            Content::Drawn { figure, caption } => {
                // RFC 4180 quoting: ids and swept values may hold commas.
                let csv =
                    SweepTable { keys: vec![], header: figure.data.header.clone(), rows: figure.data.rows.clone() };
                write_text(&figures.join(format!("{id}.csv")), &csv.to_csv())?;
                let svg = render(figure, &figures.join(id))?;
                let _ = writeln!(
                    out,
                    "<figure id=\"{id}\" style=\"max-width: {}px\">\n{}\n<figcaption><b>{}.</b> {} <span class=\"files\">\
                     Data: <a href=\"figures/{id}.csv\">{id}.csv</a> · <a href=\"figures/{id}.svg\">SVG</a> · \
                     <a href=\"figures/{id}.png\">PNG</a></span></figcaption>\n</figure>",
                    figure.size().0,
                    svg.trim(),
                    html_escape(heading),
                    caption_html(caption)
                );
            }
            Content::Skipped(why) => {
                let _ = writeln!(
                    out,
                    "<p class=\"skipped\" data-figure=\"{id}\"><b>{}:</b> {}</p>",
                    html_escape(heading),
                    caption_html(why)
                );
            }
        }
    }
    out.push_str("</div>\n</section>\n");
    Ok(out)
}

/// The failed points (id, swept values, error) and the missing ones (by id);
/// "none" where there are none.
fn failed_and_missing_html(t: &SweepTable) -> String {
    let mut out = String::from("<section id=\"failed\">\n<h2>Failed points</h2>\n");
    let failed: Vec<&Vec<String>> = t.rows.iter().filter(|r| t.text(r, "status") == "failed").collect();
    if failed.is_empty() {
        out.push_str("<p>none</p>\n");
    } else {
        let columns: Vec<&str> =
            std::iter::once("id").chain(t.keys.iter().map(String::as_str)).chain(["error"]).collect();
        out.push_str(&html_table(t, &columns, &failed));
    }
    let missing: Vec<String> =
        ids_with(t, "missing").iter().map(|id| format!("<code>{}</code>", html_escape(id))).collect();
    let missing = if missing.is_empty() { "none".into() } else { missing.join(", ") };
    let _ =
        writeln!(out, "</section>\n<section id=\"missing\">\n<h2>Missing points</h2>\n<p>{missing}</p>\n</section>");
    out
}

/// Columns `columns` of `rows` as an HTML table, numbers right-aligned.
fn html_table(t: &SweepTable, columns: &[&str], rows: &[&Vec<String>]) -> String {
    let mut out = String::from("<table>\n<thead><tr>");
    for c in columns {
        let _ = write!(out, "<th>{}</th>", html_escape(c));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in columns {
            let v = t.text(row, c);
            let class = if v.parse::<f64>().is_ok() { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", html_escape(v));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// The columns other than `id` and `status` whose every non-empty cell is a
/// number (and that have one): what the explorer can put on an axis.
fn numeric_columns(t: &SweepTable) -> Vec<&str> {
    let numeric = |name: &str| {
        let cells = || t.rows.iter().map(|r| t.text(r, name)).filter(|c| !c.is_empty());
        cells().next().is_some() && cells().all(|c| c.parse::<f64>().is_ok())
    };
    t.header.iter().skip(2).map(String::as_str).filter(|c| numeric(c)).collect()
}

/// The explorer: its controls, the plot, the table as JSON (every `<`
/// escaped so no cell can close the script) and [`EXPLORER_JS`].
fn explorer_html(t: &SweepTable) -> String {
    let data = serde_json::json!({
        "header": t.header, "rows": t.rows, "keys": t.keys, "numeric": numeric_columns(t),
    });
    let json = data.to_string().replace('<', "\\u003c");
    format!(
        "<section id=\"explorer\">\n<h2>Explorer</h2>\n<p>x <select id=\"ex-x\"></select> y <select id=\"ex-y\"></select> \
         colour by <select id=\"ex-c\"></select> <label><input type=\"checkbox\" id=\"ex-logx\"> log x</label> \
         <label><input type=\"checkbox\" id=\"ex-logy\"> log y</label></p>\n\
         <svg id=\"ex-plot\" viewBox=\"0 0 760 460\" role=\"img\"></svg>\n<p class=\"sub\" id=\"ex-note\"></p>\n\
         <script type=\"application/json\" id=\"sweep-data\">{json}</script>\n<script>{EXPLORER_JS}</script>\n</section>\n"
    )
}

/// The whole table, folded.
fn table_html(t: &SweepTable) -> String {
    let columns: Vec<&str> = t.header.iter().map(String::as_str).collect();
    let rows: Vec<&Vec<String>> = t.rows.iter().collect();
    format!(
        "<section id=\"table\">\n<h2>All points</h2>\n<details><summary>The {} rows of sweep.csv</summary>\n{}</details>\n\
         </section>\n",
        t.rows.len(),
        html_table(t, &columns, &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sweep over `keys` (the first one set): two ok points with a distance
    /// to the exact map, one failed with an error that tries to close the
    /// script, one missing.
    fn sweep(keys: &[&str]) -> SweepTable {
        let mut t = SweepTable::new(&keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        let rows = [
            ("a", "ok", "0.1", "1e-4", ""),
            ("b", "ok", "0.2", "1.6e-3", ""),
            ("c", "failed", "0.4", "", "diverged, at step 3: </script><b>"),
            ("d", "missing", "0.8", "", ""),
        ];
        for (id, status, value, distance, error) in rows {
            let mut row = vec![String::new(); t.header.len()];
            let cells =
                [("id", id), ("status", status), (keys[0], value), ("error_vs_exact", distance), ("error", error)];
            for (name, v) in cells {
                row[t.column(name).unwrap()] = v.into();
            }
            t.rows.push(row);
        }
        t
    }

    /// The text of `<section id="{id}">`.
    fn section<'a>(html: &'a str, id: &str) -> &'a str {
        html.split(&format!("<section id=\"{id}\">")).nth(1).unwrap().split("</section>").next().unwrap()
    }

    #[test]
    fn the_page_draws_the_truncation_order_names_failed_and_missing_points_and_fetches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = sweep(&["system.dt", "train.seed"]);
        let html = sweep_page(&t, "sweep <dt>", dir.path()).unwrap();
        assert!(html.contains("<h1>sweep &lt;dt&gt;</h1>") && html.contains("4 points: 2 ok, 1 failed, 1 missing."));
        assert!(html.contains("<code>system.dt</code> ∈ {0.1, 0.2, 0.4, 0.8}"));
        let figure = html.split("<figure id=\"truncation_order\"").nth(1).expect("the truncation-order figure");
        assert!(figure.contains("<svg") && figure.contains("all points: slope 4.00 (2 Δt: not checked)"));
        for ext in ["svg", "png", "csv"] {
            assert!(dir.path().join(format!("figures/truncation_order.{ext}")).is_file());
        }
        let failed = section(&html, "failed");
        assert!(failed.contains("<td>c</td><td class=\"num\">0.4</td><td></td>"), "{failed}");
        assert!(failed.contains("<td>diverged, at step 3: &lt;/script&gt;&lt;b&gt;</td>"), "{failed}");
        assert!(section(&html, "missing").contains("<code>d</code>"));
        for fetch in ["src=\"http", "href=\"http", "<link", "@import"] {
            assert!(!html.contains(fetch), "{fetch}");
        }
        let json = html.split("id=\"sweep-data\">").nth(1).unwrap().split("</script>").next().unwrap();
        let data: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(data["rows"][2][t.column("error").unwrap()], "diverged, at step 3: </script><b>");
        assert_eq!(data["numeric"], serde_json::json!(["system.dt", "error_vs_exact"]));
    }

    #[test]
    fn without_a_swept_dt_the_truncation_order_is_left_out_with_why() {
        let dir = tempfile::tempdir().unwrap();
        let html = sweep_page(&sweep(&["train.seed"]), "sweep", dir.path()).unwrap();
        assert!(!html.contains("<figure id=\"truncation_order\""));
        assert!(html.contains(
            "data-figure=\"truncation_order\"><b>Truncation order: distance to the exact map against Δt:</b> Not \
             drawn: system.dt is not a swept key"
        ));
        assert!(html.contains("data-figure=\"in_context_error_vs_size\"><b>In-context error against model size:</b>"));
        assert!(!dir.path().join("figures/truncation_order.svg").exists());
        let quiet = failed_and_missing_html(&SweepTable::new(&[]));
        assert_eq!(quiet.matches("<p>none</p>").count(), 2, "{quiet}");
    }
}
