//! The `[system]` of a config and the `system` of a checkpoint's metadata:
//! each of ω0, γ and Δt is a number (fixed) or a range `[lo, hi]` drawn
//! uniformly per sequence (docs/physics.md, "In-context systems"). A spec
//! whose three parameters are fixed is one [`System`]; one with a range is a
//! distribution of systems, and a model trained on it has to work the
//! dynamics out from its context.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::physics::System;
use crate::physics::rules::Rule;
use crate::util::rng::Rng;

/// One parameter: a number, or `[lo, hi]` (uniform per sequence).
///
/// ```
/// use physlens::physics::spec::Param;
/// let p: Param = serde_json::from_str("[1.0, 4.0]").unwrap();
/// assert_eq!(p, Param::Uniform([1.0, 4.0]));
/// assert_eq!(serde_json::to_string(&Param::Fixed(2.0)).unwrap(), "2.0");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Param {
    /// The same value for every sequence.
    Fixed(f64),
    /// Uniform on `[lo, hi]`, drawn per sequence.
    Uniform([f64; 2]),
}

impl Param {
    /// The value when fixed.
    pub fn fixed(self) -> Option<f64> {
        match self {
            Param::Fixed(v) => Some(v),
            Param::Uniform(_) => None,
        }
    }

    /// `[lo, hi]` (`[v, v]` when fixed).
    pub fn range(self) -> [f64; 2] {
        match self {
            Param::Fixed(v) => [v, v],
            Param::Uniform(r) => r,
        }
    }

    /// The value for one sequence: the fixed value (drawing nothing), or a
    /// uniform draw from `rng`.
    pub fn draw(self, rng: &mut Rng) -> f64 {
        match self {
            Param::Fixed(v) => v,
            Param::Uniform([lo, hi]) => rng.uniform_in(lo, hi),
        }
    }

    /// Whether `v` lies in the range (equals the value when fixed).
    pub fn contains(self, v: f64) -> bool {
        let [lo, hi] = self.range();
        (lo..=hi).contains(&v)
    }
}

/// Read from a number (an integer too) or a two-number array, with an
/// error that says so for anything else.
impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamVisitor)
    }
}

struct ParamVisitor;

impl<'de> Visitor<'de> for ParamVisitor {
    type Value = Param;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number (fixed) or a two-number array [lo, hi] (drawn uniformly per sequence)")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Param, E> {
        Ok(Param::Fixed(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Param, E> {
        Ok(Param::Fixed(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Param, E> {
        Ok(Param::Fixed(v as f64))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Param, A::Error> {
        let mut ends = vec![];
        while let Some(v) = seq.next_element::<f64>()? {
            ends.push(v);
        }
        match ends[..] {
            [lo, hi] => Ok(Param::Uniform([lo, hi])),
            _ => Err(de::Error::invalid_length(ends.len(), &self)),
        }
    }
}

/// Written as the number, or `[lo, hi]`.
impl fmt::Display for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Param::Fixed(v) => write!(f, "{v}"),
            Param::Uniform([lo, hi]) => write!(f, "[{lo}, {hi}]"),
        }
    }
}

/// The systems a model is trained on: `[system]` of a config.
///
/// ```
/// use physlens::physics::spec::{Param, SystemSpec};
/// use physlens::physics::System;
/// let fixed = SystemSpec::from(System::new(2.0, 0.1, 0.1));
/// assert_eq!(fixed.fixed(), Some(System::new(2.0, 0.1, 0.1)));
/// let ranged = SystemSpec { omega0: Param::Uniform([1.0, 4.0]), ..fixed };
/// assert!(ranged.fixed().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemSpec {
    /// Natural angular frequency ω0 (> 0).
    pub omega0: Param,
    /// Damping rate γ (≥ 0).
    pub gamma: Param,
    /// Time step Δt between tokens (> 0).
    pub dt: Param,
    /// The rule that steps the data (`exact` unless a positive control asks
    /// for a numerical integrator).
    pub generator: Rule,
}

/// The seed experiment's system.
impl Default for SystemSpec {
    fn default() -> Self {
        SystemSpec::from(System::default())
    }
}

impl From<System> for SystemSpec {
    fn from(s: System) -> Self {
        SystemSpec {
            omega0: Param::Fixed(s.omega0),
            gamma: Param::Fixed(s.gamma),
            dt: Param::Fixed(s.dt),
            generator: s.generator,
        }
    }
}

impl From<&System> for SystemSpec {
    fn from(s: &System) -> Self {
        SystemSpec::from(*s)
    }
}

impl From<&SystemSpec> for SystemSpec {
    fn from(s: &SystemSpec) -> Self {
        *s
    }
}

/// A parameter of a [`SystemSpec`] outside what is accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct InvalidParam {
    /// `omega0`, `gamma` or `dt`.
    pub field: &'static str,
    /// The value found.
    pub value: Param,
    /// What is accepted, e.g. `must be a finite number > 0, or …`.
    pub message: String,
}

impl SystemSpec {
    /// The one system when no parameter is drawn per sequence.
    pub fn fixed(&self) -> Option<System> {
        Some(System {
            omega0: self.omega0.fixed()?,
            gamma: self.gamma.fixed()?,
            dt: self.dt.fixed()?,
            generator: self.generator,
        })
    }

