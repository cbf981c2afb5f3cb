//! The typed run configuration (docs/config.md): TOML in, every key defaulted,
//! unknown keys rejected with the nearest valid key suggested, values checked
//! with the culprit named; [`memory`] refuses what the machine cannot hold.

pub mod cases;
pub mod memory;
pub mod points;
pub mod sweep;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::sweep::SweepSection;
use crate::data::Sampler;
use crate::model::{Act, AttnScale, LossPositions, ModelConfig};
use crate::physics::SystemSpec;
use crate::util::error::{Error, Result};
use crate::util::real::Dtype;

/// `[data]`: how states are sampled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Training energies are uniform on `[0, e_train_max]`.
    pub e_train_max: f64,
    /// Validation energies are uniform on `[0, e_valid_max]` (extrapolation when larger).
    pub e_valid_max: f64,
    /// Size of the fixed training set; 0 draws fresh samples every step.
    pub n_train: usize,
    /// Size of the validation set.
    pub n_valid: usize,
    /// Tokens per sequence (the model's n_ctx).
    pub context: usize,
    /// Observation noise: Gaussian noise of standard deviation
    /// `noise · sqrt(2E)` on each input coordinate (targets stay clean).
    pub noise: f64,
}

/// `[model]`: the architecture (n_ctx comes from `data.context`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Residual stream width.
    pub d_model: usize,
    /// Heads per layer.
    pub n_heads: usize,
    /// Width of each head.
    pub d_head: usize,
    /// Layers (attention, then the MLP block when `d_mlp > 0`).
    pub n_layers: usize,
    /// Hidden width of each layer's MLP block; 0 (the default): attention only.
    pub d_mlp: usize,
    /// `"gelu"` (exact, erf form) or `"relu"`: the MLP activation.
    pub act: Act,
    /// `"d_model"` or `"d_head"`.
    pub attn_scale: AttnScale,
    /// Causal mask.
    pub causal: bool,
    /// Learned positional embeddings.
    pub positional: bool,
}

/// `[train]`: optimisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub lr_min: f64,
    /// `"cosine"` or `"constant"`.
    pub schedule: Schedule,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// The one seed behind every random source.
    pub seed: u64,
    /// `"f32"` or `"f64"`.
    pub dtype: Dtype,
    /// Steps between metrics rows (validation MSE is computed at each).
    pub log_every: u64,
    /// Steps between checkpoints written during training.
    pub checkpoint_every: u64,
    /// Stop early once the validation MSE has stayed at the dtype's rounding
    /// floor (`ε² · mean ‖s‖²` of the validation targets) for `floor_patience` steps.
    pub stop_at_floor: bool,
    /// Steps the validation MSE must stay at or below the floor before the stop.
    pub floor_patience: u64,
    /// `"all"` or `"last"`: the positions scored by the loss. When a file
    /// does not set it, [`Config::parse`] resolves it from `model.causal`
    /// (all with the mask, the last without it); `None` only in configs built
    /// in code, where [`ModelConfig::scored_positions`] does the same.
    pub loss_positions: Option<LossPositions>,
}

/// `[eval]`: evaluation after training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Autoregressive steps per rollout.
    pub rollout_steps: usize,
    /// Trajectories rolled out (initial energies uniform on `[0, e_valid_max]`).
    pub n_rollouts: usize,
}

/// How the learning rate moves from `lr` over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` throughout.
    Constant,
    /// Half a cosine from `lr` at step 0 to `lr_min` at the last step.
    Cosine,
}

impl Schedule {
    /// The learning rate for step `step` (0-based) of `steps`.
    pub fn lr(self, step: u64, steps: u64, lr: f64, lr_min: f64) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let frac = step as f64 / steps.max(1) as f64;
                lr_min + (lr - lr_min) * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())
            }
        }
    }
}

/// One case: a folder name and the keys it sets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// Folder name under the run's output folder.
    pub name: String,
    /// Config keys this case sets, by dotted name (`"system.gamma"`,
    /// `"model.n_layers"`); `gamma` alone is read as `system.gamma`.
    #[serde(flatten)]
    pub overrides: BTreeMap<String, toml::Value>,
}

impl Case {
    /// The case `name` with the keys `overrides` (dotted name, value).
    pub fn new(name: &str, overrides: &[(&str, toml::Value)]) -> Case {
        let overrides = overrides.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        Case { name: name.into(), overrides }
    }

