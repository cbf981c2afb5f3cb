//! Activation patching and ablation (`physlens patch`, docs/cli.md): causal
//! tests of what a continuous model computes. Run a sequence with parameters
//! a, replace one activation — the residual stream entering a layer at one
//! position, one head's output, one MLP's output — by its value in a
//! sequence with parameters b that starts from the same energy and phase,
//! and measure how far a's last prediction moves toward b's (0 no effect,
//! 1 fully b's). Zero- and mean-ablate each head and MLP and measure the
//! change in the median relative error.
//!
//! The clean runs are computed once and cached; a patched run recomputes only
//! what follows the patched site ([`crate::model::resume`]). All of it runs
//! on the f64 copy of the weights.
//!
//! ```text
//! site.rs     what can be patched, and rerunning a cached pass with it overwritten
//! pairs.rs    the pairs of sequences (drawn from the training ranges, or --a/--b)
//! effects.rs  prediction_shift and delta_norm per site and position, heat maps
//! implied.rs the implied-ω0 shift: does a patch carry the dynamics?
//! ablate.rs   zero- and mean-ablation
//! report.rs   the whole report, its files and its readable summary
//! ```

pub mod ablate;
pub mod effects;
pub mod implied;
pub mod pairs;
pub mod report;
pub mod site;

pub use ablate::{AblationEffect, Ablations, ablated_last_predictions, ablations, site_means};
pub use effects::{Effect, Effects, Heatmap, heatmaps, patch_deltas, patch_effects};
pub use pairs::{DEFAULT_PAIRS, PairOptions, PairSource, Pairs, ParamSet, make_pairs};
pub use report::{PairsInfo, PatchOptions, PatchReport, patch_checkpoint, patch_file};
pub use site::{Site, last_predictions, rerun, sites};
