//! `physlens sweep`: one case per point of `[sweep]`, each in its own folder
//! `DIR/points/<id>/` (docs/sweeps.md).
//!
//! A point folder is a run folder (`config.toml`, the training and
//! evaluation files) plus `point.json` (its [`PointRecord`]) and `done`,
//! written last. Running the sweep again skips every point with `done`,
//! continues a point that has a saved training state and starts again one
//! that has none. A point whose run fails (training diverged, …) is recorded
//! as `failed` and the sweep goes on; Ctrl-C stops it with every running
//! point's state saved.
//!
//! Shards split the points between processes (`--shard i/n`, or a Slurm job
//! array): shard `i` of `n` owns points `i, i + n, …` and is the only writer
//! of their folders. Within one process, `jobs` points run at once, each on
//! a thread pool of its own (one core each when there are as many jobs as
//! cores); a point's weights do not depend on its pool's size.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::config::memory::Workload;
use crate::config::sweep::Point;
use crate::run::output::claim_output;
use crate::run::records::CaseSummary;
use crate::run::study::{ProgressFactory, run_case};
use crate::train::progress::Progress;
use crate::train::state::STATE_FILE;
use crate::util::cancel::CancelToken;
use crate::util::error::{Error, Result};
use crate::util::io::{read_json, write_json, write_text};
use crate::util::memory::available;

/// The sweep's resolved config, in its folder.
pub const SWEEP_FILE: &str = "sweep.toml";
/// The folder of the point folders.
pub const POINTS_DIR: &str = "points";
/// A point's record.
pub const POINT_FILE: &str = "point.json";
/// Written last in a finished point's folder.
pub const DONE_FILE: &str = "done";

/// The points one process runs: `index`, `index + count`, … (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// The number of shards.
    pub count: usize,
}

impl Shard {
    /// Every point.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Reads `i/n` (`--shard`).
    ///
    /// # Errors
    /// [`Error::Option`] `shard` unless `i` and `n` are whole numbers with `i < n`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || Error::Option {
            name: "shard".into(),
            message: format!("expected i/n with 0 ≤ i < n (e.g. 0/4 for the first of four shards), got `{text}`"),
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard of a Slurm job-array task, from `SLURM_ARRAY_TASK_ID`,
    /// `SLURM_ARRAY_TASK_COUNT` and `SLURM_ARRAY_TASK_MIN` (the first task's
    /// id, 0 when unset) read through `var`; `None` outside a job array.
    ///
    /// # Errors
    /// [`Error::Option`] naming the variable when one is set but not a whole
    /// number, or the task is not one of `COUNT` consecutive ids.
    pub fn from_slurm(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let (Some(id), Some(count)) = (var("SLURM_ARRAY_TASK_ID"), var("SLURM_ARRAY_TASK_COUNT")) else {
            return Ok(None);
        };
        let number = |name: &str, text: &str| {
            text.trim().parse::<usize>().map_err(|_| Error::Option {
                name: name.into(),
                message: format!("expected a whole number, got `{text}`"),
            })
        };
        let min = var("SLURM_ARRAY_TASK_MIN").map_or(Ok(0), |m| number("SLURM_ARRAY_TASK_MIN", &m))?;
        let (id, count) = (number("SLURM_ARRAY_TASK_ID", &id)?, number("SLURM_ARRAY_TASK_COUNT", &count)?);
        match id.checked_sub(min) {
            Some(index) if index < count => Ok(Some(Shard { index, count })),
            _ => Err(Error::Option {
                name: "SLURM_ARRAY_TASK_ID".into(),
                message: format!(
                    "task {id} is not one of {count} consecutive tasks from {min}: submit the sweep as \
                     `--array=0-{}` (one shard per task; no step or list)",
                    count.saturating_sub(1)
                ),
            }),
        }
    }

    /// True if this shard owns point `i`.
    pub fn owns(self, i: usize) -> bool {
        i % self.count == self.index
    }
}

