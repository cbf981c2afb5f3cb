//! The fast path for context-1 models: forward, loss and backward fused into
//! one pass, laid out for the vector units and split across cores.
//!
//! With one token the softmax is exactly 1, so each layer is
//! `r ← r + Σ_h (r W_V[h]) W_O[h]` and `W_Q`, `W_K` get zero gradient (as in
//! PyTorch). This file computes the same loss and gradient as
//! [`crate::model::Model::forward`] + [`crate::model::mse_loss`] +
//! [`crate::model::Model::backward`] (tested to rounding in
//! `tests/kernel.rs`), but:
//! - samples are processed `LANES` at a time in structure-of-arrays form
//!   (`[F; LANES]` per quantity), so each arithmetic line is one vector
//!   instruction across samples;
//! - the batch is cut into fixed chunks of `CHUNK` samples that run in
//!   parallel; per-chunk gradients are summed in chunk order, so the result
//!   is bit-identical whatever the number of threads;
//! - every buffer is allocated once ([`Ctx1Kernel::new`]), none in the step;
//! - the code is compiled for AVX-512 and for AVX2, both with fused
//!   multiply-add, and the CPU's best is chosen at run time (`lane_dispatch!`);
//!   a CPU without FMA takes the portable path. Results are identical on every
//!   CPU with FMA and may differ in the last bits on one without. A kernel can
//!   also be built for a lower level ([`Kernel::with_simd`]), which is how the
//!   tests check every level the CPU has.
//!
//! # Shapes
//! ```text
//! B batch   D d_model   H heads   K d_head   L layers   P parameters
//! batch rows  [2] inputs, [2] targets     grads  [P]
//! per lane group: r [(L+1)·D] lanes, v [L·H·K] lanes, dr [D], dv [H·K]
//! ```

use std::ops::Range;

use rayon::prelude::*;

use crate::kernel_seq::SeqKernel;
use crate::model::{D_IN, Layout, Model};
use crate::real::Real;

/// Samples per vector group.
pub const LANES: usize = 16;
/// Samples per parallel work item (fixed, so results do not depend on threads).
pub const CHUNK: usize = 512;

/// One value per sample of a lane group.
pub(crate) type Lane<F> = [F; LANES];

/// The sequences of one batch: rows of `[N, T, 2]` input and target
/// buffers, either all of them in order or the ones `rows` picks (a batch
/// drawn from a fixed training set is read in place, inside each chunk).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a, F> {
    /// `[N, T, 2]` inputs.
    pub inputs: &'a [F],
    /// `[N, T, 2]` targets.
    pub targets: &'a [F],
    /// The rows in the batch; `None` for all rows in order.
    pub rows: Option<&'a [u32]>,
    /// Values per sequence, `T·2`.
    pub width: usize,
}

impl<'a, F> Batch<'a, F> {
    /// Sequences in the batch.
    pub fn len(&self) -> usize {
        self.rows.map_or(self.inputs.len() / self.width, <[u32]>::len)
    }

    /// True for a batch without sequences.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Input and target of the batch's `i`-th sequence, each `[T, 2]`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> (&'a [F], &'a [F]) {
        let row = self.rows.map_or(i, |r| r[i] as usize);
        let span = row * self.width..(row + 1) * self.width;
        (&self.inputs[span.clone()], &self.targets[span])
    }
}

/// The training step's loss-and-gradient kernel: the fused context-1 path,
/// or the lane kernel with full attention for longer contexts.
#[derive(Clone, Debug)]
pub enum Kernel<F> {
    /// `n_ctx == 1`.
    Ctx1(Ctx1Kernel<F>),
    /// `n_ctx > 1`.
    Seq(SeqKernel<F>),
}

impl<F: Real> Kernel<F> {
    /// The right kernel for `model`, with buffers for `batch` sequences, on
    /// the widest vector unit the CPU has.
    pub fn new(model: &Model<F>, batch: usize) -> Self {
        Self::with_simd(model, batch, Simd::best())
    }

