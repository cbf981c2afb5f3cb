//! The data behind the report: reading a run folder back (CSV tables, the
//! records of [`crate::run::records`], the checkpoint) and the small tables
//! each figure is drawn from (written beside the figure as CSV); the
//! in-context interpretation's in [`interpretation`].
//!
//! Maps are in the COLUMN convention of physics, `s' = M s`.

pub mod interpretation;

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::interpret::map::MapReport;
use crate::interpret::patch::PatchReport;
use crate::model::Model;
use crate::model::checkpoint;
use crate::physics::rules::RULES;
use crate::run::records::{CaseSummary, Evaluation, Summary};
use crate::train::state::{STATE_FILE, stopped_at_floor};
use crate::util::error::{Error, Result};
use crate::util::io::read_json;
use crate::util::mat2::{Mat2, sub};
use interpretation::{InContextRead, read_interpret, read_patch};

/// Trajectories shown in the rollout, phase-portrait and energy figures.
pub const SHOWN_TRAJECTORIES: usize = 3;

// ---------------------------------------------------------------- tables

/// A CSV table as text cells, with the file it came from (for error messages).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    /// Where the table was read from or will be written to.
    pub source: PathBuf,
    /// Column names.
    pub header: Vec<String>,
    /// `[rows][columns]` cells.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[&str]) -> Self {
        Table { source: PathBuf::new(), header: header.iter().map(|s| s.to_string()).collect(), rows: vec![] }
    }

    /// Appends a row of numbers (written in a form that reads back exactly;
    /// a number that is not finite is an empty cell, read back as NaN).
    pub fn push(&mut self, row: &[f64]) {
        self.rows.push(row.iter().map(|v| cell(*v)).collect());
    }

    /// Appends a row whose first cell is a label.
    pub fn push_labelled(&mut self, label: &str, row: &[f64]) {
        let mut cells = vec![label.to_string()];
        cells.extend(row.iter().map(|v| cell(*v)));
        self.rows.push(cells);
    }

    /// Reads a CSV file with a header line; every row must have as many cells as the header.
    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Input { file: path.into(), message: format!("cannot read: {e}") })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| Error::Input {
                file: path.into(),
                message: "empty file: expected a CSV header line".into(),
            })?
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let mut rows = vec![];
        for (i, line) in lines.enumerate() {
            let cells: Vec<String> = line.split(',').map(|s| s.trim().to_string()).collect();
            if cells.len() != header.len() {
                return Err(Error::Input {
                    file: path.into(),
                    message: format!(
                        "line {}: {} cells, but the header has {} columns",
                        i + 2,
                        cells.len(),
                        header.len()
                    ),
                });
            }
            rows.push(cells);
        }
        Ok(Table { source: path.into(), header, rows })
    }

    /// The table as CSV text.
    pub fn to_csv(&self) -> String {
        let mut out = self.header.join(",");
        out.push('\n');
        for row in &self.rows {
            out.push_str(&row.join(","));
            out.push('\n');
        }
        out
    }

    /// The index of column `name`.
    fn index(&self, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).ok_or_else(|| Error::Input {
            file: self.source.clone(),
            message: format!("no column `{name}` (the columns are: {})", self.header.join(", ")),
        })
    }

    /// Column `name` as text.
    pub fn text(&self, name: &str) -> Result<Vec<String>> {
        let i = self.index(name)?;
        Ok(self.rows.iter().map(|r| r[i].clone()).collect())
    }

    /// Column `name` as numbers (`NaN` and `inf` accepted).
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>> {
        let i = self.index(name)?;
        self.rows
            .iter()
            .enumerate()
            .map(|(n, r)| {
                if r[i].is_empty() {
                    return Ok(f64::NAN); // a number that was not finite (docs/outputs.md)
                }
                r[i].parse::<f64>().map_err(|_| Error::Input {
                    file: self.source.clone(),
                    message: format!("line {}, column `{name}`: `{}` is not a number", n + 2, r[i]),
                })
            })
            .collect()
    }

    /// The rows whose column `name` equals `value`.
    pub fn filter(&self, name: &str, value: &str) -> Result<Table> {
        let i = self.index(name)?;
        let rows = self.rows.iter().filter(|r| r[i] == value).cloned().collect();
        Ok(Table { source: self.source.clone(), header: self.header.clone(), rows })
    }
}