/// `point.json`: how a point ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointRecord {
    /// The point's id.
    pub id: String,
    /// Dotted key → value of every swept key.
    pub values: BTreeMap<String, toml::Value>,
    /// `ok` or `failed`.
    pub status: String,
    /// Why it failed (`null` when ok).
    pub error: Option<String>,
    /// Wall time of the run that finished the point, in seconds (training,
    /// evaluation, interpretation).
    pub wall_s: f64,
    /// True if that run continued a saved training state.
    pub resumed: bool,
    /// The model's parameter count.
    pub n_params: usize,
    /// The case's headline numbers (as in `summary.json`); `null` when failed.
    pub summary: Option<CaseSummary>,
}

/// How a sweep runs in this process.
#[derive(Clone, Copy, Debug)]
pub struct SweepOptions {
    /// The points this process owns.
    pub shard: Shard,
    /// Points run at once; `None`: one per core, fewer if memory is short.
    pub jobs: Option<usize>,
    /// Run again the points that failed before (otherwise they are skipped).
    pub retry_failed: bool,
}

/// What one invocation of [`run_sweep`] did.
#[derive(Clone, Debug)]
pub struct SweepOutcome {
    /// Points of the whole sweep.
    pub points: usize,
    /// Points this shard owns.
    pub owned: usize,
    /// Owned points finished before this run (skipped), of which failed.
    pub done_before: usize,
    /// Of `done_before`, the failed ones (skipped unless `retry_failed`).
    pub failed_before: usize,
    /// Points run to the end now, in point order.
    pub finished: Vec<PointRecord>,
    /// Points run at once.
    pub jobs: usize,
}

/// The folder of point `id` in the sweep folder `out`.
pub fn point_dir(out: &Path, id: &str) -> PathBuf {
    out.join(POINTS_DIR).join(id)
}

/// The sweep config of the sweep folder `out` (its `sweep.toml`).
///
/// # Errors
/// [`Error::Input`] if `out` is not a sweep folder; as [`Config::from_file`].
pub fn open_sweep(out: &Path) -> Result<Config> {
    let path = out.join(SWEEP_FILE);
    if !path.is_file() {
        let message = if out.is_dir() {
            "not a sweep folder: it has no sweep.toml (expected a folder written by `physlens sweep --out DIR`)"
        } else {
            "no such folder"
        };
        return Err(Error::Input { file: out.into(), message: message.into() });
    }
    Config::from_file(&path)
}

/// Runs the points of `config`'s `[sweep]` that `opts.shard` owns into
/// `out/points/<id>/` (see the module doc).
///
/// # Errors
/// [`Error::Input`] if `config` has no `[sweep]` or `out` holds another
/// sweep or a run; [`Error::Config`] if one point needs more memory than
/// the machine has; [`Error::Interrupted`] after Ctrl-C (every finished
/// point is kept, every running one saved); [`Error::Io`].
pub fn run_sweep(
    config: &Config,
    out: &Path,
    opts: &SweepOptions,
    progress: &ProgressFactory<'_>,
    cancel: &CancelToken,
) -> Result<SweepOutcome> {
    let points = config.sweep_points()?;
    if points.is_empty() {
        return Err(Error::Input {
            file: out.into(),
            message: "the config has no [sweep] section: nothing to sweep (`physlens run` runs one study)".into(),
        });
    }
    claim_sweep(config, out)?;
    let owned: Vec<(usize, &Point)> = points.iter().enumerate().filter(|(i, _)| opts.shard.owns(*i)).collect();
    let mut pending = vec![];
    let (mut done_before, mut failed_before) = (0, 0);
    for &(i, point) in &owned {
        let dir = point_dir(out, &point.id);
        match finished_record(&dir)? {
            Some(r) if r.status == "failed" && opts.retry_failed => {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                pending.push(i);
            }
            Some(r) => {
                done_before += 1;
                failed_before += usize::from(r.status == "failed");
            }
            None => pending.push(i),
        }
    }
    let configs: Vec<Config> = points.iter().map(|p| config.point_config(p)).collect::<Result<_>>()?;
    let jobs = job_count(&configs, &pending, opts.jobs)?;
    let finished = run_pending(&configs, &points, &pending, out, jobs, progress, cancel)?;
    if cancel.is_cancelled() {
        return Err(Error::Interrupted(format!(
            "sweep stopped: {} of {} points of this shard finished; every running point saved its state. Run the \
             same command again to continue",
            done_before + finished.len(),
            owned.len()
        )));
    }
    Ok(SweepOutcome { points: points.len(), owned: owned.len(), done_before, failed_before, finished, jobs })
}

