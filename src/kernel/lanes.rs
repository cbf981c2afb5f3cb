//! Lane vectors and the operations on them: `LANES` samples side by side in
//! structure-of-arrays form (`[F; LANES]` per quantity), so that each
//! arithmetic line is one vector instruction across samples; the instruction
//! sets the kernels are compiled for ([`Simd`]) and the macro that picks one
//! at run time.

use crate::model::Act;
use crate::model::activation::FRAC_1_SQRT_2PI;
use crate::util::real::{Dtype, Real};

/// Samples per vector group.
pub const LANES: usize = 16;

/// One value per sample of a lane group.
pub(crate) type Lane<F> = [F; LANES];

/// The instruction sets the lane kernels are compiled for, widest first.
/// The two with fused multiply-add give identical results (FMA rounds once
/// either way); the portable one, with separate multiply and add, may differ
/// in the last bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512F with FMA: 16 f32 lanes per instruction.
    Avx512,
    /// AVX2 with FMA: 8 f32 lanes per instruction.
    Avx2,
    /// Whatever the compilation target guarantees (SSE2 on x86-64).
    Portable,
}

impl Simd {
    /// The widest level this CPU runs.
    pub fn best() -> Self {
        Self::available()[0]
    }

    /// Every level this CPU runs, widest first (the last is `Portable`).
    pub fn available() -> Vec<Simd> {
        [Simd::Avx512, Simd::Avx2, Simd::Portable].into_iter().filter(|s| s.runs_here()).collect()
    }

    /// True if this CPU has the instructions of `self`.
    pub fn runs_here(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let fma = std::arch::is_x86_feature_detected!("fma");
            match self {
                Simd::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && fma,
                Simd::Avx2 => std::arch::is_x86_feature_detected!("avx2") && fma,
                Simd::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Simd::Portable
        }
    }
}