/// A number as a CSV cell: full precision, or empty where it is not finite
/// (as the evaluation's files write it, docs/outputs.md).
fn cell(v: f64) -> String {
    if v.is_finite() { format!("{v:e}") } else { String::new() }
}

// ---------------------------------------------------------------- run folder

/// Everything the report reads from one case folder.
#[derive(Clone, Debug)]
pub struct CaseData {
    /// Headline numbers (from `summary.json`, or `eval.json` for a lone run folder).
    pub numbers: CaseSummary,
    /// The case folder.
    pub dir: PathBuf,
    /// `config.toml`.
    pub config: Config,
    /// `config.toml` as written.
    pub config_text: String,
    /// `metrics.csv`.
    pub metrics: Table,
    /// `rollout.csv`.
    pub rollout: Table,
    /// `trajectories.csv`.
    pub trajectories: Table,
    /// `interpret.json`, if present.
    pub map: Option<MapReport>,
    /// `model.safetensors` in f64, if present.
    pub model: Option<Model<f64>>,
    /// `error_vs_energy.csv`, if present.
    pub error_vs_energy: Option<Table>,
    /// `attention.csv` (layer, head, query, key, weight), if present.
    pub attention: Option<Table>,
    /// `sequences.csv` (the in-context evaluation per sequence), if present.
    pub sequences: Option<Table>,
    /// `in_context` of `interpret.json` (parameters drawn per sequence), if present.
    pub in_context: Option<InContextRead>,
    /// `implied.csv` (each sequence's implied ω0 and γ), if present.
    pub implied: Option<Table>,
    /// `filter.csv` (the model's and the nearest candidate's mean taps), if present.
    pub filter: Option<Table>,
    /// `patch.json`, if present.
    pub patch: Option<PatchReport>,
}

fn optional<T>(path: &Path, read: impl Fn(&Path) -> Result<T>) -> Result<Option<T>> {
    if path.exists() { read(path).map(Some) } else { Ok(None) }
}

/// Reads a run folder: the output of `physlens run` (with `summary.json`),
/// or a single folder of `physlens train` that `physlens eval` has evaluated.
/// Every missing or malformed file is an [`Error::Input`] naming it.
pub fn load_run(dir: &Path) -> Result<Vec<CaseData>> {
    if !dir.is_dir() {
        return Err(Error::Input { file: dir.into(), message: "no such folder".into() });
    }
    let summary = dir.join("summary.json");
    if summary.exists() {
        let file: Summary = read_json(&summary)?;
        if file.cases.is_empty() {
            return Err(Error::Input { file: summary, message: "`cases` is empty: nothing to report".into() });
        }
        return file.cases.into_iter().map(|n| load_case(&dir.join(&n.name), n)).collect();
    }
    if dir.join("config.toml").exists() {
        if !dir.join("eval.json").exists() {
            return Err(Error::Input {
                file: dir.join("eval.json"),
                message: format!(
                    "missing: evaluate this trained model first with `physlens eval --run {}`",
                    dir.display()
                ),
            });
        }
        return Ok(vec![load_case(dir, lone_case_numbers(dir)?)?]);
    }
    Err(Error::Input {
        file: summary,
        message: "missing: not a run folder (expected the output of `physlens run --out DIR`, or a folder of `physlens train` evaluated with `physlens eval`)".into(),
    })
}