    /// As [`Kernel::new`], compiled for `simd` (or the widest level below it
    /// that the CPU has).
    pub fn with_simd(model: &Model<F>, batch: usize, simd: Simd) -> Self {
        if model.cfg.n_ctx == 1 {
            Kernel::Ctx1(Ctx1Kernel::new(model, batch, simd))
        } else {
            Kernel::Seq(SeqKernel::new(model, batch, simd))
        }
    }

    /// Mean loss over scored tokens of `batch` and its gradient in `grads` (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        match self {
            Kernel::Ctx1(k) => k.loss_and_grad(model, batch, grads),
            Kernel::Seq(k) => k.loss_and_grad(model, batch, grads),
        }
    }
}

/// Per-chunk work buffers.
#[derive(Clone, Debug)]
struct Work<F> {
    acc: Vec<Lane<F>>, // [P]        per-lane gradient sums
    r: Vec<Lane<F>>,   // [(L+1)·D]  residual after each layer
    v: Vec<Lane<F>>,   // [L·H·K]    values of each layer
    dr: Vec<Lane<F>>,  // [D]        gradient w.r.t. the residual
    dv: Vec<Lane<F>>,  // [H·K]      gradient w.r.t. one layer's values
    grad: Vec<F>,      // [P]        this chunk's gradient
    loss: f64,         //            this chunk's sum of squared errors
}

/// The fused context-1 kernel with its buffers for one batch size.
#[derive(Clone, Debug)]
pub struct Ctx1Kernel<F> {
    simd: Simd,
    work: Vec<Work<F>>, // one per chunk
}

impl<F: Real> Ctx1Kernel<F> {
    /// Buffers for batches of up to `batch` samples of `model` (which must
    /// have `n_ctx == 1`), running on `simd` (see [`Kernel::with_simd`]).
    pub fn new(model: &Model<F>, batch: usize, simd: Simd) -> Self {
        let c = &model.cfg;
        assert_eq!(c.n_ctx, 1, "the fused kernel is for context-1 models");
        let zero = [F::zero(); LANES];
        let work = Work {
            acc: vec![zero; model.params.len()],
            r: vec![zero; (c.n_layers + 1) * c.d_model],
            v: vec![zero; c.n_layers * c.n_heads * c.d_head],
            dr: vec![zero; c.d_model],
            dv: vec![zero; c.n_heads * c.d_head],
            grad: vec![F::zero(); model.params.len()],
            loss: 0.0,
        };
        Ctx1Kernel { simd, work: vec![work; batch.div_ceil(CHUNK).max(1)] }
    }

    /// Mean over samples of `‖pred − target‖²`, and its gradient in `grads` `[P]`
    /// (overwritten).
    pub fn loss_and_grad(&mut self, model: &Model<F>, batch: &Batch<F>, grads: &mut [F]) -> f64 {
        let n = batch.len();
        let g = F::of(2.0 / n as f64);
        let (simd, work) = (self.simd, &mut self.work[..n.div_ceil(CHUNK)]);
        let loss = run_chunks(work, grads, |i, w| chunk(simd, model, batch, i * CHUNK..((i + 1) * CHUNK).min(n), g, w));
        loss / n as f64
    }
}

/// Runs `f` on a worker of the global thread pool. A training loop should
/// run there: the kernels' parallel chunks then fork from a worker, which
/// costs little, instead of being injected into the pool from outside it,
/// which costs a cross-thread wake-up on every step.
pub fn on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// What every chunk of a lane kernel leaves behind.
pub(crate) trait ChunkOutput<F> {
    /// The chunk's gradient sum `[P]`.
    fn grad(&self) -> &[F];
    /// The chunk's sum of squared errors.
    fn loss(&self) -> f64;
}

impl<F> ChunkOutput<F> for Work<F> {
    fn grad(&self) -> &[F] {
        &self.grad
    }
    fn loss(&self) -> f64 {
        self.loss
    }
}

