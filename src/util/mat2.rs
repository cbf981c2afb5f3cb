//! Tiny 2×2 `f64` linear algebra for the physics and its read-back.
//!
//! Storage is row-major, `m[row][col]`. Physics uses the COLUMN convention: a
//! state is a column vector and one step is `s' = M s` (see [`apply`]). The
//! model code works with row vectors; converting between the two is a
//! [`transpose`], done in one place by the caller.
//!
//! ```
//! use physlens::util::mat2::{apply, inverse, mul, identity};
//! let m = [[1.0, 2.0], [3.0, 4.0]];
//! assert_eq!(apply(&m, [1.0, 0.0]), [1.0, 3.0]); // first column
//! let inv = inverse(&m).unwrap();
//! let id = mul(&m, &inv);
//! assert!((id[0][0] - 1.0).abs() < 1e-15 && id[0][1].abs() < 1e-15);
//! assert_eq!(identity(), [[1.0, 0.0], [0.0, 1.0]]);
//! ```

use serde::{Deserialize, Serialize};

/// A 2×2 matrix stored row-major, `m[row][col]`.
pub type Mat2 = [[f64; 2]; 2];

/// A 2-vector; in the physics a state `(x, p)` used as a column.
pub type Vec2 = [f64; 2];

/// A complex number, as returned by [`eigenvalues`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Complex {
    /// Real part.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub re: f64,
    /// Imaginary part.
    #[serde(deserialize_with = "crate::util::json::nan_if_null")]
    pub im: f64,
}

impl Complex {
    /// Modulus `|z|`, computed without intermediate overflow.
    pub fn abs(&self) -> f64 {
        self.re.hypot(self.im)
    }

    /// Argument in `(-π, π]` (`atan2(im, re)`).
    pub fn arg(&self) -> f64 {
        self.im.atan2(self.re)
    }
}

/// The identity matrix.
pub fn identity() -> Mat2 {
    [[1.0, 0.0], [0.0, 1.0]]
}

/// Entry-wise sum `a + b`.
pub fn add(a: &Mat2, b: &Mat2) -> Mat2 {
    [[a[0][0] + b[0][0], a[0][1] + b[0][1]], [a[1][0] + b[1][0], a[1][1] + b[1][1]]]
}

/// Entry-wise difference `a − b`.
pub fn sub(a: &Mat2, b: &Mat2) -> Mat2 {
    [[a[0][0] - b[0][0], a[0][1] - b[0][1]], [a[1][0] - b[1][0], a[1][1] - b[1][1]]]
}

/// Scalar multiple `a · m`.
pub fn scale(m: &Mat2, a: f64) -> Mat2 {
    [[a * m[0][0], a * m[0][1]], [a * m[1][0], a * m[1][1]]]
}

/// Matrix product `a b` (apply `b` first, then `a`, in the column convention).
pub fn mul(a: &Mat2, b: &Mat2) -> Mat2 {
    [
        [a[0][0] * b[0][0] + a[0][1] * b[1][0], a[0][0] * b[0][1] + a[0][1] * b[1][1]],
        [a[1][0] * b[0][0] + a[1][1] * b[1][0], a[1][0] * b[0][1] + a[1][1] * b[1][1]],
    ]
}

/// Matrix–vector product `M v` (column convention).
pub fn apply(m: &Mat2, v: Vec2) -> Vec2 {
    [m[0][0] * v[0] + m[0][1] * v[1], m[1][0] * v[0] + m[1][1] * v[1]]
}

/// `a d − b c` for `[[a, b], [c, d]]`, with Kahan's fused-multiply-add trick so
/// the result is accurate to a few ulps even when the two products cancel.
pub fn det(m: &Mat2) -> f64 {
    diff_of_products(m[0][0], m[1][1], m[0][1], m[1][0])
}

/// Sum of the diagonal entries.
pub fn trace(m: &Mat2) -> f64 {
    m[0][0] + m[1][1]
}

/// The inverse, or `None` when the determinant is zero or not finite.
pub fn inverse(m: &Mat2) -> Option<Mat2> {
    let d = det(m);
    if d == 0.0 || !d.is_finite() {
        return None;
    }
    Some([[m[1][1] / d, -m[0][1] / d], [-m[1][0] / d, m[0][0] / d]])
}

/// The transpose (switches between the column and the row convention).
pub fn transpose(m: &Mat2) -> Mat2 {
    [[m[0][0], m[1][0]], [m[0][1], m[1][1]]]
}

/// Frobenius norm `sqrt(Σ m_ij²)`.
pub fn frobenius(m: &Mat2) -> f64 {
    m[0][0].hypot(m[0][1]).hypot(m[1][0].hypot(m[1][1]))
}

/// The two eigenvalues of `m`.
///
/// Order: for a complex pair, the one with `im ≥ 0` first; for real
/// eigenvalues, the larger (by value) first.
///
/// The discriminant is formed as `((a − d)/2)² + b c` (no cancellation between
/// `trace²/4` and `det`), and for real eigenvalues the one of larger modulus
/// is computed with the sign that avoids cancellation and the other as
/// `det / λ`.
pub fn eigenvalues(m: &Mat2) -> [Complex; 2] {
    let half_trace = 0.5 * trace(m);
    let half_diff = 0.5 * (m[0][0] - m[1][1]);
    let disc = m[0][1].mul_add(m[1][0], half_diff * half_diff);
    if disc < 0.0 {
        let im = (-disc).sqrt();
        return [Complex { re: half_trace, im }, Complex { re: half_trace, im: -im }];
    }
    let root = disc.sqrt();
    let (l1, l2) = if half_trace == 0.0 {
        (root, -root)
    } else {
        let big = half_trace + root.copysign(half_trace);
        (big, det(m) / big)
    };
    let (hi, lo) = if l1 >= l2 { (l1, l2) } else { (l2, l1) };
    [Complex { re: hi, im: 0.0 }, Complex { re: lo, im: 0.0 }]
}

/// `a b − c d` to a few ulps (Kahan's algorithm with fused multiply-adds).
fn diff_of_products(a: f64, b: f64, c: f64, d: f64) -> f64 {
    let cd = c * d;
    let err = (-c).mul_add(d, cd);
    let main = a.mul_add(b, -cd);
    main + err
}
