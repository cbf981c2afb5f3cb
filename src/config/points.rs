//! The points of `[sweep]` ([`crate::config::sweep`]) and their configs.
//! Random points cross the grid: each grid point is combined with each of
//! the `n` draws.
//!
//! Points come in a fixed order — the grid with its last key varying
//! fastest (keys sorted by name), the draws innermost — and each has a stable
//! id made from its values (`dt=0.1_generator=rk4_seed=0`; a random draw adds
//! `r007`), which names its folder.
//!
//! ```
//! use physlens::config::Config;
//! let text = r#"
//! [sweep]
//! grid = { "system.dt" = [0.05, 0.1], "train.seed" = [0, 1] }
//! "#;
//! let config = Config::parse(text, "sweep.toml").unwrap();
//! let ids: Vec<String> = config.sweep_points().unwrap().into_iter().map(|p| p.id).collect();
//! assert_eq!(ids, ["dt=0.05_seed=0", "dt=0.05_seed=1", "dt=0.1_seed=0", "dt=0.1_seed=1"]);
//! ```

use std::collections::BTreeMap;

use crate::config::Config;
use crate::config::sweep::{Point, RandomPoints, Range};
use crate::util::error::{Error, Result};
use crate::util::rng::{Rng, Stream};

/// Where sweep errors point.
const FILE: &str = "[sweep]";

impl Config {
    /// Every point of `[sweep]` in order (see the module doc); empty without
    /// a `[sweep]` section.
    ///
    /// # Errors
    /// [`Error::Config`] naming the `[sweep]` key: an empty section or list,
    /// a value listed twice, a key that is no config key or is in `[run]` or
    /// `[sweep]`, a key both in the grid and drawn, a bad range.
    pub fn sweep_points(&self) -> Result<Vec<Point>> {
        let Some(sweep) = &self.sweep else { return Ok(vec![]) };
        let err = |key: &str, message: String| Error::Config { file: FILE.into(), key: key.into(), message };
        let draws = sweep.random.as_ref().map_or(Ok(vec![]), |r| draws(r, sweep.seed))?;
        if sweep.grid.is_empty() && draws.is_empty() {
            return Err(err(
                "sweep",
                "sweeps nothing: give `grid = { \"system.dt\" = [0.05, 0.1] }` and/or `random = { n = 10, \
                 \"train.lr\" = { log_uniform = [1e-4, 1e-2] } }`"
                    .into(),
            ));
        }
        let keys: Vec<&String> = sweep.grid.keys().chain(sweep.random.iter().flat_map(|r| r.ranges.keys())).collect();
        for key in &keys {
            let section = key.split('.').next().unwrap_or("");
            if section == "run" || section == "sweep" {
                return Err(err(key, "cannot be swept: a sweep point is one case of the base config".into()));
            }
        }
        if let Some(r) = &sweep.random
            && let Some(key) = r.ranges.keys().find(|k| sweep.grid.contains_key(*k))
        {
            return Err(err(key, "is both in the grid and drawn at random: keep one".into()));
        }
        for (key, values) in &sweep.grid {
            if values.is_empty() {
                return Err(err(&format!("sweep.grid.\"{key}\""), "lists no values".into()));
            }
            if let Some(v) = values.iter().enumerate().find_map(|(i, v)| values[..i].contains(v).then_some(v)) {
                return Err(err(&format!("sweep.grid.\"{key}\""), format!("lists {v} twice")));
            }
        }
        let short = short_names(&keys);
        let width = draws.len().saturating_sub(1).to_string().len();
        let mut points = vec![];
        for cell in grid_cells(&sweep.grid) {
            let grid_id: Vec<String> = cell.iter().map(|(k, v)| format!("{}={}", short[*k], id_text(v))).collect();
            let runs: Vec<Option<(usize, &BTreeMap<String, toml::Value>)>> =
                if draws.is_empty() { vec![None] } else { draws.iter().enumerate().map(Some).collect() };
            for run in runs {
                let mut values: BTreeMap<String, toml::Value> =
                    cell.iter().map(|(k, v)| ((*k).clone(), (*v).clone())).collect();
                let mut id = grid_id.clone();
                if let Some((j, draw)) = run {
                    values.extend(draw.iter().map(|(k, v)| (k.clone(), v.clone())));
                    id.push(format!("r{j:0width$}"));
                }
                points.push(Point { id: id.join("_"), values });
            }
        }
        if let Some(twice) =
            points.iter().enumerate().find_map(|(i, p)| points[..i].iter().any(|q| q.id == p.id).then_some(p))
        {
            return Err(err(
                "sweep.grid",
                format!("two points have the id `{}`: list values that read differently", twice.id),
            ));
        }
        Ok(points)
    }