    /// The case with `gamma` renamed to `system.gamma` (the first version's
    /// only override).
    pub(crate) fn normalised(mut self) -> Case {
        if let Some(gamma) = self.overrides.remove("gamma") {
            self.overrides.entry("system.gamma".into()).or_insert(gamma);
        }
        self
    }
}

/// `[run]`: the cases `physlens run` trains side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Default: the seed's `undamped` (`system.gamma` = 0) and `damped` (0.1).
    pub cases: Vec<Case>,
}

/// A whole configuration file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[system]`: each parameter fixed or drawn per sequence.
    pub system: SystemSpec,
    /// `[data]`.
    pub data: DataConfig,
    /// `[model]`.
    pub model: ModelSection,
    /// `[train]`.
    pub train: TrainConfig,
    /// `[eval]`.
    pub eval: EvalConfig,
    /// `[run]`.
    pub run: RunConfig,
    /// `[sweep]`: the points of `physlens sweep` (docs/sweeps.md); a file
    /// with it is a sweep file, which `run` and `train` refuse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSection>,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig { e_train_max: 1.0, e_valid_max: 4.0, n_train: 100_000, n_valid: 4096, context: 1, noise: 0.0 }
    }
}

impl Default for ModelSection {
    fn default() -> Self {
        let m = ModelConfig::seed();
        ModelSection {
            d_model: m.d_model,
            n_heads: m.n_heads,
            d_head: m.d_head,
            n_layers: m.n_layers,
            d_mlp: m.d_mlp,
            act: m.act,
            attn_scale: m.attn_scale,
            causal: m.causal,
            positional: m.positional,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 40_000,
            batch_size: 256,
            lr: 1e-3,
            lr_min: 0.0,
            schedule: Schedule::Cosine,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            seed: 0,
            dtype: Dtype::F32,
            log_every: 500,
            checkpoint_every: 5000,
            stop_at_floor: false,
            floor_patience: 500,
            loss_positions: Some(LossPositions::All),
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig { rollout_steps: 200, n_rollouts: 64 }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            cases: vec![
                Case::new("undamped", &[("system.gamma", toml::Value::Float(0.0))]),
                Case::new("damped", &[("system.gamma", toml::Value::Float(0.1))]),
            ],
        }
    }
}