/// Runs `run(i, &mut work[i])` for every chunk (in parallel when there are
/// several), then sums the chunk gradients into `grads` in chunk order, so
/// the result does not depend on the thread count. Returns the summed loss.
pub(crate) fn run_chunks<F: Real, W: ChunkOutput<F> + Send>(
    work: &mut [W],
    grads: &mut [F],
    run: impl Fn(usize, &mut W) + Sync,
) -> f64 {
    if work.len() > 1 {
        work.par_iter_mut().enumerate().for_each(|(i, w)| run(i, w));
    } else {
        work.iter_mut().enumerate().for_each(|(i, w)| run(i, w));
    }
    grads.copy_from_slice(work[0].grad());
    let mut loss = work[0].loss();
    for w in &work[1..] {
        grads.iter_mut().zip(w.grad()).for_each(|(a, b)| *a += *b);
        loss += w.loss();
    }
    loss
}

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
        fn $name<F: Real>(simd: $crate::kernel::Simd, $($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernel::Simd;
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

lane_dispatch! {
    /// One chunk on the widest vector unit the CPU has.
    fn chunk => chunk_lanes(model: &Model<F>, batch: &Batch<F>, span: Range<usize>, g: F, w: &mut Work<F>)
}

#[inline(always)]
fn chunk_lanes<F: Real, const FMA: bool>(
    model: &Model<F>,
    batch: &Batch<F>,
    span: Range<usize>,
    g: F,
    w: &mut Work<F>,
) {
    let zero = [F::zero(); LANES];
    w.acc.iter_mut().for_each(|a| *a = zero);
    let mut loss = zero;
    for start in span.clone().step_by(LANES) {
        let live = (span.end - start).min(LANES);
        let (mut s, mut y) = ([zero; D_IN], [zero; D_IN]);
        let mut gain = zero; // g for real samples, 0 for padding lanes
        for i in 0..live {
            let (input, target) = batch.get(start + i);
            for c in 0..D_IN {
                s[c][i] = input[c];
                y[c][i] = target[c];
            }
            gain[i] = g;
        }
        group::<F, FMA>(model, &s, &y, &gain, &mut loss, w);
    }
    w.loss = sum_lanes(&loss, &w.acc, &mut w.grad);
}

/// Folds per-lane sums into a chunk's result: each gradient entry is its
/// lanes' sum (in lane order), and the returned loss the lanes' sum in f64.
pub(crate) fn sum_lanes<F: Real>(loss: &Lane<F>, acc: &[Lane<F>], grad: &mut [F]) -> f64 {
    for (g, a) in grad.iter_mut().zip(acc) {
        *g = a.iter().fold(F::zero(), |x, y| x + *y);
    }
    loss.iter().map(|l| l.f64()).sum()
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
            let n = (x * F::of(std::f64::consts::LOG2_E)).round();
            let r = (x - n * F::of(LN2_HI)) - n * F::of(LN2_LO);
            let mut fact = f64::from((1..=degree).product::<u32>());
            let mut p = F::of(1.0 / fact);
            for k in (0..degree).rev() {
                fact /= f64::from(k + 1);
                p = if FMA { p.mul_add(r, F::of(1.0 / fact)) } else { p * r + F::of(1.0 / fact) };
            }
            *v = p * F::exp2i(n.to_i32().unwrap_or(-126));
        }
        out
    }
}

/// `(p0 + p1) + (p2 + p3)` lane by lane.
#[inline(always)]
fn sum4<F: Real>(p: [Lane<F>; 4]) -> Lane<F> {
    let mut out = p[0];
    for i in 0..LANES {
        out[i] = (p[0][i] + p[1][i]) + (p[2][i] + p[3][i]);
    }
    out
}