    /// The system of one sequence: the ranged parameters drawn from `rng` in
    /// the order ω0, γ, Δt (a fixed spec draws nothing).
    pub fn draw(&self, rng: &mut Rng) -> System {
        let omega0 = self.omega0.draw(rng);
        let gamma = self.gamma.draw(rng);
        let dt = self.dt.draw(rng);
        System { omega0, gamma, dt, generator: self.generator }
    }

    /// Whether `s` lies inside every range (the training distribution).
    pub fn contains(&self, s: &System) -> bool {
        self.omega0.contains(s.omega0) && self.gamma.contains(s.gamma) && self.dt.contains(s.dt)
    }

    /// The parameters as `(name, value)`, in the order ω0, γ, Δt.
    pub fn params(&self) -> [(&'static str, Param); 3] {
        [("omega0", self.omega0), ("gamma", self.gamma), ("dt", self.dt)]
    }

    /// The first parameter out of range, if any: ω0 and Δt must be finite
    /// and > 0, γ finite and ≥ 0 (both ends of a range), and a range needs
    /// `lo < hi`.
    pub fn invalid(&self) -> Option<InvalidParam> {
        self.params().into_iter().find_map(|(field, value)| {
            let (ok, accepted): (fn(f64) -> bool, &str) = match field {
                "gamma" => (|v| v.is_finite() && v >= 0.0, "a finite number ≥ 0"),
                _ => (|v| v.is_finite() && v > 0.0, "a finite number > 0"),
            };
            let message = match value {
                Param::Fixed(v) if !ok(v) => format!("must be {accepted}, or a range [lo, hi] of such numbers"),
                Param::Uniform([lo, hi]) if !(ok(lo) && ok(hi)) => format!("must be a range whose ends are {accepted}"),
                Param::Uniform([lo, hi]) if lo >= hi => {
                    "must be a range [lo, hi] with lo < hi (a fixed value is written as one number)".into()
                }
                _ => return None,
            };
            Some(InvalidParam { field, value, message })
        })
    }
}

/// `ω0 = 2, γ = 0.1, Δt = 0.1`, or with ranges `ω0 ∈ [1, 4]`.
impl fmt::Display for SystemSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [("ω0", self.omega0), ("γ", self.gamma), ("Δt", self.dt)]
            .into_iter()
            .map(|(name, p)| match p {
                Param::Fixed(v) => format!("{name} = {v}"),
                Param::Uniform(_) => format!("{name} ∈ {p}"),
            })
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}
