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

use crate::kernel::lanes::{LANES, Lane, Ops, zip_lanes};
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
    #[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see the tiles below
    fn put<const U: usize, const V: usize>(&mut self, i0: usize, at: usize, x: &[[Lane<F>; V]; U])
    where
        F: Copy,
    {
        // Lane by lane, not `copy_from_slice`: a copy of the whole tile kept
        // its sums in memory instead of registers (a store per multiply-add).
        for u in 0..U {
            let row = &mut self.data[self.start + (i0 + u) * self.stride + at..][..V];
            for v in 0..V {
                row[v] = x[u][v];
            }
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

// The tiles below are plain indexed loops on purpose: this code is inlined
// into one very large kernel function, where LLVM stopped inlining
// `std::array::from_fn`, `array::map`, iterator adaptors and closures, called
// them per tile and kept the tile's sums in memory; `copy_from_slice` (a
// `memcpy`) kept them there too.

/// `[rows(i0 + u)[at..at + n]; U]`: entries of `U` consecutive rows.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn rows_at<'a, F, const U: usize>(rows: Rows<'a, F>, i0: usize, at: usize, n: usize) -> [&'a [Lane<F>]; U] {
    let mut out: [&[Lane<F>]; U] = [&[]; U];
    for u in 0..U {
        out[u] = rows.get(i0 + u, at, n);
    }
    out
}

/// The first `N` lane vectors of `row`, as an array.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn first<F: Real, const N: usize>(row: &[Lane<F>]) -> [Lane<F>; N] {
    let row = &row[..N];
    let mut out = [[F::zero(); LANES]; N];
    for n in 0..N {
        out[n] = row[n];
    }
    out
}

/// `x[u][v] += a[u] · b[v]` for the whole tile.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn fma_tile<F: Real, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    x: &mut [[Lane<F>; V]; U],
    a: &[Lane<F>; U],
    b: &[Lane<F>; V],
) {
    for u in 0..U {
        for v in 0..V {
            ops.fma(&mut x[u][v], &a[u], &b[v]);
        }
    }
}

/// `x[u][v] = a_u · b_v` for rows `a_u`, `b_v` of `k` entries: the `U·V`
/// sums stay in registers and each loaded lane serves `V` (or `U`) of them.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn dot_tile<F: Real, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    k: usize,
    mut a: [&[Lane<F>]; U],
    mut b: [&[Lane<F>]; V],
) -> [[Lane<F>; V]; U] {
    let zero = [F::zero(); LANES];
    for u in 0..U {
        a[u] = &a[u][..k];
    }
    for v in 0..V {
        b[v] = &b[v][..k];
    }
    let mut x = [[zero; V]; U];
    for c in 0..k {
        let (mut av, mut bv) = ([zero; U], [zero; V]);
        for u in 0..U {
            av[u] = a[u][c];
        }
        for v in 0..V {
            bv[v] = b[v][c];
        }
        fma_tile(ops, &mut x, &av, &bv);
    }
    x
}

/// `x[u][v] = Σ_{j<n} w_u[j] · rows(j)[at + v]`: weights of `U` rows mixing
/// `V` entries of `n` rows.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn mix_tile<F: Real, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    n: usize,
    mut w: [&[Lane<F>]; U],
    rows: Rows<F>,
    at: usize,
) -> [[Lane<F>; V]; U] {
    let zero = [F::zero(); LANES];
    for u in 0..U {
        w[u] = &w[u][..n];
    }
    let mut x = [[zero; V]; U];
    for j in 0..n {
        let mut av = [zero; U];
        for u in 0..U {
            av[u] = w[u][j];
        }
        fma_tile(ops, &mut x, &av, &first(rows.get(j, at, V)));
    }
    x
}

/// `x[u][v] = Σ_{i in span} w[i·t + j0 + u] · rows(i)[at + v]`: a column
/// block `j0..j0 + U` of a `[T, T]` table mixing `V` entries of the rows.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see above
fn column_mix_tile<F: Real, const FMA: bool, const U: usize, const V: usize>(
    ops: Ops<FMA>,
    span: std::ops::Range<usize>,
    (w, t, j0): (&[Lane<F>], usize, usize),
    rows: Rows<F>,
    at: usize,
) -> [[Lane<F>; V]; U] {
    let mut x = [[[F::zero(); LANES]; V]; U];
    for i in span {
        fma_tile(ops, &mut x, &first(&w[i * t + j0..]), &first(rows.get(i, at, V)));
    }
    x
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

/// `table[(i0 + u)·t + j0 + v] = x[u][v] · scale` (the `[T, T]` pattern).
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::manual_memcpy)] // see the tiles above
fn put_scaled<F: Real, const U: usize, const V: usize>(
    table: &mut [Lane<F>],
    t: usize,
    (i0, j0): (usize, usize),
    x: &[[Lane<F>; V]; U],
    scale: F,
) {
    for u in 0..U {
        let row = &mut table[(i0 + u) * t + j0..][..V];
        for v in 0..V {
            for lane in 0..LANES {
                row[v][lane] = x[u][v][lane] * scale;
            }
        }
    }
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
    let qs = rows_at::<F, U>(q, i0, 0, kd);
    // scores of the block's queries against keys 0..n, scaled
    let whole = n / 4 * 4;
    for j0 in (0..whole).step_by(4) {
        let s = dot_tile::<F, FMA, U, 4>(ops, kd, qs, rows_at(k, j0, 0, kd));
        put_scaled(pattern, t, (i0, j0), &s, head.scale);
    }
    for j in whole..n {
        let s = dot_tile::<F, FMA, U, 1>(ops, kd, qs, [k.get(j, 0, kd)]);
        put_scaled(pattern, t, (i0, j), &s, head.scale);
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
    let ws = rows_at::<F, U>(Rows { data: pattern, start: 0, stride: t }, i0, 0, n);
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
    let dzs = rows_at::<F, U>(dz, i0, 0, kd);
    // The same loops as the forward's scores, unscaled.
    let whole = n / 4 * 4;
    for j0 in (0..whole).step_by(4) {
        let x = dot_tile::<F, FMA, U, 4>(ops, kd, dzs, rows_at(v, j0, 0, kd));
        RowsMut { data: &mut *ds, start: 0, stride: t }.put(i0, j0, &x);
    }
    for j in whole..n {
        let x = dot_tile::<F, FMA, U, 1>(ops, kd, dzs, [v.get(j, 0, kd)]);
        RowsMut { data: &mut *ds, start: 0, stride: t }.put(i0, j, &x);
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
    let ws = rows_at::<F, U>(Rows { data: ds, start: 0, stride: t }, i0, 0, n);
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
