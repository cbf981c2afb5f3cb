//! `physlens sweep` and `physlens sweep collect`: flags in, the library's
//! sweep and collection called, one line per point and a summary out.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Subcommand};
use physlens::config::Config;
use physlens::config::sweep::value_text;
use physlens::report::build::build_report;
use physlens::report::sweep::{CollectOutcome, collect};
use physlens::run::sweep::{Shard, SweepOptions, point_dir, run_sweep};
use physlens::train::progress::Progress;
use physlens::util::error::Error;

use crate::interrupt;
use crate::progress::ProgressGroup;

/// `physlens sweep`'s flags.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// A config with a [sweep] section (docs/sweeps.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sweep folder [default: runs/<config name>]; running again continues it.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run only points i, i + n, … (0-based i/n) [default: from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT
    /// when set, else every point].
    #[arg(long, value_name = "i/n")]
    shard: Option<String>,
    /// Print the points (id, then key=value for each swept key, tab-separated) and exit.
    #[arg(long)]
    list: bool,
    /// Points run at once [default: one per core, fewer if memory is short].
    #[arg(long)]
    jobs: Option<usize>,
    /// Run again the points that failed in an earlier run (otherwise skipped).
    #[arg(long)]
    retry_failed: bool,
    /// Also write each point's report (report.html and figures in its folder).
    #[arg(long)]
    report: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand, Debug)]
enum SweepAction {
    /// Gather a sweep folder's points into DIR/sweep.csv and DIR/sweep.html (missing points are named).
    Collect {
        /// A folder written by `physlens sweep --out DIR` (one shard's or all).
        dir: PathBuf,
    },
}

/// Runs `physlens sweep …`.
pub fn execute(args: SweepArgs) -> Result<()> {
    if let Some(SweepAction::Collect { dir }) = args.action {
        print_collected(&collect(&dir)?);
        return Ok(());
    }
    let Some(path) = args.config else {
        let message = "needs --config FILE (a config with a [sweep] section), or `physlens sweep collect DIR`";
        return Err(Error::Option { name: "config".into(), message: message.into() }.into());
    };
    let config = Config::from_file(&path)?;
    let points = config.sweep_points()?;
    if points.is_empty() {
        let message = "has no [sweep] section: nothing to sweep (docs/sweeps.md; `physlens run` runs one study)";
        return Err(Error::Input { file: path, message: message.into() }.into());
    }
    if args.list {
        let mut stdout = std::io::stdout().lock();
        for p in &points {
            let values: Vec<String> = p.values.iter().map(|(k, v)| format!("{k}={}", value_text(v))).collect();
            // A closed pipe (`--list | head`) ends the list quietly.
            if writeln!(stdout, "{}\t{}", p.id, values.join("\t")).is_err() {
                break;
            }
        }
        return Ok(());
    }
    let shard = match &args.shard {
        Some(text) => Shard::parse(text)?,
        None => Shard::from_slurm(|name| std::env::var(name).ok())?.unwrap_or(Shard::WHOLE),
    };
    let out = args.out.unwrap_or_else(|| Path::new("runs").join(path.file_stem().unwrap_or_default()));
    let group = ProgressGroup::new(args.quiet).finish_lines_only();
    let lines = |name: &str, steps: u64| Box::new(group.add(name, steps)) as Box<dyn Progress>;
    let cancel = interrupt::cancel_on_ctrl_c();
    let opts = SweepOptions { shard, jobs: args.jobs, retry_failed: args.retry_failed };
    let outcome = run_sweep(&config, &out, &opts, &lines, &cancel)?;
    let failed: Vec<&str> = outcome.finished.iter().filter(|r| r.status == "failed").map(|r| r.id.as_str()).collect();
    println!(
        "sweep of {} points{}: {} run now ({} ok, {} failed), {} finished before{}; {} at once",
        outcome.points,
        if shard == Shard::WHOLE {
            String::new()
        } else {
            format!(", shard {}/{} owns {}", shard.index, shard.count, outcome.owned)
        },
        outcome.finished.len(),
        outcome.finished.len() - failed.len(),
        failed.len(),
        outcome.done_before,
        match outcome.failed_before {
            0 => String::new(),
            n => format!(" ({n} of them failed: --retry-failed runs them again)"),
        },
        outcome.jobs
    );
    if !failed.is_empty() {
        println!("failed: {} (the reason is in each point.json)", failed.join(", "));
    }
    if args.report {
        for r in outcome.finished.iter().filter(|r| r.status == "ok") {
            build_report(&point_dir(&out, &r.id))?;
        }
        println!("wrote report.html in each point folder that finished now");
    }
    if shard == Shard::WHOLE {
        print_collected(&collect(&out)?);
    } else {
        println!("when every shard has finished: physlens sweep collect {}", out.display());
    }
    Ok(())
}

fn print_collected(c: &CollectOutcome) {
    let (ok, failed, missing) = (c.ids_with("ok"), c.ids_with("failed"), c.ids_with("missing"));
    println!("points: {} ok, {} failed, {} missing", ok.len(), failed.len(), missing.len());
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(20).copied().collect();
        let more = if missing.len() > shown.len() {
            format!(" and {} more", missing.len() - shown.len())
        } else {
            String::new()
        };
        println!("missing: {}{more}", shown.join(", "));
    }
    println!("wrote {} and {}", c.csv.display(), c.html.display());
}
