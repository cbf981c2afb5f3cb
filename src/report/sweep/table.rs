//! `sweep.csv` as a table: one row per point of a sweep, text cells, with
//! the names of the swept keys (docs/sweeps.md lists every column).

use std::fmt::Write as _;

/// Column names after the swept keys, in order (docs/sweeps.md).
pub const FIGURE_COLUMNS: [&str; 16] = [
    "wall_s",
    "valid_mse",
    "median_rel_err_final",
    "learned_omega0",
    "learned_gamma",
    "omega0_error",
    "gamma_error",
    "nearest_method",
    "rule_verdict",
    "margin",
    "error_vs_exact",
    "median_rel_err_last",
    "nearest_baseline",
    "n_params",
    "train_steps",
    "error",
];

/// The status of a point: `ok`, `failed` (with its reason in `error`) or,
/// from `collect`, `missing` (not finished by any shard yet).
pub const STATUSES: [&str; 3] = ["ok", "failed", "missing"];

/// `sweep.csv`: columns `id`, `status`, every swept key by its dotted name,
/// then [`FIGURE_COLUMNS`]. Numbers are written so they read back exactly;
/// a cell is empty where the number is not finite or does not apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepTable {
    /// The swept keys, dotted (`system.dt`), in the order of the columns.
    pub keys: Vec<String>,
    /// Column names.
    pub header: Vec<String>,
    /// `[points][columns]`, in the sweep's point order.
    pub rows: Vec<Vec<String>>,
}

impl SweepTable {
    /// An empty table for these swept keys.
    pub fn new(keys: &[String]) -> Self {
        let mut header = vec!["id".to_string(), "status".to_string()];
        header.extend(keys.iter().cloned());
        header.extend(FIGURE_COLUMNS.iter().map(|c| c.to_string()));
        SweepTable { keys: keys.to_vec(), header, rows: vec![] }
    }

    /// The index of column `name`, if the table has it.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The cell of `row` in column `name` (empty if there is no such column).
    pub fn text<'a>(&'a self, row: &'a [String], name: &str) -> &'a str {
        self.column(name).map_or("", |i| row[i].as_str())
    }

    /// The cell of `row` in column `name` as a number; NaN where it is empty
    /// or not a number.
    pub fn number(&self, row: &[String], name: &str) -> f64 {
        self.text(row, name).parse().unwrap_or(f64::NAN)
    }

    /// The table as CSV (RFC 4180: a cell with a comma, quote or line break
    /// is quoted, its quotes doubled).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().map(|c| quoted(c)).collect();
            let _ = writeln!(out, "{}", cells.join(","));
        }
        out
    }
}

/// A number as a cell: the shortest text that reads back exactly, or empty
/// where it is not finite.
pub fn number_cell(v: f64) -> String {
    if v.is_finite() { format!("{v:e}") } else { String::new() }
}

fn quoted(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_with_commas_are_quoted_and_columns_follow_the_keys() {
        let mut t = SweepTable::new(&["system.dt".into()]);
        let mut row = vec![String::new(); t.header.len()];
        row[0] = "dt=0.1".into();
        row[t.column("error").unwrap()] = "diverged, at step 3: \"nan\"".into();
        row[t.column("valid_mse").unwrap()] = number_cell(1.5e-9);
        t.rows.push(row);
        assert_eq!(&t.header[..4], ["id", "status", "system.dt", "wall_s"]);
        assert_eq!(t.number(&t.rows[0], "valid_mse"), 1.5e-9);
        assert!(t.number(&t.rows[0], "wall_s").is_nan());
        assert!(t.to_csv().lines().nth(1).unwrap().ends_with(",\"diverged, at step 3: \"\"nan\"\"\""));
    }
}
