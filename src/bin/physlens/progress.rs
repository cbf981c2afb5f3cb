//! Progress output that survives a pipe: a live bar on a terminal, a plain
//! line every tenth of the run otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use physlens::train::progress::Progress;

/// One progress line: a bar on a terminal, a plain line every tenth of the run otherwise.
#[derive(Debug)]
pub struct Line {
    name: String,
    total: u64,
    bar: Option<ProgressBar>,
    printed_tenths: AtomicU64,
}

/// A group of [`Line`]s shown together (one per case of `run`).
#[derive(Debug)]
pub struct ProgressGroup {
    multi: Option<MultiProgress>,
    piped_updates: bool,
}

impl ProgressGroup {
    /// Bars when stderr is a terminal and `quiet` is false; plain lines when
    /// piped; nothing at all when `quiet`.
    pub fn new(quiet: bool) -> Self {
        let multi = if quiet {
            Some(MultiProgress::with_draw_target(ProgressDrawTarget::hidden()))
        } else {
            std::io::stderr().is_terminal().then(MultiProgress::new)
        };
        ProgressGroup { multi, piped_updates: true }
    }

    /// The same group, but when piped its lines print only their outcome
    /// (a sweep's hundreds of points would otherwise print ten lines each).
    pub fn finish_lines_only(self) -> Self {
        ProgressGroup { piped_updates: false, ..self }
    }

    /// A progress line for a run called `name` of `total` steps.
    pub fn add(&self, name: &str, total: u64) -> Line {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {elapsed_precise} {msg}")
                    .expect("template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        // u64::MAX: no tenth is ever past it, so no plain line is printed before the outcome.
        let printed_tenths = AtomicU64::new(if self.piped_updates { 0 } else { u64::MAX });
        Line { name: name.into(), total, bar, printed_tenths }
    }
}

impl Progress for Line {
    fn update(&self, step: u64, train_loss: f64, valid_mse: f64, elapsed: f64) {
        let msg = format!("loss {train_loss:.3e}  valid {valid_mse:.3e}");
        match &self.bar {
            Some(bar) => {
                bar.set_position(step);
                bar.set_message(msg);
            }
            None => {
                let tenth = step * 10 / self.total.max(1);
                if tenth > self.printed_tenths.fetch_max(tenth, Ordering::Relaxed) {
                    eprintln!("{:>10}  step {step}/{}  {msg}  {elapsed:.1}s", self.name, self.total);
                }
            }
        }
    }

    fn finish(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(message.to_string()),
            None => eprintln!("{:>10}  {message}", self.name),
        }
    }
}
