//! Reading a sweep folder's points into a [`SweepTable`]: one row per point
//! of its `sweep.toml`, in point order, `ok` or `failed` from the point's
//! `point.json`, `missing` where no shard has finished it.

use std::path::{Path, PathBuf};

use crate::config::sweep::{Point, value_text};
use crate::report::sweep::page::sweep_page;
use crate::report::sweep::table::{SweepTable, number_cell};
use crate::run::sweep::{PointRecord, finished_record, open_sweep, point_dir};
use crate::util::error::Result;
use crate::util::io::write_text;

/// What [`collect`] wrote and found.
#[derive(Clone, Debug)]
pub struct CollectOutcome {
    /// `DIR/sweep.csv`.
    pub csv: PathBuf,
    /// `DIR/sweep.html`.
    pub html: PathBuf,
    /// The table written.
    pub table: SweepTable,
}

impl CollectOutcome {
    /// The ids of the points with `status`.
    pub fn ids_with(&self, status: &str) -> Vec<&str> {
        self.table.rows.iter().filter(|r| self.table.text(r, "status") == status).map(|r| r[0].as_str()).collect()
    }
}

/// Writes `dir/sweep.csv` and `dir/sweep.html` from the sweep folder `dir`.
///
/// # Errors
/// [`crate::Error::Input`] if `dir` is not a sweep folder or a finished
/// point's `point.json` is unreadable; [`crate::Error::Io`].
pub fn collect(dir: &Path) -> Result<CollectOutcome> {
    let config = open_sweep(dir)?;
    let points = config.sweep_points()?;
    let keys: Vec<String> = points.first().map(|p| p.values.keys().cloned().collect()).unwrap_or_default();
    let mut table = SweepTable::new(&keys);
    for point in &points {
        let folder = point_dir(dir, &point.id);
        let row = match finished_record(&folder)? {
            Some(record) => finished_row(&table, point, &record),
            None => missing_row(&table, point, folder.exists()),
        };
        table.rows.push(row);
    }
    let outcome = CollectOutcome { csv: dir.join("sweep.csv"), html: dir.join("sweep.html"), table };
    write_text(&outcome.csv, &outcome.table.to_csv())?;
    let title = format!("physlens sweep: {}", folder_name(dir));
    write_text(&outcome.html, &sweep_page(&outcome.table, &title, dir)?)?;
    Ok(outcome)
}

/// A row with the id, the status and the swept values filled in.
fn row_of(table: &SweepTable, point: &Point, status: &str) -> Vec<String> {
    let mut row = vec![String::new(); table.header.len()];
    row[0] = point.id.clone();
    row[1] = status.into();
    for (key, value) in &point.values {
        if let Some(i) = table.column(key) {
            row[i] = value_text(value);
        }
    }
    row
}

/// The row of a point that no shard has finished.
fn missing_row(table: &SweepTable, point: &Point, started: bool) -> Vec<String> {
    let mut row = row_of(table, point, "missing");
    let why = if started {
        "started but not finished (still running, interrupted or killed: run the sweep again to finish it)"
    } else {
        "not run yet"
    };
    set(table, &mut row, "error", why.into());
    row
}

/// The row of a finished point: its headline numbers (docs/sweeps.md).
fn finished_row(table: &SweepTable, point: &Point, r: &PointRecord) -> Vec<String> {
    let mut row = row_of(table, point, &r.status);
    let mut put = |name: &str, text: String| set(table, &mut row, name, text);
    put("wall_s", number_cell(r.wall_s));
    put("n_params", r.n_params.to_string());
    put("error", r.error.clone().unwrap_or_default());
    let Some(s) = &r.summary else { return row };
    let learned = |f: fn(&crate::interpret::map::Learned) -> f64| s.learned.as_ref().map_or(f64::NAN, f);
    let truth = |p: crate::physics::spec::Param| p.fixed().unwrap_or(f64::NAN);
    put("valid_mse", number_cell(s.valid_mse));
    put("median_rel_err_final", number_cell(s.rollout.median_rel_err_final));
    put("learned_omega0", number_cell(learned(|l| l.omega0)));
    put("learned_gamma", number_cell(learned(|l| l.gamma)));
    put("omega0_error", number_cell(learned(|l| l.omega0) - truth(s.system.omega0)));
    put("gamma_error", number_cell(learned(|l| l.gamma) - truth(s.system.gamma)));
    put("nearest_method", s.nearest_method.clone().unwrap_or_default());
    let verdict = s.rule_verdict.and_then(|v| serde_json::to_value(v).ok());
    put("rule_verdict", verdict.as_ref().and_then(|v| v.as_str()).unwrap_or_default().into());
    put("margin", number_cell(s.margin));
    put("error_vs_exact", number_cell(s.error_vs_exact));
    if let Some(ic) = &s.in_context {
        put("median_rel_err_last", number_cell(ic.median_rel_err_last));
        put("nearest_baseline", ic.nearest_baseline.clone());
    }
    put("train_steps", s.train_steps.map_or(String::new(), |n| n.to_string()));
    row
}

/// Sets column `name` of `row`.
fn set(table: &SweepTable, row: &mut [String], name: &str, text: String) {
    if let Some(i) = table.column(name) {
        row[i] = text;
    }
}

/// The folder's own name (of its canonical path: `.` becomes the folder).
fn folder_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned())
}
