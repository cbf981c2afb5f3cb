//! The floating-point types the model runs in (`f32` or `f64`).

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

use serde::{Deserialize, Serialize};

/// Which floating-point type a model or run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// 32-bit IEEE 754.
    F32,
    /// 64-bit IEEE 754.
    F64,
}

impl Dtype {
    /// The name used in configs and outputs (`"f32"` or `"f64"`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F64 => "f64",
        }
    }

    /// Bytes per value: 4 or 8.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }
}

/// A float the model kernel is generic over: `f32` or `f64`.
pub trait Real:
    num_traits::Float
    + bytemuck::Pod
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// The dtype tag of this type.
    const DTYPE: Dtype;
    /// Converts from `f64` (rounding to nearest for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn f64(self) -> f64;
    /// `2ⁿ` for an integer-valued `n`, `−126 ≤ n ≤ 127`, built from the
    /// exponent bits: `n + 2^(mantissa bits) + bias` holds `n + bias` in its
    /// low bits, which a shift moves into the exponent (one addition and one
    /// shift per lane, where a conversion to an integer vectorises into a
    /// range check and a blend as well).
    fn pow2(n: Self) -> Self;
    /// The nearest integer, ties to even (one instruction per vector, where
    /// `round`'s ties away from zero take three).
    fn round_even(self) -> Self;
    /// The error function (the `libm` crate's, correctly rounded to within an ulp or so).
    fn erf(self) -> Self;
}

impl Real for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn of(x: f64) -> Self {
        x as f32
    }
    fn f64(self) -> f64 {
        self as f64
    }
    fn pow2(n: Self) -> Self {
        f32::from_bits((n + 8_388_735.0).to_bits() << 23) // 2²³ + 127
    }
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
}

impl Real for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn of(x: f64) -> Self {
        x
    }
    fn f64(self) -> f64 {
        self
    }
    fn pow2(n: Self) -> Self {
        f64::from_bits((n + 4_503_599_627_371_519.0).to_bits() << 52) // 2⁵² + 1023
    }
    fn round_even(self) -> Self {
        self.round_ties_even()
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
}

/// The largest `|x|` (0 for none), NaN if some `x` is not finite: `f64::max`
/// alone would skip a NaN and report a finite maximum for, say, a rollout
/// that diverged.
pub fn max_abs(xs: &[f64]) -> f64 {
    if xs.iter().any(|x| !x.is_finite()) { f64::NAN } else { xs.iter().fold(0.0, |a: f64, x| a.max(x.abs())) }
}