impl Config {
    /// Reads and validates a config file. `file` names the source in errors.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Input { file: path.into(), message: format!("cannot read the config file: {e}") })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config> {
        let err = |key: &str, message: String| Error::Config { file: file.into(), key: key.into(), message };
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| line_column(text, span.start)).unwrap_or_default();
            err("(syntax)", format!("{at}{}", e.message().trim()))
        })?;
        let mut known = toml::Table::try_from(Config::default()).expect("defaults serialise");
        // `[sweep]` names config keys as its own keys: its type checks them (config/sweep.rs).
        known.insert("sweep".into(), toml::Value::String("checked by SweepSection".into()));
        check_keys(&table, &known, "", &err)?;
        if table.contains_key("sweep") && table.contains_key("run") {
            return Err(err(
                "run",
                "a sweep file has no [run] section: each point of [sweep] is one case of the base config".into(),
            ));
        }
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|span| key_at(text, span.start)).unwrap_or_else(|| "(value)".into());
            err(&key, e.message().trim().to_string())
        })?;
        // Unset, the scored positions follow the mask (all with it, the last without it).
        if table.get("train").and_then(|t| t.get("loss_positions")).is_none() {
            config.train.loss_positions = Some(LossPositions::following(config.model.causal));
        }
        config.run.cases = std::mem::take(&mut config.run.cases).into_iter().map(Case::normalised).collect();
        config.validate(file)?;
        Ok(config)
    }

    /// The resolved config (every key; no `[run]` in a sweep file) as TOML text.
    pub fn to_toml(&self) -> String {
        if self.sweep.is_none() {
            return toml::to_string_pretty(self).expect("config serialises");
        }
        // A sweep file has no [run]: each point is one case.
        let mut table = toml::Table::try_from(self).expect("config serialises");
        table.remove("run");
        toml::to_string_pretty(&table).expect("config serialises")
    }

    /// The model architecture this config describes.
    pub fn model_config(&self) -> ModelConfig {
        let m = &self.model;
        ModelConfig {
            d_model: m.d_model,
            n_heads: m.n_heads,
            d_head: m.d_head,
            n_layers: m.n_layers,
            d_mlp: m.d_mlp,
            act: m.act,
            n_ctx: self.data.context,
            attn_scale: m.attn_scale,
            causal: m.causal,
            positional: m.positional,
            loss_positions: self.train.loss_positions,
        }
    }

    /// How this config's sequences are drawn, with energies up to `e_max`.
    pub fn sampler(&self, e_max: f64) -> Sampler {
        Sampler::new(&self.system, e_max, self.data.noise, self.data.context)
    }

    /// Notes on what a config file's text leaves implicit, for `physlens
    /// train` (`study` false) or `physlens run` (`study` true): a file that
    /// sets no key runs on the defaults; `[system] gamma` is not used by a
    /// study, whose cases set their own γ. Empty for text that does not parse.
    pub fn notes(text: &str, study: bool) -> Vec<String> {
        let Ok(table) = toml::from_str::<toml::Table>(text) else { return vec![] };
        let mut out = vec![];
        if table.is_empty() {
            out.push("the config sets no keys: every key takes its default (docs/config.md lists them)".into());
        }
        let gamma = table.get("system").and_then(|s| s.get("gamma"));
        let cases = table.get("run").and_then(|r| r.get("cases")).and_then(toml::Value::as_array);
        let sets_gamma = |case: &toml::Value| ["gamma", "system.gamma"].iter().any(|k| case.get(k).is_some());
        let all_set_gamma = cases.is_none_or(|cases| cases.iter().all(sets_gamma));
        if let (true, true, Some(gamma)) = (study, all_set_gamma, gamma) {
            out.push(format!(
                "[system] gamma = {gamma} is not used by `physlens run`: each case of [run] cases sets its own \
                 system.gamma (the default cases: 0 and 0.1); set it per case, or use `physlens train`"
            ));
        }
        out
    }

    /// Warnings that do not stop a run (e.g. validation energies inside the training range).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = vec![];
        if self.data.e_valid_max < self.data.e_train_max {
            out.push(format!(
                "data.e_valid_max = {} is below data.e_train_max = {}: validation will not test extrapolation",
                self.data.e_valid_max, self.data.e_train_max
            ));
        }
        out
    }

    /// Checks every value and every case; the error names the key and what
    /// is accepted.
    pub fn validate(&self, file: &str) -> Result<()> {
        self.validate_fields(file)?;
        self.validate_cases(file)?;
        let in_file = |e: Error| match e {
            Error::Config { key, message, .. } => Error::Config { file: file.into(), key, message },
            other => other,
        };
        for point in self.sweep_points().map_err(in_file)? {
            self.point_config(&point).map_err(in_file)?;
        }
        Ok(())
    }

    /// Checks every value but the cases.
    fn validate_fields(&self, file: &str) -> Result<()> {
        let err = |key: &str, message: String| Err(Error::Config { file: file.into(), key: key.into(), message });
        if let Some(bad) = self.system.invalid() {
            return err(&format!("system.{}", bad.field), format!("{}, got {}", bad.message, bad.value));
        }
        if !self.model.causal && self.train.loss_positions == Some(LossPositions::All) {
            return err(
                "train.loss_positions",
                "\"all\" needs model.causal = true: without the causal mask, position t attends to token t + 1, \
                 which is its own target, so the loss would reward copying the answer (a leak, not learning); \
                 use \"last\" (the default without the mask) or turn the mask on"
                    .into(),
            );
        }
        let positive = [
            ("data.e_train_max", self.data.e_train_max),
            ("data.e_valid_max", self.data.e_valid_max),
            ("train.lr", self.train.lr),
            ("train.eps", self.train.eps),
        ];
        for (key, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return err(key, format!("must be a finite number > 0, got {v}"));
            }
        }
        let non_negative = [
            ("data.noise", self.data.noise),
            ("train.lr_min", self.train.lr_min),
            ("train.weight_decay", self.train.weight_decay),
        ];
        for (key, v) in non_negative {
            if !(v.is_finite() && v >= 0.0) {
                return err(key, format!("must be a finite number ≥ 0, got {v}"));
            }
        }
        for (key, v) in [("train.beta1", self.train.beta1), ("train.beta2", self.train.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return err(key, format!("must be in [0, 1), got {v}"));
            }
        }
        let sizes = [
            ("data.n_valid", self.data.n_valid),
            ("data.context", self.data.context),
            ("model.d_model", self.model.d_model),
            ("model.n_heads", self.model.n_heads),
            ("model.d_head", self.model.d_head),
            ("model.n_layers", self.model.n_layers),
            ("train.batch_size", self.train.batch_size),
            ("eval.rollout_steps", self.eval.rollout_steps),
            ("eval.n_rollouts", self.eval.n_rollouts),
        ];
        for (key, v) in sizes {
            if v == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        for (key, v) in [
            ("train.steps", self.train.steps),
            ("train.log_every", self.train.log_every),
            ("train.checkpoint_every", self.train.checkpoint_every),
        ] {
            if v == 0 {
                return err(key, "must be at least 1".into());
            }
        }
        if u32::try_from(self.data.n_train).is_err() {
            return err(
                "data.n_train",
                format!(
                    "must be at most {} (training sequences are indexed with 32 bits), got {}",
                    u32::MAX,
                    self.data.n_train
                ),
            );
        }
        if self.data.n_train != 0 && self.data.n_train < self.train.batch_size {
            return err(
                "data.n_train",
                format!(
                    "{} training sequences cannot fill one batch of train.batch_size = {}; use n_train ≥ batch_size, or 0 for fresh samples every step",
                    self.data.n_train, self.train.batch_size
                ),
            );
        }
        Ok(())
    }

    /// Checks the cases: at least one, usable and distinct folder names, and
    /// keys that make a valid config ([`Config::case_config`]).
    fn validate_cases(&self, file: &str) -> Result<()> {
        let err = |key: &str, message: String| Err(Error::Config { file: file.into(), key: key.into(), message });
        if self.run.cases.is_empty() {
            return err("run.cases", "needs at least one case".into());
        }
        for (i, case) in self.run.cases.iter().enumerate() {
            // `=` and `+` too: a sweep point's folder is a case named by its id (`dt=0.1_seed=0`).
            let ok =
                !case.name.is_empty() && case.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.=+".contains(c));
            if !ok || case.name.starts_with('.') {
                return err(
                    &format!("run.cases[{i}].name"),
                    format!("{:?} is not a usable folder name (letters, digits, '-', '_', '.', '=', '+')", case.name),
                );
            }
            if let Some(j) = self.run.cases[..i].iter().position(|c| c.name == case.name) {
                return err(
                    &format!("run.cases[{i}].name"),
                    format!("{:?} is also the name of run.cases[{j}]: each case needs its own folder", case.name),
                );
            }
            self.case_config(i).map_err(|e| match e {
                Error::Config { key, message, .. } => Error::Config { file: file.into(), key, message },
                other => other,
            })?;
        }
        Ok(())
    }
}