/// Makes `out` the folder of this sweep: a new folder gets `sweep.toml`; one
/// with the same `sweep.toml` is continued; anything else is refused.
fn claim_sweep(config: &Config, out: &Path) -> Result<()> {
    let path = out.join(SWEEP_FILE);
    if path.is_file() {
        let earlier = Config::from_file(&path)?;
        if earlier != *config {
            return Err(Error::Input {
                file: out.into(),
                message: "holds another sweep: its sweep.toml differs from this config (a folder never holds the \
                          outputs of two runs); choose another --out, or run the config in sweep.toml to continue \
                          that sweep"
                    .into(),
            });
        }
        return Ok(());
    }
    claim_output(out, false)?;
    write_text(&path, &config.to_toml())
}

/// The record of the point folder `dir` if the point finished (`done`
/// present), or `None`.
///
/// # Errors
/// [`Error::Input`] for a `point.json` that is missing or malformed.
pub fn finished_record(dir: &Path) -> Result<Option<PointRecord>> {
    if !dir.join(DONE_FILE).is_file() {
        return Ok(None);
    }
    read_json(&dir.join(POINT_FILE)).map(Some)
}

/// Points to run at once: `requested`, or one per core; never more than the
/// pending points nor than the memory holds.
fn job_count(configs: &[Config], pending: &[usize], requested: Option<usize>) -> Result<usize> {
    let bytes = |i: usize| configs[i].memory_estimate(Workload::Study).total();
    let Some(largest) = pending.iter().copied().max_by_key(|&i| bytes(i)) else { return Ok(1) };
    let c = &configs[largest];
    c.check_memory(Workload::Study, &format!("[sweep] point {}", c.run.cases[0].name))?;
    let room = available().bytes.get() / bytes(largest).get().max(1);
    let wanted = requested.unwrap_or_else(rayon::current_num_threads);
    Ok(wanted.min(pending.len()).min(usize::try_from(room).unwrap_or(usize::MAX)).max(1))
}

/// Runs the points `pending` (indices into `configs`), `jobs` at once, and
/// returns the records of those that ended (ok or failed), in point order.
fn run_pending(
    configs: &[Config],
    points: &[Point],
    pending: &[usize],
    out: &Path,
    jobs: usize,
    progress: &ProgressFactory<'_>,
    cancel: &CancelToken,
) -> Result<Vec<PointRecord>> {
    let threads = (rayon::current_num_threads() / jobs).max(1);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(vec![]);
    let worker = || -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::io(out, std::io::Error::other(e)))?;
        loop {
            let k = next.fetch_add(1, Ordering::SeqCst);
            if k >= pending.len() || cancel.is_cancelled() {
                return Ok(());
            }
            let i = pending[k];
            let line = progress(&points[i].id, configs[i].train.steps);
            let dir = point_dir(out, &points[i].id);
            match pool.install(|| run_point(&configs[i], &points[i], &dir, line.as_ref(), cancel)) {
                Ok(record) => {
                    line.finish(&outcome_words(&record));
                    results.lock().expect("no worker panics").push((i, record));
                }
                Err(Error::Interrupted(m)) => line.finish(&format!("interrupted: {m}")),
                Err(e) => return Err(e),
            }
        }
    };
    let ends: Vec<Result<()>> =
        std::thread::scope(|s| (0..jobs).map(|_| s.spawn(worker)).collect::<Vec<_>>().into_iter().map(join).collect());
    ends.into_iter().collect::<Result<()>>()?;
    let mut records = results.into_inner().expect("no worker panics");
    records.sort_by_key(|(i, _)| *i);
    Ok(records.into_iter().map(|(_, r)| r).collect())
}