/// The headline numbers of a lone run folder, from `eval.json` and `config.toml`.
fn lone_case_numbers(dir: &Path) -> Result<CaseSummary> {
    let config = Config::from_file(&dir.join("config.toml"))?;
    let eval: Evaluation = read_json(&dir.join("eval.json"))?;
    let name = dir.canonicalize().ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let mut numbers = CaseSummary::new(&name.unwrap_or_else(|| "run".into()), config.system, &eval, f64::NAN);
    let state = dir.join(STATE_FILE);
    if state.is_file() {
        numbers.stopped_at_floor_step = stopped_at_floor(&state)?;
    }
    Ok(numbers)
}

/// A report is made from one consistent set of files: the headline numbers
/// (from `summary.json`) must be those of the case's `eval.json`, and
/// `rollout.csv` must be the rollout they summarise.
fn check_consistent(dir: &Path, numbers: &CaseSummary, rollout: &Table) -> Result<()> {
    let last_step = rollout.numbers("step")?.last().copied().unwrap_or(f64::NAN);
    if last_step != numbers.rollout.steps as f64 {
        return Err(Error::Input {
            file: dir.join("rollout.csv"),
            message: format!(
                "ends at step {last_step}, but the headline numbers are of a {}-step rollout: the files come from \
                 different evaluations; rerun `physlens eval --run {}` (and `physlens run` for summary.json)",
                numbers.rollout.steps,
                dir.display()
            ),
        });
    }
    let eval_path = dir.join("eval.json");
    if eval_path.exists() {
        let eval: Evaluation = read_json(&eval_path)?;
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        if !(same(eval.valid_mse, numbers.valid_mse)
            && same(eval.rollout.median_rel_err_final, numbers.rollout.median_rel_err_final)
            && eval.rollout.steps == numbers.rollout.steps)
        {
            return Err(Error::Input {
                file: eval_path,
                message: "holds other numbers than summary.json for this case (it was re-evaluated after the study, \
                          or the model retrained): the report would mix two evaluations; rerun the study, or report \
                          the case folder alone"
                    .into(),
            });
        }
    }
    Ok(())
}

fn load_case(dir: &Path, numbers: CaseSummary) -> Result<CaseData> {
    let config_path = dir.join("config.toml");
    let config_text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::Input { file: config_path.clone(), message: format!("cannot read: {e}") })?;
    let model = optional(&dir.join("model.safetensors"), |p| Ok(checkpoint::load(p)?.model.to_f64()))?;
    let rollout = Table::read(&dir.join("rollout.csv"))?;
    check_consistent(dir, &numbers, &rollout)?;
    let interpret = optional(&dir.join("interpret.json"), read_interpret)?.unwrap_or_default();
    Ok(CaseData {
        config: Config::parse(&config_text, &config_path.display().to_string())?,
        config_text,
        metrics: Table::read(&dir.join("metrics.csv"))?,
        rollout,
        trajectories: Table::read(&dir.join("trajectories.csv"))?,
        map: interpret.map,
        in_context: interpret.in_context,
        implied: optional(&dir.join("implied.csv"), Table::read)?,
        filter: optional(&dir.join("filter.csv"), Table::read)?,
        patch: optional(&dir.join("patch.json"), read_patch)?,
        model,
        error_vs_energy: optional(&dir.join("error_vs_energy.csv"), Table::read)?,
        attention: optional(&dir.join("attention.csv"), Table::read)?,
        sequences: optional(&dir.join("sequences.csv"), Table::read)?,
        numbers,
        dir: dir.into(),
    })
}

// ---------------------------------------------------------------- figure tables

/// Columns `names` of `table`, in that order.
pub fn select(table: &Table, names: &[&str]) -> Result<Table> {
    let cols: Vec<Vec<String>> = names.iter().map(|n| table.text(n)).collect::<Result<_>>()?;
    let rows = (0..table.rows.len()).map(|r| cols.iter().map(|c| c[r].clone()).collect()).collect();
    Ok(Table { source: table.source.clone(), header: names.iter().map(|s| s.to_string()).collect(), rows })
}

