//! The pairs of sequences a patch moves between (docs/in-context.md): `a` and `b` start
//! from the same energy and phase and differ only in the system's
//! parameters. Either both parameter sets are drawn from the checkpoint's
//! training ranges, a fresh pair each time, or they are given
//! (`--a omega0=..,gamma=..`, `--b …`).
//!
//! # Shapes
//! [`Pairs::a`] and [`Pairs::b`] are `[N, T, 2]`, row-major `(x, p)`: the
//! exact states `s_0 … s_{T−1}` stepped by the checkpoint's data rule.

use std::f64::consts::TAU;

use serde::{Deserialize, Serialize};

use crate::physics::{System, SystemSpec};
use crate::util::error::{Error, Result};
use crate::util::mat2::apply;
use crate::util::rng::{Rng, Stream};

/// Drawn pairs when `--pairs` is not given.
pub const DEFAULT_PAIRS: usize = 64;

/// Some of ω0, γ, Δt, as `--a omega0=3,gamma=0.2` gives them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ParamSet {
    /// ω0.
    pub omega0: Option<f64>,
    /// γ.
    pub gamma: Option<f64>,
    /// Δt.
    pub dt: Option<f64>,
}

impl ParamSet {
    /// Parses `KEY=VALUE,…` with keys `omega0`, `gamma`, `dt`; errors name `option`.
    ///
    /// # Errors
    /// [`Error::Option`] `option` for an unknown key, a repeated key, a
    /// value that is not a finite number, or nothing given.
    pub fn parse(text: &str, option: &str) -> Result<ParamSet> {
        let fail = |why: String| Error::Option {
            name: option.into(),
            message: format!("`{text}`: {why}; expected KEY=VALUE pairs separated by commas, keys omega0, gamma, dt"),
        };
        let mut set = ParamSet::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((key, value)) = part.split_once('=') else { return Err(fail(format!("`{part}` has no `=`"))) };
            let value = value.trim();
            let number = value.parse::<f64>().ok().filter(|v| v.is_finite());
            let Some(number) = number else { return Err(fail(format!("`{value}` is not a finite number"))) };
            let slot = match key.trim() {
                "omega0" => &mut set.omega0,
                "gamma" => &mut set.gamma,
                "dt" => &mut set.dt,
                other => return Err(fail(format!("unknown key `{other}`"))),
            };
            if slot.replace(number).is_some() {
                return Err(fail(format!("`{}` is given twice", key.trim())));
            }
        }
        if set == ParamSet::default() {
            return Err(fail("no parameter given".into()));
        }
        Ok(set)
    }

    /// The system: each parameter as given, else the checkpoint's fixed
    /// value or the middle of its range; its data rule.
    ///
    /// # Errors
    /// [`Error::Option`] `option` when a value is out of what is accepted
    /// (ω0 and Δt > 0, γ ≥ 0).
    pub fn resolve(&self, spec: &SystemSpec, option: &str) -> Result<System> {
        let mid = |p: crate::physics::Param| (p.range()[0] + p.range()[1]) / 2.0;
        let system = System {
            omega0: self.omega0.unwrap_or_else(|| mid(spec.omega0)),
            gamma: self.gamma.unwrap_or_else(|| mid(spec.gamma)),
            dt: self.dt.unwrap_or_else(|| mid(spec.dt)),
            generator: spec.generator,
        };
        match SystemSpec::from(system).invalid() {
            Some(bad) => Err(Error::Option {
                name: option.into(),
                message: format!("{} = {} is not accepted; it {}", bad.field, bad.value, bad.message),
            }),
            None => Ok(system),
        }
    }
}

/// How the pairs were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSource {
    /// Both parameter sets drawn from the training ranges, per pair.
    Drawn,
    /// The parameter sets given with `--a` and `--b`.
    Fixed,
}

/// Settings of [`make_pairs`].
#[derive(Clone, Debug, PartialEq)]
pub struct PairOptions {
    /// Pairs; `None`: [`DEFAULT_PAIRS`] drawn, or one given pair at energy 1, phase 0.
    pub pairs: Option<usize>,
    /// Run a's parameters (with `b`: fixed pairs).
    pub a: Option<ParamSet>,
    /// Run b's parameters.
    pub b: Option<ParamSet>,
    /// Seed of the draws ([`Stream::Valid`]).
    pub seed: u64,
    /// Energies uniform on `[0, e_max]`.
    pub e_max: f64,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions { pairs: None, a: None, b: None, seed: 0, e_max: 4.0 }
    }
}

/// `N` pairs of sequences.
#[derive(Clone, Debug, PartialEq)]
pub struct Pairs {
    /// How they were made.
    pub source: PairSource,
    /// `[N, T, 2]`: the runs patched.
    pub a: Vec<f64>,
    /// `[N, T, 2]`: the runs the patched values come from.
    pub b: Vec<f64>,
    /// `[N]`: the systems of each pair, `(a, b)`.
    pub systems: Vec<(System, System)>,
    /// `[N]`: the shared energy and phase of each pair's first state.
    pub starts: Vec<(f64, f64)>,
}

impl Pairs {
    /// Number of pairs N.
    pub fn len(&self) -> usize {
        self.systems.len()
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }
}

/// The `n_ctx` exact states of `system` from energy `e` at phase `phi`
/// (`(√(2E)/ω0 cos φ, √(2E) sin φ)`), stepped by its data rule, appended to `out`.
pub fn push_sequence(system: &System, e: f64, phi: f64, n_ctx: usize, out: &mut Vec<f64>) {
    let step = system.data_step();
    let mut s = system.oscillator().state_from_energy_phase(e, phi);
    for _ in 0..n_ctx {
        out.extend(s);
        s = apply(&step, s);
    }
}