/// The result of a worker thread (a panic is re-raised: it is a bug).
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// One point from wherever it stopped: done with a record, or
/// [`Error::Interrupted`] (state saved), or another error that is not the
/// point's own (a file that cannot be written).
fn run_point(
    config: &Config,
    point: &Point,
    dir: &Path,
    progress: &dyn Progress,
    cancel: &CancelToken,
) -> Result<PointRecord> {
    let resume = dir.join(STATE_FILE).is_file();
    if !resume && dir.exists() {
        // Stopped before its first saved state (or a failure being retried): start again.
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let start = Instant::now();
    let result = run_case(config, dir, progress, cancel, resume);
    let (summary, error) = match result {
        Ok(summary) => (Some(summary), None),
        Err(e @ Error::Interrupted(_)) => return Err(e),
        Err(e) => (None, Some(e.to_string())),
    };
    let record = PointRecord {
        id: point.id.clone(),
        values: point.values.clone(),
        status: if error.is_none() { "ok" } else { "failed" }.into(),
        error,
        wall_s: start.elapsed().as_secs_f64(),
        resumed: resume,
        n_params: config.model_config().parameter_count().unwrap_or(0),
        summary,
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_json(&dir.join(POINT_FILE), &record)?;
    write_text(&dir.join(DONE_FILE), "")?;
    Ok(record)
}

/// A point's outcome in one line.
fn outcome_words(r: &PointRecord) -> String {
    match (&r.summary, &r.error) {
        (Some(s), _) => {
            let ic = s
                .in_context
                .as_ref()
                .map_or(String::new(), |ic| format!(", in context {:.2e}", ic.median_rel_err_last));
            format!(
                "ok in {:.1}s: valid MSE {:.2e}, rollout {:.2e}{ic}",
                r.wall_s, s.valid_mse, s.rollout.median_rel_err_final
            )
        }
        (None, e) => format!("failed: {}", e.as_deref().unwrap_or("unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_array_tasks_map_to_shards_from_the_first_task_id() {
        let env = |id: &str, count: &str, min: Option<&str>| {
            let vars: Vec<(&str, String)> = [("SLURM_ARRAY_TASK_ID", id), ("SLURM_ARRAY_TASK_COUNT", count)]
                .into_iter()
                .chain(min.map(|m| ("SLURM_ARRAY_TASK_MIN", m)))
                .map(|(k, v)| (k, v.to_string()))
                .collect();
            Shard::from_slurm(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
        };
        assert_eq!(env("2", "3", None).unwrap(), Some(Shard { index: 2, count: 3 }));
        assert_eq!(env("8", "8", Some("1")).unwrap(), Some(Shard { index: 7, count: 8 }));
        assert!(env("0", "8", Some("1")).is_err());
        assert!(env("3", "3", None).is_err());
        assert!(env("x", "3", None).unwrap_err().to_string().contains("SLURM_ARRAY_TASK_ID"));
        assert_eq!(Shard::from_slurm(|_| None).unwrap(), None);
        assert_eq!(Shard::parse(" 1 / 4").unwrap(), Shard { index: 1, count: 4 });
        let owned: Vec<usize> = (0..10).filter(|&i| Shard { index: 1, count: 4 }.owns(i)).collect();
        assert_eq!(owned, [1, 5, 9]);
    }
}
