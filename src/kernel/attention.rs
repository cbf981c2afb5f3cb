//! One attention head of the sequence kernel ([`crate::kernel::seq`]),
//! forward and backward, over lane rows (every entry a lane vector of
//! `LANES` sequences).
//!
//! Every product is computed in register tiles ([`tile`]): `U × V` sums
//! (`U` query or key rows by `V` key rows or head entries, four by four where
//! the sizes allow) stay in registers while one pass over the shared
//! dimension loads `U + V` lane vectors for `U·V` multiply-adds. Rows of
//! queries go in blocks of four; under the causal mask a block reads the keys
//! up to its last row, and the pattern (and its gradient) holds exact zeros
//! above the diagonal inside the block, so the products over whole blocks
//! add nothing there.
//!
//! # Shapes (one head; `T` context, `K` d_head)
//! ```text
//! q, k, v, dz   [T, K]   rows inside a token table (`Rows`)
//! pattern, ds   [T, T]   row i: the weights (or score gradients) of query i over keys j
//! ```

use crate::kernel::lanes::{LANES, Lane, Ops, lanewise, zip_lanes};
use crate::util::real::Real;

/// The rows of a row-major token table that belong to one head (its
/// queries, keys, values or output gradients): row `i` starts at
/// `data[start + i·stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows<'a, F> {
    pub(crate) data: &'a [Lane<F>],
    pub(crate) start: usize,
    pub(crate) stride: usize,
}

impl<'a, F> Rows<'a, F> {
    /// Entries `at..at + n` of row `i`.
    #[inline(always)]
    fn get(&self, i: usize, at: usize, n: usize) -> &'a [Lane<F>] {
        &self.data[self.start + i * self.stride + at..][..n]
    }
}

/// The same for a table written to.
#[derive(Debug)]
pub(crate) struct RowsMut<'a, F> {
    pub(crate) data: &'a mut [Lane<F>],
    pub(crate) start: usize,
    pub(crate) stride: usize,
}

impl<F> RowsMut<'_, F> {
    /// Writes the `U × V` tile `x` at rows `i0..`, entries `at..`.
    #[inline(always)]
    fn put<const U: usize, const V: usize>(&mut self, i0: usize, at: usize, x: &[[Lane<F>; V]; U])
    where
        F: Copy,
    {
        for (u, row) in x.iter().enumerate() {
            self.data[self.start + (i0 + u) * self.stride + at..][..V].copy_from_slice(row);
        }
    }
}

/// A head's sizes: context `t`, width `k`, the mask and the score scale.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head<F> {
    pub(crate) t: usize,
    pub(crate) k: usize,
    pub(crate) causal: bool,
    pub(crate) scale: F,
}

impl<F> Head<F> {
    /// Keys query `i` sees.
    fn keys(&self, i: usize) -> usize {
        if self.causal { i + 1 } else { self.t }
    }
}

/// `x[u][v] = Σ_n a_n[u] · b_n[v]` over the steps `(a_n, b_n)`: the `U·V`
/// sums stay in registers and each loaded lane serves `V` (or `U`) of them.
/// Sums run in step order.
#[inline(always)]
fn tile<'a, F: Real + 'a, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    steps: impl Iterator<Item = ([&'a Lane<F>; U], [&'a Lane<F>; V])>,
) -> [[Lane<F>; V]; U] {
    let mut x = [[[F::zero(); LANES]; V]; U];
    for (a, b) in steps {
        let (a, b): ([Lane<F>; U], [Lane<F>; V]) = (a.map(|l| *l), b.map(|l| *l));
        for (xu, au) in x.iter_mut().zip(&a) {
            for (xuv, bv) in xu.iter_mut().zip(&b) {
                ops.fma(xuv, au, bv);
            }
        }
    }
    x
}

/// `x[u][v] = a_u · b_v` for rows `a_u`, `b_v` of `k` entries.
#[inline(always)]
fn dot_tile<F: Real, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    k: usize,
    a: [&[Lane<F>]; U],
    b: [&[Lane<F>]; V],
) -> [[Lane<F>; V]; U] {
    let (a, b) = (a.map(|r| &r[..k]), b.map(|r| &r[..k]));
    tile(ops, (0..k).map(|c| (a.map(|r| &r[c]), b.map(|r| &r[c]))))
}

/// `x[u][v] = Σ_{j<n} w_u[j] · rows(j)[at + v]`: weights of `U` rows mixing
/// `V` entries of `n` rows.
#[inline(always)]
fn mix_tile<'a, F: Real + 'a, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    n: usize,
    w: [&'a [Lane<F>]; U],
    rows: Rows<'a, F>,
    at: usize,
) -> [[Lane<F>; V]; U] {
    let w = w.map(|r| &r[..n]);
    tile(ops, (0..n).map(|j| (w.map(|r| &r[j]), std::array::from_fn(|v| &rows.get(j, at, V)[v]))))
}