/// Forward, loss and backward for one group of `LANES` samples, accumulating
/// per-lane gradients into `w.acc` and squared errors into `loss`.
#[inline(always)]
fn group<F: Real, const FMA: bool>(
    model: &Model<F>,
    s: &[Lane<F>; D_IN],
    y: &[Lane<F>; D_IN],
    gain: &Lane<F>,
    loss: &mut Lane<F>,
    w: &mut Work<F>,
) {
    let (cfg, p, lay): (_, &[F], &Layout) = (&model.cfg, &model.params, &model.layout);
    let (d, h, k) = (cfg.d_model, cfg.n_heads, cfg.d_head);
    let Work { acc, r, v, dr, dv, .. } = w;
    let ops = Ops::<FMA>;

    // forward: embedding (positional row 0 acts as a second bias)
    for j in 0..d {
        let bias = p[lay.b_e.start + j] + lay.w_pos.as_ref().map_or(F::zero(), |wp| p[wp.start + j]);
        let mut x = [bias; LANES];
        for c in 0..D_IN {
            ops.axpy(&mut x, &s[c], p[lay.w_e.start + c * d + j]);
        }
        r[j] = x;
    }
    // forward: each layer, r ← r + Σ_h (r W_V[h]) W_O[h]
    for (l, bl) in lay.blocks.iter().enumerate() {
        let (r_in, r_out) = r[l * d..(l + 2) * d].split_at_mut(d);
        let vl = &mut v[l * h * k..(l + 1) * h * k];
        for (hk, out) in vl.iter_mut().enumerate() {
            let (hh, kk) = (hk / k, hk % k);
            let mut x = [F::zero(); LANES];
            for dd in 0..d {
                ops.axpy(&mut x, &r_in[dd], p[bl.w_v.start + (hh * d + dd) * k + kk]);
            }
            *out = x;
        }
        for j in 0..d {
            let mut x = r_in[j];
            for hk in 0..h * k {
                ops.axpy(&mut x, &vl[hk], p[bl.w_o.start + hk * d + j]);
            }
            r_out[j] = x;
        }
    }
    // unembed and loss: e = pred − y, d pred = g e
    let r_last = &r[cfg.n_layers * d..];
    let mut dp = [[F::zero(); LANES]; D_IN];
    for c in 0..D_IN {
        let mut pred = [p[lay.b_u.start + c]; LANES];
        for j in 0..d {
            ops.axpy(&mut pred, &r_last[j], p[lay.w_u.start + j * D_IN + c]);
        }
        for i in 0..LANES {
            let e = pred[i] - y[c][i];
            loss[i] += if gain[i] == F::zero() { F::zero() } else { e * e };
            dp[c][i] = gain[i] * e;
        }
        for i in 0..LANES {
            acc[lay.b_u.start + c][i] += dp[c][i];
        }
        for j in 0..d {
            ops.fma(&mut acc[lay.w_u.start + j * D_IN + c], &r_last[j], &dp[c]);
        }
    }
    for j in 0..d {
        let mut x = [F::zero(); LANES];
        for c in 0..D_IN {
            ops.axpy(&mut x, &dp[c], p[lay.w_u.start + j * D_IN + c]);
        }
        dr[j] = x;
    }
    // backward through each layer, last first
    for (l, bl) in lay.blocks.iter().enumerate().rev() {
        let r_in = &r[l * d..(l + 1) * d];
        let vl = &v[l * h * k..(l + 1) * h * k];
        for hk in 0..h * k {
            let mut x = [F::zero(); LANES];
            for j in 0..d {
                ops.fma(&mut acc[bl.w_o.start + hk * d + j], &vl[hk], &dr[j]);
                ops.axpy(&mut x, &dr[j], p[bl.w_o.start + hk * d + j]);
            }
            dv[hk] = x;
        }
        for hh in 0..h {
            for dd in 0..d {
                let row = bl.w_v.start + (hh * d + dd) * k;
                for kk in 0..k {
                    ops.fma(&mut acc[row + kk], &r_in[dd], &dv[hh * k + kk]);
                    ops.axpy(&mut dr[dd], &dv[hh * k + kk], p[row + kk]);
                }
            }
        }
    }
    // backward through the embedding
    for j in 0..d {
        for i in 0..LANES {
            acc[lay.b_e.start + j][i] += dr[j][i];
        }
        if let Some(wp) = &lay.w_pos {
            for i in 0..LANES {
                acc[wp.start + j][i] += dr[j][i];
            }
        }
        for c in 0..D_IN {
            ops.fma(&mut acc[lay.w_e.start + c * d + j], &s[c], &dr[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