/// The first [`SHOWN_TRAJECTORIES`] trajectories of `trajectories.csv`.
pub fn shown_trajectories(trajectories: &Table) -> Result<Table> {
    let ids = trajectories.numbers("trajectory")?;
    let mut columns = vec!["trajectory", "step", "t", "x", "p", "x_exact", "p_exact"];
    if trajectories.header.iter().any(|h| h == "omega0") {
        columns.extend(["omega0", "gamma"]); // each trajectory's system (files since the in-context study)
    }
    let mut out = select(trajectories, &columns)?;
    out.rows =
        out.rows.into_iter().zip(ids).filter(|(_, id)| *id < SHOWN_TRAJECTORIES as f64).map(|(r, _)| r).collect();
    Ok(out)
}

/// Per-component relative errors `|x̂ − x|/|x|`, `|p̂ − p|/|p|` and the
/// norm-based `‖ŝ − s‖/‖s‖` of trajectory 0, with the exact `x` (to mark its zero crossings).
pub fn component_errors(trajectories: &Table) -> Result<Table> {
    let first =
        trajectories.filter("trajectory", &trajectories.text("trajectory")?.first().cloned().unwrap_or_default())?;
    let [step, t, x, p, xe, pe] = ["step", "t", "x", "p", "x_exact", "p_exact"].map(|c| first.numbers(c));
    let (step, t, x, p, xe, pe) = (step?, t?, x?, p?, xe?, pe?);
    let mut out = Table::new(&["step", "t", "x_exact", "rel_err_x", "rel_err_p", "rel_err_norm"]);
    for i in 0..step.len() {
        let norm = (x[i] - xe[i]).hypot(p[i] - pe[i]) / xe[i].hypot(pe[i]);
        out.push(&[step[i], t[i], xe[i], ((x[i] - xe[i]) / xe[i]).abs(), ((p[i] - pe[i]) / pe[i]).abs(), norm]);
    }
    Ok(out)
}

/// Energy `½(p² + ω0² x²)` of the shown trajectories, model and exact, and
/// the relative difference `(Ê − E)/E₀`.
pub fn energies(trajectories: &Table, omega0: f64) -> Result<Table> {
    let shown = shown_trajectories(trajectories)?;
    let [id, t, x, p, xe, pe] = ["trajectory", "t", "x", "p", "x_exact", "p_exact"].map(|c| shown.numbers(c));
    let (id, t, x, p, xe, pe) = (id?, t?, x?, p?, xe?, pe?);
    let energy = |x: f64, p: f64| 0.5 * (p * p + omega0 * omega0 * x * x);
    let mut out = Table::new(&["trajectory", "t", "energy", "energy_exact", "rel_diff"]);
    let mut e0 = f64::NAN;
    for i in 0..id.len() {
        if i == 0 || id[i] != id[i - 1] {
            e0 = energy(xe[i], pe[i]);
        }
        let (e, ee) = (energy(x[i], p[i]), energy(xe[i], pe[i]));
        out.push(&[id[i], t[i], e, ee, (e - ee) / e0]);
    }
    Ok(out)
}

/// Eigenvalues of the learned map and of every candidate rule (`exact`
/// among them), in the order of [`RULES`], as `interpret.json` holds them:
/// columns `source, re, im`.
pub fn eigenvalue_table(map: &MapReport) -> Table {
    let mut out = Table::new(&["source", "re", "im"]);
    for z in &map.eigenvalues {
        out.push_labelled("learned", &[z.re, z.im]);
    }
    for name in RULES {
        for m in map.methods.iter().filter(|m| m.name == name) {
            for z in &m.eigenvalues {
                out.push_labelled(name, &[z.re, z.im]);
            }
        }
    }
    out
}

/// Distances to the candidate rules: columns `rule, distance`, ascending (as
/// `interpret.json` holds them).
pub fn distance_table(map: &MapReport) -> Table {
    let mut out = Table::new(&["rule", "distance"]);
    for m in &map.methods {
        out.push_labelled(&m.name, &[m.distance]);
    }
    out
}