/// Draws one pair: its two systems, its energy and its phase.
type Draw = dyn FnMut(&mut Rng) -> (System, System, f64, f64);

/// The pairs `opts` asks for, for a model of context `n_ctx` trained on `spec`.
///
/// # Errors
/// [`Error::Option`]: `pairs` when it is 0, or when pairs are to be drawn
/// but the checkpoint has no ranges or a context of 1; `a` / `b` when only
/// one is given or a set is invalid or both are the same; `e_max` unless finite and > 0.
pub fn make_pairs(spec: &SystemSpec, n_ctx: usize, opts: &PairOptions) -> Result<Pairs> {
    let option = |name: &str, message: String| Error::Option { name: name.into(), message };
    if opts.pairs == Some(0) {
        return Err(option("pairs", "0 pairs: at least 1 is needed".into()));
    }
    if !(opts.e_max.is_finite() && opts.e_max > 0.0) {
        return Err(option(
            "e_max",
            format!("{} is not accepted; the largest energy must be finite and > 0", opts.e_max),
        ));
    }
    let mut rng = Rng::new(opts.seed, Stream::Valid);
    let mut pairs = |source, n: usize, mut draw: Box<Draw>| -> Pairs {
        let mut out = Pairs { source, a: vec![], b: vec![], systems: vec![], starts: vec![] };
        for _ in 0..n {
            let (sa, sb, e, phi) = draw(&mut rng);
            push_sequence(&sa, e, phi, n_ctx, &mut out.a);
            push_sequence(&sb, e, phi, n_ctx, &mut out.b);
            out.systems.push((sa, sb));
            out.starts.push((e, phi));
        }
        out
    };
    let e_max = opts.e_max;
    match (&opts.a, &opts.b) {
        (Some(a), Some(b)) => {
            let (sa, sb) = (a.resolve(spec, "a")?, b.resolve(spec, "b")?);
            if sa == sb {
                return Err(option("b", format!("is the same system as --a ({sa:?}): there is nothing to patch in")));
            }
            Ok(match opts.pairs {
                None => pairs(PairSource::Fixed, 1, Box::new(move |_| (sa, sb, 1.0, 0.0))),
                Some(n) => pairs(
                    PairSource::Fixed,
                    n,
                    Box::new(move |rng| (sa, sb, rng.uniform_in(0.0, e_max), rng.uniform_in(0.0, TAU))),
                ),
            })
        }
        (Some(_), None) => Err(option("b", "missing: --a needs --b (the run whose values are patched in)".into())),
        (None, Some(_)) => Err(option("a", "missing: --b needs --a (the run that is patched)".into())),
        (None, None) => {
            if spec.fixed().is_some() {
                return Err(option(
                    "pairs",
                    format!(
                        "the checkpoint was trained on one system ({spec}): there are no parameter ranges to draw \
                         pairs from; give the two parameter sets with --a omega0=..,gamma=.. --b omega0=..,gamma=.."
                    ),
                ));
            }
            if n_ctx < 2 {
                return Err(option(
                    "pairs",
                    "the model has context 1: drawn pairs need a model that reads its parameters from a context \
                     (n_ctx ≥ 2, trained with ranges); give --a and --b to patch it with a fixed pair"
                        .into(),
                ));
            }
            let spec = *spec;
            Ok(pairs(
                PairSource::Drawn,
                opts.pairs.unwrap_or(DEFAULT_PAIRS),
                Box::new(move |rng| {
                    let (sa, sb) = (spec.draw(rng), spec.draw(rng));
                    (sa, sb, rng.uniform_in(0.0, e_max), rng.uniform_in(0.0, TAU))
                }),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_sets_parse_and_name_what_is_wrong() {
        let set = ParamSet::parse("omega0=3, gamma=0.2", "a").unwrap();
        assert_eq!(set, ParamSet { omega0: Some(3.0), gamma: Some(0.2), dt: None });
        for (text, words) in
            [("omega0=x", "not a finite number"), ("omega=1", "unknown key"), ("gamma", "no `=`"), ("", "no parameter")]
        {
            let Err(Error::Option { name, message }) = ParamSet::parse(text, "b") else { panic!("{text} accepted") };
            assert!(name == "b" && message.contains(words), "{text}: {message}");
        }
        let spec = SystemSpec { omega0: crate::physics::Param::Uniform([1.0, 3.0]), ..SystemSpec::default() };
        let system = ParamSet { gamma: Some(0.5), ..ParamSet::default() }.resolve(&spec, "a").unwrap();
        assert_eq!((system.omega0, system.gamma, system.dt), (2.0, 0.5, 0.1));
    }

    #[test]
    fn drawn_pairs_share_energy_and_phase() {
        let spec = SystemSpec { omega0: crate::physics::Param::Uniform([1.0, 3.0]), ..SystemSpec::default() };
        let pairs = make_pairs(&spec, 4, &PairOptions { pairs: Some(5), ..PairOptions::default() }).unwrap();
        assert_eq!((pairs.len(), pairs.a.len(), pairs.source), (5, 5 * 4 * 2, PairSource::Drawn));
        for (n, ((sa, sb), _)) in pairs.systems.iter().zip(&pairs.starts).enumerate() {
            let (a0, b0) = ([pairs.a[n * 8], pairs.a[n * 8 + 1]], [pairs.b[n * 8], pairs.b[n * 8 + 1]]);
            let (ea, eb) = (sa.oscillator().energy(a0), sb.oscillator().energy(b0));
            assert!((ea - eb).abs() < 1e-12 * ea.max(1.0) && sa != sb);
        }
    }
}