/// `x[u][v] = Σ_{i in span} w[i·t + j0 + u] · rows(i)[at + v]`: a column
/// block `j0..j0 + U` of a `[T, T]` table mixing `V` entries of the rows.
#[inline(always)]
fn column_mix_tile<'a, F: Real + 'a, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    span: std::ops::Range<usize>,
    (w, t, j0): (&'a [Lane<F>], usize, usize),
    rows: Rows<'a, F>,
    at: usize,
) -> [[Lane<F>; V]; U] {
    let steps = span.map(move |i| {
        let wi = &w[i * t + j0..][..U];
        (std::array::from_fn(|u| &wi[u]), std::array::from_fn(|v| &rows.get(i, at, V)[v]))
    });
    tile(ops, steps)
}

/// Calls `f::<4>(i0)` for each whole block of four rows of `0..n` and
/// `f::<1>(i0)` for each row left over.
macro_rules! in_blocks {
    ($n:expr, $f:ident :: <$($g:tt),*> ($($arg:expr),*)) => {{
        let n = $n;
        let whole = n / 4 * 4;
        for i0 in (0..whole).step_by(4) {
            $f::<$($g,)* 4>($($arg,)* i0);
        }
        for i0 in whole..n {
            $f::<$($g,)* 1>($($arg,)* i0);
        }
    }};
}

/// The forward pass of one head: `pattern = softmax(q kᵀ · scale)` under
/// the mask (`[T, T]`, zero above the diagonal), `z = pattern v`.
#[inline(always)]
pub(crate) fn forward<F: Real, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    head: Head<F>,
    (q, k, v): (Rows<F>, Rows<F>, Rows<F>),
    pattern: &mut [Lane<F>],
    z: &mut RowsMut<F>,
) {
    in_blocks!(head.t, forward_rows::<F, FMA, B>(ops, head, (q, k, v), pattern, z));
}

/// [`forward`] for the queries `i0..i0 + U`.
#[inline(always)]
fn forward_rows<F: Real, const FMA: bool, const B: usize, const U: usize>(
    ops: Ops<FMA>,
    head: Head<F>,
    (q, k, v): (Rows<F>, Rows<F>, Rows<F>),
    pattern: &mut [Lane<F>],
    z: &mut RowsMut<F>,
    i0: usize,
) {
    let (t, kd) = (head.t, head.k);
    let n = head.keys(i0 + U - 1);
    let qs: [&[Lane<F>]; U] = std::array::from_fn(|u| q.get(i0 + u, 0, kd));
    // scores of the block's queries against keys 0..n, scaled
    let mut scores = |j0: usize, s: &[[Lane<F>; 4]]| {
        for (u, su) in s.iter().enumerate() {
            for (e, x) in pattern[(i0 + u) * t + j0..].iter_mut().zip(su) {
                *e = lanewise(*x, |x| x * head.scale);
            }
        }
    };
    let whole = n / 4 * 4;
    for j0 in (0..whole).step_by(4) {
        let s = dot_tile::<F, FMA, U, 4>(ops, kd, qs, std::array::from_fn(|v| k.get(j0 + v, 0, kd)));
        scores(j0, &s);
    }
    for j in whole..n {
        let s = dot_tile::<F, FMA, U, 1>(ops, kd, qs, [k.get(j, 0, kd)]);
        for (u, su) in s.iter().enumerate() {
            pattern[(i0 + u) * t + j] = lanewise(su[0], |x| x * head.scale);
        }
    }
    // softmax over each query's keys; zeros up to the block's last key
    for i in i0..i0 + U {
        let row = &mut pattern[i * t..i * t + n];
        let (seen, masked) = row.split_at_mut(head.keys(i));
        softmax(ops, seen);
        masked.fill([F::zero(); LANES]);
    }
    // z = pattern v, `B` entries at a time
    let pattern = &*pattern;
    let ws: [&[Lane<F>]; U] = std::array::from_fn(|u| &pattern[(i0 + u) * t..][..n]);
    for c0 in (0..kd).step_by(B) {
        z.put(i0, c0, &mix_tile::<F, FMA, U, B>(ops, n, ws, v, c0));
    }
}

/// `row = softmax(row)` in place.
#[inline(always)]
fn softmax<F: Real, const FMA: bool>(ops: Ops<FMA>, row: &mut [Lane<F>]) {
    let mut max = [F::neg_infinity(); LANES];
    for x in row.iter() {
        max = zip_lanes(max, *x, |m, x| if x > m { x } else { m });
    }
    let mut total = [F::zero(); LANES];
    for e in row.iter_mut() {
        *e = ops.exp_nonpositive(&zip_lanes(*e, max, |x, m| x - m));
        total = zip_lanes(total, *e, |a, b| a + b);
    }
    let inv = total.map(|sum| F::one() / sum);
    // In short runs: a loop of at most four is meant for the lane (SLP)
    // vectoriser; over the whole row, LLVM vectorised the per-query kernel
    // across rows with gathers (measured 2× slower). Here its inlined copies
    // still hold gathers, but a build without any ran no faster.
    for run in row.chunks_mut(4) {
        for e in run {
            *e = zip_lanes(*e, inv, |e, inv| e * inv);
        }
    }
}

