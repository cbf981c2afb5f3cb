//! The configuration of each case of `physlens run` (`[run] cases`): the
//! base config with the keys the case sets, by their dotted names
//! (docs/config.md, `[run]`).
//!
//! ```
//! use physlens::config::Config;
//! let text = r#"
//! [run]
//! cases = [{ name = "ic", "system.omega0" = [1.0, 4.0], "model.n_layers" = 2 }]
//! "#;
//! let config = Config::parse(text, "example.toml").unwrap();
//! let case = config.case_config(0).unwrap();
//! assert_eq!(case.model.n_layers, 2);
//! assert!(case.system.fixed().is_none());
//! ```

use std::collections::BTreeMap;

use crate::config::{Case, Config, RunConfig, check_keys};
use crate::model::LossPositions;
use crate::util::error::{Error, Result};

/// Names a case's key in errors: `run.cases[i].system.gamma`.
fn case_key(i: usize, key: &str) -> String {
    format!("run.cases[{i}].{key}")
}

impl Config {
    /// The configuration of case `i` of `[run] cases`: this config with the
    /// case's keys set. Unless the case sets `train.loss_positions`, the
    /// scored positions follow the case's mask when it sets `model.causal`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `run.cases[i].<key>` for a key that is not a
    /// config key (with the nearest one), a value of the wrong type, or a
    /// resulting config that is not valid.
    pub fn case_config(&self, i: usize) -> Result<Config> {
        let case = &self.run.cases[i];
        self.with_keys(&case.name, &case.overrides, "[run] cases", &|key| case_key(i, key))
    }

    /// This config with `keys` set (dotted name → value), as the one case
    /// `name` (no `[run]` cases, no `[sweep]`). Unless `keys` sets
    /// `train.loss_positions`, the scored positions follow the mask when it
    /// sets `model.causal`. Errors name `file` and `name_key(key)`.
    pub(crate) fn with_keys(
        &self,
        name: &str,
        keys: &BTreeMap<String, toml::Value>,
        file: &str,
        name_key: &dyn Fn(&str) -> String,
    ) -> Result<Config> {
        let err = |key: &str, message: String| Error::Config { file: file.into(), key: name_key(key), message };
        let mut base = toml::Table::try_from(self).expect("a config serialises");
        base.remove("run");
        base.remove("sweep");
        let mut nested = toml::Table::new();
        for (key, value) in keys {
            let Some((section, field)) = key.split_once('.') else {
                return Err(err(
                    key,
                    "is not a dotted config key such as \"system.gamma\" or \"model.n_layers\"".into(),
                ));
            };
            let entry = nested.entry(section).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            entry.as_table_mut().expect("sections are tables").insert(field.into(), value.clone());
        }
        check_keys(&nested, &base, "", &|key, message| err(key, message))?;
        let set = |table: &mut toml::Table, key: &str, value: &toml::Value| {
            let (section, field) = key.split_once('.').expect("checked above");
            let section = table.get_mut(section).and_then(toml::Value::as_table_mut).expect("checked above");
            section.insert(field.into(), value.clone());
        };
        // Each key alone first, so that a value of the wrong type is named.
        for (key, value) in keys {
            let mut one = base.clone();
            set(&mut one, key, value);
            if let Err(e) = toml::Value::Table(one).try_into::<Config>() {
                return Err(err(key, e.message().trim().to_string()));
            }
        }
        let mut table = base;
        for (key, value) in keys {
            set(&mut table, key, value);
        }
        let mut config: Config = toml::Value::Table(table).try_into().expect("each key deserialised alone");
        if keys.contains_key("model.causal") && !keys.contains_key("train.loss_positions") {
            config.train.loss_positions = Some(LossPositions::following(config.model.causal));
        }
        config.run = RunConfig { cases: vec![Case { name: name.into(), overrides: BTreeMap::new() }] };
        config.validate_fields(file).map_err(|e| match e {
            Error::Config { key, message, .. } => err(&key, message),
            other => other,
        })?;
        Ok(config)
    }

    /// Every case's configuration ([`Config::case_config`]).
    ///
    /// # Errors
    /// As [`Config::case_config`].
    pub fn case_configs(&self) -> Result<Vec<Config>> {
        (0..self.run.cases.len()).map(|i| self.case_config(i)).collect()
    }
}