/// Defines `fn $name<F: Real>(simd, args)` that runs `$inner::<F, FMA>(args)`
/// compiled for `simd` ([`Simd`]), or for the widest level below it that the
/// CPU has.
macro_rules! lane_dispatch {
    ($(#[$doc:meta])* fn $name:ident => $inner:ident($($arg:ident: $ty:ty),*)) => {
        $(#[$doc])*
        fn $name<F: Real>(simd: $crate::kernel::lanes::Simd, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernel::lanes::Simd;
                #[target_feature(enable = "avx512f,fma")]
                unsafe fn avx512<F: Real>($($arg: $ty),*) {
                    $inner::<F, true>($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<F: Real>($($arg: $ty),*) {
                    $inner::<F, true>($($arg),*)
                }
                if simd == Simd::Avx512 && Simd::Avx512.runs_here() {
                    // SAFETY: the CPU has AVX-512F and FMA, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if simd != Simd::Portable && Simd::Avx2.runs_here() {
                    // SAFETY: the CPU has AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            let _ = simd; // one level only off x86-64
            $inner::<F, false>($($arg),*)
        }
    };
}
pub(crate) use lane_dispatch;

/// Folds per-lane sums into a chunk's result and zeroes them for the next
/// chunk (in the same pass, while each line is in cache: the kernels start
/// every chunk from zeroed sums without a pass of their own). Each gradient
/// entry is its lanes' sum ([`fold`]), and the returned loss the lanes'
/// sum in f64.
pub(crate) fn sum_lanes<F: Real>(loss: &Lane<F>, acc: &mut [Lane<F>], grad: &mut [F]) -> f64 {
    for (g, a) in grad.iter_mut().zip(acc) {
        *g = fold(&mut std::mem::replace(a, [F::zero(); LANES]));
    }
    loss_sum(loss)
}

/// The lanes' sum of a loss, in f64.
pub(crate) fn loss_sum<F: Real>(loss: &Lane<F>) -> f64 {
    loss.iter().map(|l| l.f64()).sum()
}

/// `out[k]` = the lane sum of `x[k]`, for up to `LANES` lane vectors (a
/// power of two of them), each summed pairwise: lanes `i` and `i + 8`
/// first, then `i` and `i + 4`, … (a sum in lane order would be one chain of
/// 15 dependent additions). Each step adds the two halves of every source's
/// remaining lanes and packs the results of two vectors into one, so the
/// sources share their vector additions: 16 take 15 instead of 64.
#[inline(always)]
pub(crate) fn lane_sums<F: Real>(x: &[Lane<F>], out: &mut [F]) {
    const HALF: usize = LANES / 2;
    assert!(x.len().is_power_of_two() && x.len() <= LANES && out.len() == x.len());
    let mut v = [[F::zero(); LANES]; LANES];
    v[..x.len()].copy_from_slice(x);
    let (mut n, mut w) = (x.len(), LANES); // vectors left, lanes per source
    while n > 1 {
        let h = w / 2;
        for j in 0..n / 2 {
            let (a, b) = (v[2 * j], v[2 * j + 1]);
            // output lane i: source segment i / h of a (i < HALF) or b, its lanes i % h and i % h + h
            let mut sum = a;
            for (i, s) in sum.iter_mut().enumerate() {
                let (src, k) = if i < HALF { (&a, i) } else { (&b, i - HALF) };
                let at = k / h * w + k % h;
                *s = src[at] + src[at + h];
            }
            v[j] = sum;
        }
        (n, w) = (n / 2, h);
    }
    // one vector: the sources' w lanes each, in order
    for (o, s) in out.iter_mut().zip(v[0].chunks_exact_mut(w)) {
        *o = fold(s);
    }
}

/// The pairwise sum of `s` (a power of two long): `s[i] + s[i + len/2]`
/// first, and so on, as in [`lane_sums`]; `s` is overwritten.
#[inline(always)]
pub(crate) fn fold<F: Real>(s: &mut [F]) -> F {
    let mut h = s.len();
    while h > 1 {
        h /= 2;
        for i in 0..h {
            s[i] += s[i + h];
        }
    }
    s[0]
}

/// The two lane operations, with (`FMA = true`) or without fused multiply-add.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ops<const FMA: bool>;

impl<const FMA: bool> Ops<FMA> {
    /// `acc += a · b` lane by lane.
    #[inline(always)]
    pub(crate) fn axpy<F: Real>(self, acc: &mut Lane<F>, a: &Lane<F>, b: F) {
        // Work on copies: LLVM then knows `acc` and `a` do not overlap and
        // emits one vector instruction per line instead of one per lane.
        let (mut x, a) = (*acc, *a);
        for i in 0..LANES {
            x[i] = if FMA { a[i].mul_add(b, x[i]) } else { x[i] + a[i] * b };
        }
        *acc = x;
    }

    /// `acc += a · b` lane by lane, both lane vectors.
    #[inline(always)]
    pub(crate) fn fma<F: Real>(self, acc: &mut Lane<F>, a: &Lane<F>, b: &Lane<F>) {
        let (mut x, a, b) = (*acc, *a, *b); // copies, as in `axpy`
        for i in 0..LANES {
            x[i] = if FMA { a[i].mul_add(b[i], x[i]) } else { x[i] + a[i] * b[i] };
        }
        *acc = x;
    }

    /// `init + Σ_{i<n} a_i · b_i` with `(a_i, b_i) = term(i)`, summed in four
    /// interleaved partial sums so that consecutive multiply-adds do not wait
    /// for each other.
    #[inline(always)]
    pub(crate) fn dot_ll<'a, F: Real + 'a>(
        self,
        init: Lane<F>,
        n: usize,
        mut term: impl FnMut(usize) -> (&'a Lane<F>, &'a Lane<F>),
    ) -> Lane<F> {
        let zero = [F::zero(); LANES];
        let mut part = [init, zero, zero, zero];
        let mut i = 0;
        while i + 4 <= n {
            for (u, p) in part.iter_mut().enumerate() {
                let (a, b) = term(i + u);
                self.fma(p, a, b);
            }
            i += 4;
        }
        for j in i..n {
            let (a, b) = term(j);
            self.fma(&mut part[j - i], a, b);
        }
        sum4(part)
    }
}

impl<const FMA: bool> Ops<FMA> {
    /// `eˣ` lane by lane for `x ≤ 0` (softmax scores after subtracting the
    /// row maximum), in a form the compiler vectorises: `x = n ln2 + r` with
    /// `|r| ≤ ln2/2`, `eʳ` by its Taylor polynomial (degree 12 in f64, 7 in
    /// f32: error below the format's rounding) and `2ⁿ` from the exponent bits. Inputs below −87 are
    /// taken as −87 (`e⁻⁸⁷ ≈ 2e-38`, nothing next to the row maximum's 1).
    #[inline(always)]
    pub(crate) fn exp_nonpositive<F: Real>(self, x: &Lane<F>) -> Lane<F> {
        const LN2_HI: f64 = 0.693_145_751_953_125; // Cody–Waite split of ln 2
        const LN2_LO: f64 = 1.428_606_820_309_417_3e-6;
        // Taylor degree 12 leaves 2e-16 relative; in f32, degree 7 leaves
        // 5e-9, already below the format's rounding (6e-8).
        let degree: u32 = if F::epsilon().f64() > 1e-10 { 7 } else { 12 };
        let mut out = *x;
        for v in &mut out {
            let x = v.max(F::of(-87.0));
            let n = (x * F::of(std::f64::consts::LOG2_E)).round_even();
            let r = (x - n * F::of(LN2_HI)) - n * F::of(LN2_LO);
            let mut fact = f64::from((1..=degree).product::<u32>());
            let mut p = F::of(1.0 / fact);
            for k in (0..degree).rev() {
                fact /= f64::from(k + 1);
                p = if FMA { p.mul_add(r, F::of(1.0 / fact)) } else { p * r + F::of(1.0 / fact) };
            }
            *v = p * F::pow2(n);
        }
        out
    }
}

impl<const FMA: bool> Ops<FMA> {
    /// `(act(x), act'(x))` lane by lane (the MLP's forward value and the
    /// derivative its backward pass needs). Relu exactly as [`Act`]; gelu in
    /// f64 by the library `erf` (one lane at a time), in f32 in a form the
    /// compiler vectorises ([`Ops::gelu_f32`]).
    #[inline(always)]
    pub(crate) fn activation<F: Real>(self, act: Act, x: &Lane<F>) -> (Lane<F>, Lane<F>) {
        if act == Act::Gelu && F::DTYPE == Dtype::F32 {
            self.gelu_f32(x)
        } else {
            // indexed, as in `gelu_f32`
            let (mut value, mut slope) = (*x, *x);
            for i in 0..LANES {
                (value[i], slope[i]) = (act.apply(x[i]), act.derivative(x[i]));
            }
            (value, slope)
        }
    }

    /// Gelu `x·Φ(x)` and its derivative `Φ(x) + x·φ(x)` with one
    /// exponential: `φ(x) = e^{−z²}/√(2π)` with `z = |x|/√2`, and
    /// `Φ(−|x|) = erfc(z)/2 = t·Q(t)·e^{−z²}/2` with `t = 1/(1 + z/2)`, where
    /// `Q(t) = erfcx(z)/t` is smooth on the `t` that matter (`z` up to 9.3,
    /// where `e^{−z²}` reaches the exponential's floor) and `Q` is its
    /// degree-9 fit for relative error (1.7e-8 in exact arithmetic, below
    /// f32's rounding; `tools/fit/gelu_erfc.py` makes the coefficients).
    /// One exponential serves both `Φ` and `φ`, and it does not wait for the
    /// polynomial (the two are independent and run side by side).
    #[inline(always)]
    fn gelu_f32<F: Real>(self, x: &Lane<F>) -> (Lane<F>, Lane<F>) {
        const Q: [f64; 10] = [
            2.820_591_154_1e-1,
            2.829_683_209_3e-1,
            2.376_696_123_2e-1,
            2.303_053_488_8e-1,
            -1.126_438_851_4e-1,
            4.488_621_892_8e-1,
            -7.041_381_772_0e-1,
            4.551_290_189_1e-1,
            -1.346_259_980_4e-1,
            1.441_443_800_8e-2,
        ];
        // No `array::map`: in the large kernel function LLVM left it out of
        // line (compiled without the wide vectors, one call per lane vector).
        let (mut minus_z2, mut t_q) = ([F::zero(); LANES], [F::zero(); LANES]);
        for i in 0..LANES {
            minus_z2[i] = -(x[i] * x[i] * F::of(0.5));
            let t = F::one() / (F::one() + F::of(0.5 * std::f64::consts::FRAC_1_SQRT_2) * x[i].abs());
            let mut poly = F::of(Q[9]);
            for c in Q[..9].iter().rev() {
                poly = if FMA { poly.mul_add(t, F::of(*c)) } else { poly * t + F::of(*c) };
            }
            t_q[i] = t * poly;
        }
        let gauss = self.exp_nonpositive(&minus_z2); // e^{−z²}
        let (mut value, mut slope) = ([F::zero(); LANES], [F::zero(); LANES]);
        for i in 0..LANES {
            let half_erfc = F::of(0.5) * t_q[i] * gauss[i];
            let cdf = if x[i] >= F::zero() { F::one() - half_erfc } else { half_erfc };
            value[i] = x[i] * cdf;
            slope[i] = cdf + x[i] * gauss[i] * F::of(FRAC_1_SQRT_2PI);
        }
        (value, slope)
    }
}

/// `f` applied lane by lane (on copies, so that it compiles to one vector
/// instruction per operation).
#[inline(always)]
pub(crate) fn lanewise<F: Real>(a: Lane<F>, f: impl Fn(F) -> F) -> Lane<F> {
    let mut out = a;
    for x in &mut out {
        *x = f(*x);
    }
    out
}

/// `f(a[i], b[i])` lane by lane, as [`lanewise`].
#[inline(always)]
pub(crate) fn zip_lanes<F: Real>(a: Lane<F>, b: Lane<F>, f: impl Fn(F, F) -> F) -> Lane<F> {
    let mut out = a;
    for (x, y) in out.iter_mut().zip(b) {
        *x = f(*x, y);
    }
    out
}

/// `(p0 + p1) + (p2 + p3)` lane by lane.
#[inline(always)]
pub(crate) fn sum4<F: Real>(p: [Lane<F>; 4]) -> Lane<F> {
    let mut out = p[0];
    for i in 0..LANES {
        out[i] = (p[0][i] + p[1][i]) + (p[2][i] + p[3][i]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectorised_gelu_matches_the_library_erf() {
        let xs: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.003).chain([-30.0, -9.0, 9.0, 30.0]).collect();
        let mut worst = (0.0f64, 0.0f64);
        for chunk in xs.chunks(LANES) {
            let mut lanes = [0.0f32; LANES];
            lanes[..chunk.len()].copy_from_slice(chunk);
            for (value, slope) in
                [Ops::<true>.activation(Act::Gelu, &lanes), Ops::<false>.activation(Act::Gelu, &lanes)]
            {
                for i in 0..LANES {
                    let x = f64::from(lanes[i]);
                    let (v, s) = (Act::Gelu.apply(x), Act::Gelu.derivative(x));
                    worst.0 = worst.0.max((f64::from(value[i]) - v).abs() / v.abs().max(1e-3));
                    // the slope crosses 0 near x = −0.75 as a difference of two terms near 0.2: absolute error
                    worst.1 = worst.1.max((f64::from(slope[i]) - s).abs());
                }
            }
        }
        assert!(
            worst.0 < 1e-6 && worst.1 < 1e-6,
            "worst error: value {:.2e} (relative), slope {:.2e} (absolute)",
            worst.0,
            worst.1
        );
    }

    #[test]
    fn lane_sums_add_each_vector_in_the_order_of_fold() {
        // values whose sums depend on the order of addition
        let x: [Lane<f32>; LANES] = std::array::from_fn(|k| {
            std::array::from_fn(|i| ((k * 31 + i * 17) % 23) as f32 * 0.1 - 1.0 + 1e-7 * i as f32)
        });
        for n in [1, 2, 4, 8, 16] {
            let mut got = [0.0f32; LANES];
            lane_sums(&x[..n], &mut got[..n]);
            for k in 0..n {
                assert_eq!(got[k].to_bits(), fold(&mut x[k].clone()).to_bits(), "{n} vectors, vector {k}");
            }
        }
    }

    #[test]
    fn vectorised_exp_matches_the_library_exp() {
        let xs: Vec<f64> = (0..=4000).map(|i| -(i as f64) * 0.0217).chain([0.0, -1e-12, -86.9, -200.0]).collect();
        for chunk in xs.chunks(LANES) {
            let mut lanes = [0.0f64; LANES];
            lanes[..chunk.len()].copy_from_slice(chunk);
            for (fma, got) in
                [(true, Ops::<true>.exp_nonpositive(&lanes)), (false, Ops::<false>.exp_nonpositive(&lanes))]
            {
                for (x, e) in lanes.iter().zip(got) {
                    let want = x.max(-87.0).exp();
                    assert!((e - want).abs() <= 4e-16 * want, "fma {fma}: exp({x}) = {e}, want {want}");
                }
            }
            let lanes32: [f32; LANES] = std::array::from_fn(|i| lanes[i] as f32);
            for (x, e) in lanes32.iter().zip(Ops::<true>.exp_nonpositive(&lanes32)) {
                let want = x.max(-87.0).exp();
                assert!((e - want).abs() <= 3.0 * f32::EPSILON * want, "exp({x}) = {e}, want {want}");
            }
        }
    }
}