/// Where [`backward`] writes `dq`, `dk` and `dv`: rows of one table, each
/// gradient starting at its own entry of the row.
pub(crate) type Grads<'g, 'a, F> = (&'g mut RowsMut<'a, F>, [usize; 3]);

/// The backward pass of one head, from the gradient `dz` of its output:
/// the score gradients in `ds` (`[T, T]`, zero above the diagonal) and
/// `dq`, `dk`, `dv` (overwritten).
#[inline(always)]
pub(crate) fn backward<F: Real, const FMA: bool, const B: usize>(
    ops: Ops<FMA>,
    head: Head<F>,
    (q, k, v, dz): (Rows<F>, Rows<F>, Rows<F>, Rows<F>),
    pattern: &[Lane<F>],
    ds: &mut [Lane<F>],
    grads: Grads<F>,
) {
    let (out, [at_q, at_k, at_v]) = grads;
    in_blocks!(head.t, score_grad_rows::<F, FMA, B>(ops, head, (k, v, dz), pattern, ds, (&mut *out, at_q)));
    let ds = &*ds;
    in_blocks!(head.t, key_grad_rows::<F, FMA, B>(ops, head, (q, dz), pattern, ds, (&mut *out, [at_k, at_v])));
}

/// For the queries `i0..i0 + U`: `ds[i, j] = P[i, j] (dz[i]·v[j] −
/// Σ_m P[i, m] dz[i]·v[m]) · scale` and `dq[i] = Σ_j ds[i, j] k[j]`.
#[inline(always)]
fn score_grad_rows<F: Real, const FMA: bool, const B: usize, const U: usize>(
    ops: Ops<FMA>,
    head: Head<F>,
    (k, v, dz): (Rows<F>, Rows<F>, Rows<F>),
    pattern: &[Lane<F>],
    ds: &mut [Lane<F>],
    (dq, at_q): (&mut RowsMut<F>, usize),
    i0: usize,
) {
    let (t, kd) = (head.t, head.k);
    let n = head.keys(i0 + U - 1);
    let dzs: [&[Lane<F>]; U] = std::array::from_fn(|u| dz.get(i0 + u, 0, kd));
    // The same loops as the forward's scores, unscaled. Kept apart: one
    // function shared by both ran `deep` 4–8 % slower (interleaved bench).
    let whole = n / 4 * 4;
    for j0 in (0..whole).step_by(4) {
        let x = dot_tile::<F, FMA, U, 4>(ops, kd, dzs, std::array::from_fn(|w| v.get(j0 + w, 0, kd)));
        for (u, xu) in x.iter().enumerate() {
            ds[(i0 + u) * t + j0..][..4].copy_from_slice(xu);
        }
    }
    for j in whole..n {
        let x = dot_tile::<F, FMA, U, 1>(ops, kd, dzs, [v.get(j, 0, kd)]);
        for (u, xu) in x.iter().enumerate() {
            ds[(i0 + u) * t + j] = xu[0];
        }
    }
    for i in i0..i0 + U {
        let (p, g) = (&pattern[i * t..][..n], &mut ds[i * t..][..n]);
        let seen = head.keys(i);
        let dot = ops.dot_ll([F::zero(); LANES], seen, |j| (&p[j], &g[j]));
        for (gj, pj) in g[..seen].iter_mut().zip(p) {
            *gj = zip_lanes(*pj, zip_lanes(*gj, dot, |x, y| x - y), |a, b| a * b * head.scale);
        }
        g[seen..].fill([F::zero(); LANES]);
    }
    let ds = &*ds;
    let ws: [&[Lane<F>]; U] = std::array::from_fn(|u| &ds[(i0 + u) * t..][..n]);
    for c0 in (0..kd).step_by(B) {
        dq.put(i0, at_q + c0, &mix_tile::<F, FMA, U, B>(ops, n, ws, k, c0));
    }
}

/// For the keys `j0..j0 + U`: `dk[j] = Σ_i ds[i, j] q[i]` and `dv[j] = Σ_i
/// P[i, j] dz[i]` over the queries that see them.
#[inline(always)]
fn key_grad_rows<F: Real, const FMA: bool, const B: usize, const U: usize>(
    ops: Ops<FMA>,
    head: Head<F>,
    (q, dz): (Rows<F>, Rows<F>),
    pattern: &[Lane<F>],
    ds: &[Lane<F>],
    (out, [at_k, at_v]): (&mut RowsMut<F>, [usize; 2]),
    j0: usize,
) {
    let t = head.t;
    let span = if head.causal { j0..t } else { 0..t };
    for c0 in (0..head.k).step_by(B) {
        out.put(j0, at_k + c0, &column_mix_tile::<F, FMA, U, B>(ops, span.clone(), (ds, t, j0), q, c0));
        out.put(j0, at_v + c0, &column_mix_tile::<F, FMA, U, B>(ops, span.clone(), (pattern, t, j0), dz, c0));
    }
}