    /// The config of one point: the base config with the point's keys set.
    ///
    /// # Errors
    /// [`Error::Config`] naming `sweep <id>: <key>` for a key that is not a
    /// config key, a value of the wrong type or a config that is not valid.
    pub fn point_config(&self, point: &Point) -> Result<Config> {
        self.with_keys(&point.id, &point.values, FILE, &|key| format!("sweep point {}: {key}", point.id))
    }
}

/// The grid's cells in order (last key fastest): for each, (key, value) per key.
fn grid_cells(grid: &BTreeMap<String, Vec<toml::Value>>) -> Vec<Vec<(&String, &toml::Value)>> {
    let mut cells: Vec<Vec<(&String, &toml::Value)>> = vec![vec![]];
    for (key, values) in grid {
        cells = cells
            .into_iter()
            .flat_map(|cell| values.iter().map(move |v| [cell.clone(), vec![(key, v)]].concat()))
            .collect();
    }
    cells
}

/// Each key's name in ids: its last part (`dt` for `system.dt`), or the
/// whole dotted name where two keys share the last part.
fn short_names<'a>(keys: &[&'a String]) -> BTreeMap<&'a String, String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    keys.iter()
        .map(|k| {
            let shared = keys.iter().filter(|o| last(o) == last(k)).count() > 1;
            (*k, if shared { (*k).clone() } else { last(k) })
        })
        .collect()
}

/// A value as it appears in an id: numbers, strings and booleans as
/// written, arrays as `lo-hi`; characters other than letters, digits and
/// `.+-` become `-`.
fn id_text(v: &toml::Value) -> String {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(id_text).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    };
    text.chars().map(|c| if c.is_ascii_alphanumeric() || ".+-".contains(c) { c } else { '-' }).collect()
}

/// The `n` random draws of `random`, from the sweep's own stream of `seed`.
fn draws(random: &RandomPoints, seed: u64) -> Result<Vec<BTreeMap<String, toml::Value>>> {
    let key = |k: &str| format!("sweep.random.\"{k}\"");
    if random.n == 0 {
        return Err(Error::Config {
            file: FILE.into(),
            key: "sweep.random.n".into(),
            message: "must be at least 1".into(),
        });
    }
    if random.ranges.is_empty() {
        return Err(Error::Config {
            file: FILE.into(),
            key: "sweep.random".into(),
            message: "draws no key: add one such as \"train.lr\" = { log_uniform = [1e-4, 1e-2] }".into(),
        });
    }
    let bounds: Vec<(&String, Bounds)> = random
        .ranges
        .iter()
        .map(|(k, r)| Ok((k, Bounds::of(r).map_err(|m| Error::Config { file: FILE.into(), key: key(k), message: m })?)))
        .collect::<Result<_>>()?;
    let mut rng = Rng::new(seed, Stream::Sweep);
    Ok((0..random.n).map(|_| bounds.iter().map(|(k, b)| ((*k).clone(), b.draw(&mut rng))).collect()).collect())
}

/// A checked range.
struct Bounds {
    lo: f64,
    hi: f64,
    log: bool,
    integer: bool,
}

impl Bounds {
    /// The bounds of `range`, or what is wrong with it.
    fn of(range: &Range) -> std::result::Result<Bounds, String> {
        let (values, log) = match range {
            Range::Uniform(v) => (v, false),
            Range::LogUniform(v) => (v, true),
        };
        let number = |v: &toml::Value| v.as_float().or_else(|| v.as_integer().map(|i| i as f64));
        let [lo, hi] = values.as_slice() else {
            return Err(format!("needs two bounds [lo, hi], got {} values", values.len()));
        };
        let (Some(l), Some(h)) = (number(lo), number(hi)) else {
            return Err(format!("bounds must be numbers, got [{lo}, {hi}]"));
        };
        if !(l.is_finite() && h.is_finite() && l <= h) {
            return Err(format!("needs finite bounds with lo ≤ hi, got [{lo}, {hi}]"));
        }
        if log && l <= 0.0 {
            return Err(format!("log_uniform needs lo > 0, got {lo}"));
        }
        Ok(Bounds { lo: l, hi: h, log, integer: lo.is_integer() && hi.is_integer() })
    }

    /// One value.
    fn draw(&self, rng: &mut Rng) -> toml::Value {
        let u = rng.uniform();
        if self.integer {
            let x = if self.log {
                (self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp().round()
            } else {
                (self.lo + (u * (self.hi - self.lo + 1.0)).floor()).min(self.hi)
            };
            return toml::Value::Integer(x as i64);
        }
        let x = if self.log {
            (self.lo.ln() + u * (self.hi.ln() - self.lo.ln())).exp()
        } else {
            self.lo + u * (self.hi - self.lo)
        };
        toml::Value::Float(x)
    }
}
