//! The MLP activation (`[model] act`): its value and derivative, as the
//! reference model applies them element by element.

use serde::{Deserialize, Serialize};

use crate::util::real::Real;

/// `1/√(2π)`, the peak of the standard normal density `φ`.
pub const FRAC_1_SQRT_2PI: f64 = 0.5 * std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2;

/// The MLP activation (`[model] act`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Act {
    /// `x Φ(x) = x (1 + erf(x/√2)) / 2`, the exact form (as
    /// `torch.nn.functional.gelu`).
    #[default]
    Gelu,
    /// `max(x, 0)`.
    Relu,
}

impl Act {
    /// The name used in configs and metadata.
    pub fn name(self) -> &'static str {
        match self {
            Act::Gelu => "gelu",
            Act::Relu => "relu",
        }
    }

    /// `act(x)`.
    pub fn apply<F: Real>(self, x: F) -> F {
        match self {
            Act::Gelu => x * normal_cdf(x),
            Act::Relu => x.max(F::zero()),
        }
    }

    /// `act'(x)`: `Φ(x) + x φ(x)` for gelu; for relu 1 where `x > 0`, else 0
    /// (0 at the kink, as PyTorch).
    pub fn derivative<F: Real>(self, x: F) -> F {
        match self {
            Act::Gelu => normal_cdf(x) + x * ((-x * x * F::of(0.5)).exp() * F::of(FRAC_1_SQRT_2PI)),
            Act::Relu => {
                if x > F::zero() {
                    F::one()
                } else {
                    F::zero()
                }
            }
        }
    }
}

/// `Φ(x) = (1 + erf(x/√2)) / 2`, the standard normal distribution function.
fn normal_cdf<F: Real>(x: F) -> F {
    F::of(0.5) * (F::one() + (x * F::of(std::f64::consts::FRAC_1_SQRT_2)).erf())
}