fn push_matrix(out: &mut Table, term: &str, m: &Mat2) {
    for (r, row) in m.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            out.push_labelled(term, &[r as f64, c as f64, *v]);
        }
    }
}

/// The learned map, the exact propagator and their difference: columns `term, row, col, value`.
pub fn map_table(map: &MapReport) -> Table {
    let exact = map.exact_map;
    let mut out = Table::new(&["term", "row", "col", "value"]);
    push_matrix(&mut out, "learned", &map.effective_map);
    push_matrix(&mut out, "exact", &exact);
    push_matrix(&mut out, "learned - exact", &sub(&map.effective_map, &exact));
    out
}

/// The path decomposition of a context-1 model's map (column convention,
/// [`Model::path_maps`]): the direct path, each head's path, for several
/// layers the rest (compositions of heads), and the total; `None` for
/// context > 1 and for MLP blocks. Columns `term, row, col, value`.
pub fn path_table(model: &Model<f64>) -> Option<Table> {
    if !model.cfg.is_affine() {
        return None;
    }
    let paths = model.path_maps()?;
    let mut out = Table::new(&["term", "row", "col", "value"]);
    push_matrix(&mut out, "direct", &paths.direct);
    for (l, h, path) in &paths.heads {
        push_matrix(&mut out, &format!("L{l}H{h}"), path);
    }
    if let Some(rest) = &paths.compositions {
        push_matrix(&mut out, "compositions", rest);
    }
    push_matrix(&mut out, "total", &paths.total);
    Some(out)
}

/// The `term`s of a `term, row, col, value` table, in order, with their 2×2 matrices.
pub fn matrices(table: &Table) -> Result<Vec<(String, Vec<Vec<f64>>)>> {
    let (terms, rows, cols, values) =
        (table.text("term")?, table.numbers("row")?, table.numbers("col")?, table.numbers("value")?);
    let mut out: Vec<(String, Vec<Vec<f64>>)> = vec![];
    for i in 0..terms.len() {
        if out.last().is_none_or(|(t, _)| *t != terms[i]) {
            out.push((terms[i].clone(), vec![vec![f64::NAN; 2]; 2]));
        }
        let (r, c) = (rows[i] as usize, cols[i] as usize);
        let m = &mut out.last_mut().expect("pushed above").1;
        if r >= m.len() {
            m.resize(r + 1, vec![f64::NAN; m[0].len()]);
        }
        if c >= m[r].len() {
            m.iter_mut().for_each(|row| row.resize(c + 1, f64::NAN));
        }
        m[r][c] = values[i];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_name_the_file_on_errors() {
        let mut t = Table::new(&["a", "b"]);
        t.push(&[1.5, -2e-9]);
        let dir = std::env::temp_dir().join(format!("physlens-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        std::fs::write(&path, t.to_csv()).unwrap();
        let back = Table::read(&path).unwrap();
        assert_eq!(back.numbers("b").unwrap(), vec![-2e-9]);
        let err = back.numbers("c").unwrap_err().to_string();
        assert!(err.contains("t.csv") && err.contains("`c`"), "{err}");
        std::fs::write(&path, "a,b\n1,2,3\n").unwrap();
        let err = Table::read(&path).unwrap_err().to_string();
        assert!(err.contains("t.csv") && err.contains("line 2"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_paths_of_a_one_layer_model_add_up_to_its_map() {
        let cfg = crate::model::ModelConfig::seed();
        let model = Model::<f64>::init(&cfg, &mut crate::util::rng::Rng::new(3, crate::util::rng::Stream::Init));
        let parts = matrices(&path_table(&model).unwrap()).unwrap();
        let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["direct", "L0H0", "total"]);
        for r in 0..2 {
            for c in 0..2 {
                let sum = parts[0].1[r][c] + parts[1].1[r][c];
                assert!((sum - parts[2].1[r][c]).abs() < 1e-12);
            }
        }
    }
}
