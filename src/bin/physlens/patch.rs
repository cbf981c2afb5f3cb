//! `physlens patch`: flags in, the library's activation patching called, the
//! largest effects (or the JSON) out, and the files with `--out`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use physlens::interpret::patch::{PairOptions, ParamSet, PatchOptions, patch_file};
use physlens::util::error::Error;

/// `physlens patch`'s flags.
#[derive(Args, Debug)]
pub struct PatchArgs {
    /// A .safetensors checkpoint.
    #[arg(long)]
    model: PathBuf,
    /// Print the JSON object (`effects`, `heatmaps`, `pairs` and `ablation`; docs/outputs.md) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Folder for patch.json, effects.csv and ablation.csv.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Pairs of sequences [default: 64 drawn from the training ranges; with --a/--b one pair at energy 1,
    /// phase 0].
    #[arg(long, value_name = "N")]
    pairs: Option<usize>,
    /// Run a's parameters, e.g. omega0=2,gamma=0.1 (dt too; missing ones: the checkpoint's value or the middle
    /// of its range); needs --b.
    #[arg(long, value_name = "omega0=..,gamma=..", allow_hyphen_values = true)]
    a: Option<String>,
    /// Run b's parameters, whose activations are patched into run a.
    #[arg(long, value_name = "omega0=..,gamma=..", allow_hyphen_values = true)]
    b: Option<String>,
    /// Activations to patch (comma-separated): resid_pre, resid_post, attn.result, mlp_out or full names such as
    /// blocks.1.attn.result [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    activations: Vec<String>,
    /// Validation sequences for the zero- and mean-ablations (0: none).
    #[arg(long, default_value_t = 1024)]
    n_valid: usize,
    /// Largest energy of the drawn pairs and validation sequences [default: the energies the checkpoint was
    /// validated on, else 4].
    #[arg(long)]
    e_max: Option<f64>,
    /// Seed of the pairs and validation sequences.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs `physlens patch`.
pub fn execute(args: PatchArgs) -> Result<()> {
    run(args).map_err(|e| match e {
        Error::Option { name, message } => Error::Option { name: flag(&name).into(), message },
        other => other,
    })?;
    Ok(())
}

fn run(args: PatchArgs) -> Result<(), Error> {
    let parse = |text: &Option<String>, option: &str| text.as_deref().map(|t| ParamSet::parse(t, option)).transpose();
    let options = PatchOptions {
        pairs: PairOptions {
            pairs: args.pairs,
            a: parse(&args.a, "a")?,
            b: parse(&args.b, "b")?,
            seed: args.seed,
            ..PairOptions::default()
        },
        activations: args.activations,
        n_valid: args.n_valid,
    };
    let report = patch_file(&args.model, &options, args.e_max)?;
    let files = match &args.out {
        Some(dir) => report.write(dir)?,
        None => vec![],
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| Error::Input {
                file: args.model.clone(),
                message: format!("cannot encode the report: {e}"),
            })?
        );
    } else {
        print!("{}", report.text(12));
        for f in files {
            println!("wrote {}", f.display());
        }
    }
    Ok(())
}

/// The flag each library option comes from.
fn flag(option: &str) -> &str {
    match option {
        "pairs" => "--pairs",
        "a" => "--a",
        "b" => "--b",
        "e_max" => "--e-max",
        "activations" => "--activations",
        "n_valid" => "--n-valid",
        other => other,
    }
}