/// Rejects keys not in `known` (recursively), suggesting the nearest one.
pub(crate) fn check_keys(
    table: &toml::Table,
    known: &toml::Table,
    prefix: &str,
    err: &dyn Fn(&str, String) -> Error,
) -> Result<()> {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        let Some(reference) = known.get(key) else {
            let nearest = known.keys().min_by_key(|k| edit_distance(k, key)).map(String::as_str).unwrap_or("");
            let valid: Vec<&str> = known.keys().map(String::as_str).collect();
            let section = if prefix.is_empty() {
                "at the top level".to_string()
            } else {
                format!("in [{}]", prefix.trim_end_matches('.'))
            };
            return Err(err(
                &path,
                format!("unknown key {section}; did you mean `{prefix}{nearest}`? Valid keys: {}", valid.join(", ")),
            ));
        };
        if let (toml::Value::Table(sub), toml::Value::Table(known_sub)) = (value, reference) {
            check_keys(sub, known_sub, &format!("{path}."), err)?;
        }
    }
    Ok(())
}

/// The dotted key whose value starts at byte `offset` of `text`, found from
/// the `key = value` line and the `[section]` header above it.
/// `"line L, column C: "` of byte `offset` in `text` (both from 1).
fn line_column(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before, |i| &before[i + 1..]).chars().count() + 1;
    format!("line {line}, column {column}: ")
}

fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line.split('=').next().unwrap_or("").trim().trim_matches('"');
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match section {
        Some(s) if !key.is_empty() => format!("{s}.{key}"),
        Some(s) => s,
        None => key.to_string(),
    }
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}
