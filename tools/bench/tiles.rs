//! The sequence kernel's two register tiles on their own, quoted in
//! BENCHMARKS.md to say what bounds the kernel: the weight gradients' 4 × 4
//! tile (`block_outer` in `src/kernel/seq.rs`) and the projections' two
//! tokens × four outputs (`project` in `src/kernel/pack.rs`), copied in the
//! kernel's lane layout (a value is 16 f32 lanes, one sequence per lane;
//! token tables row-major, a row per token) and run on tables sized to sit in
//! L1, in L2, or beyond it (eight layers' tables, as the kernel keeps them).
//! Same arithmetic as the kernel, none of its surroundings. x86-64 with
//! AVX-512F only.
//!
//! ```sh
//! rustc -O tools/bench/tiles.rs -o /tmp/tiles && /tmp/tiles
//! ```
use std::time::Instant;

/// One value for 16 sequences.
type Lane = [f32; 16];

/// Token tables, aligned to cache lines as the kernel's buffers are.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Aligned(Lane);

/// `x += a · b` lane by lane.
#[inline(always)]
fn fma(x: &mut Lane, a: &Lane, b: &Lane) {
    for i in 0..16 {
        x[i] = a[i].mul_add(b[i], x[i]);
    }
}

/// `dw[i, j] += Σ_t Σ_lanes a[t, i] · b[t, j]` for tables `a [t, aw]`,
/// `b [t, bw]`: 4 × 4 blocks of sums in registers, the `b` blocks innermost
/// (the kernel's `outer_sum`). Two variants for diagnosis: `B_BLOCKS`
/// reads `b` stored block-major (value `(t, j)` at `(j / 4)·t·4 + t·4 + j % 4`,
/// so a block's 40 tokens are one contiguous run instead of 40 rows a table
/// width apart); without `LANE_SUMS` each block adds one lane of each sum
/// instead of summing the lanes (wrong sums: it times the tile without
/// its epilogue).
#[inline(never)]
#[target_feature(enable = "avx512f,fma")]
fn outer<const B_BLOCKS: bool, const LANE_SUMS: bool>(
    dw: &mut [f32],
    a: &[Lane],
    aw: usize,
    b: &[Lane],
    bw: usize,
    t: usize,
) {
    for i0 in (0..aw).step_by(4) {
        for j0 in (0..bw).step_by(4) {
            let mut x = [[[0f32; 16]; 4]; 4];
            for tt in 0..t {
                let av: [Lane; 4] = std::array::from_fn(|u| a[tt * aw + i0 + u]);
                let b_at = if B_BLOCKS { j0 * t + tt * 4 } else { tt * bw + j0 };
                let bv: [Lane; 4] = std::array::from_fn(|v| b[b_at + v]);
                for (row, au) in x.iter_mut().zip(&av) {
                    for (xv, bvv) in row.iter_mut().zip(&bv) {
                        fma(xv, au, bvv);
                    }
                }
            }
            let mut sums = [0f32; 16];
            if LANE_SUMS {
                lane_sums(x.as_flattened(), &mut sums);
            } else {
                for (k, xv) in x.as_flattened().iter().enumerate() {
                    sums[k] = xv[k];
                }
            }
            for (u, row) in sums.chunks_exact(4).enumerate() {
                for (v, s) in row.iter().enumerate() {
                    dw[(i0 + u) * bw + j0 + v] += s;
                }
            }
        }
    }
}

/// `out[k]` = the lane sum of `x[k]` for 16 lane values, pairwise and
/// sharing vector additions between sources (the kernel's `lane_sums`):
/// each step adds the halves of every source's remaining lanes and packs two
/// sources' results into one vector.
#[inline(always)]
fn lane_sums(x: &[Lane], out: &mut [f32; 16]) {
    let mut v = [[0f32; 16]; 16];
    v.copy_from_slice(x); // not `array::from_fn`: LLVM may leave that out of line
    let (mut n, mut w) = (16, 16); // vectors left, lanes per source
    while n > 1 {
        let h = w / 2;
        for j in 0..n / 2 {
            let (a, b) = (v[2 * j], v[2 * j + 1]);
            let mut sum = a;
            for (i, s) in sum.iter_mut().enumerate() {
                let (src, k) = if i < 8 { (&a, i) } else { (&b, i - 8) };
                let at = k / h * w + k % h;
                *s = src[at] + src[at + h];
            }
            v[j] = sum;
        }
        (n, w) = (n / 2, h);
    }
    *out = v[0];
}

/// `out[t, o] = Σ_i x[t, i] · w[i, o]` with `w` packed in blocks of four
/// outputs (`packed[(o / 4)·n_in·4 + i·4 + o % 4]`), two tokens at a time:
/// eight sums in registers (the kernel's `project`).
#[inline(never)]
#[target_feature(enable = "avx512f,fma")]
fn project(x: &[Lane], n_in: usize, packed: &[f32], out: &mut [Lane], n_out: usize) {
    for (xx, oo) in x.chunks_exact(2 * n_in).zip(out.chunks_exact_mut(2 * n_out)) {
        let ((x0, x1), (o0, o1)) = (xx.split_at(n_in), oo.split_at_mut(n_out));
        let blocks = o0.chunks_exact_mut(4).zip(o1.chunks_exact_mut(4));
        for ((b0, b1), w) in blocks.zip(packed.chunks_exact(n_in * 4)) {
            let (mut s0, mut s1) = ([[0f32; 16]; 4], [[0f32; 16]; 4]);
            for ((a0, a1), wb) in x0.iter().zip(x1).zip(w.chunks_exact(4)) {
                for u in 0..4 {
                    fma(&mut s0[u], a0, &[wb[u]; 16]);
                    fma(&mut s1[u], a1, &[wb[u]; 16]);
                }
            }
            b0.copy_from_slice(&s0);
            b1.copy_from_slice(&s1);
        }
    }
}

/// A zeroed table of `n` lane values.
fn table(n: usize, value: f32) -> Vec<Aligned> {
    vec![Aligned([value; 16]); n]
}

/// The lane values of an aligned table.
fn lanes(t: &[Aligned]) -> &[Lane] {
    // SAFETY: `Aligned` is `repr(C)` around one `Lane`, so the slices have the same layout.
    unsafe { std::slice::from_raw_parts(t.as_ptr().cast::<Lane>(), t.len()) }
}

/// The same, mutable.
fn lanes_mut(t: &mut [Aligned]) -> &mut [Lane] {
    // SAFETY: as in `lanes`.
    unsafe { std::slice::from_raw_parts_mut(t.as_mut_ptr().cast::<Lane>(), t.len()) }
}

/// Gflop/s of `pass` (one call over every layer does `flops`), timed for
/// about half a second after one warm-up call; the best of three.
fn rate(flops: f64, mut pass: impl FnMut()) -> f64 {
    pass();
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed().as_secs_f64() < 0.1 {
        pass();
        calls += 1;
    }
    let per_round = calls.max(1) * 5;
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                pass();
            }
            flops * per_round as f64 / start.elapsed().as_secs_f64() * 1e-9
        })
        .fold(0.0, f64::max)
}

fn main() {
    if !std::is_x86_feature_detected!("avx512f") || !std::is_x86_feature_detected!("fma") {
        eprintln!("tiles: this CPU has no AVX-512F with FMA; the tiles are written for it");
        std::process::exit(1);
    }
    // (name, tokens, narrow width, wide width, layers): the kernel's `deep_mlp`
    // tables are 40 tokens of d_model 32 and d_mlp 128 per layer
    let cases = [
        ("in L1: 40 × 8, 40 × 8", 40, 8, 8, 1),
        ("one layer: 40 × 32, 40 × 128", 40, 32, 128, 1),
        ("eight layers of those", 40, 32, 128, 8),
    ];
    println!("Gflop/s on one core: the weight gradients' 4 × 4 tile as in the kernel, with the");
    println!("wide table block-major, without the lane sums; the projections' 2 × 4 tile");
    println!("{:<30} {:>8} {:>12} {:>14} {:>9}", "tables", "W grad", "block-major", "no lane sums", "project");
    for (name, t, d, m, layers) in cases {
        let narrow = table(layers * t * d, 1.0);
        let wide = table(layers * t * m, 0.5);
        let mut out = table(layers * t * m, 0.0);
        let mut dw = vec![0f32; layers * d * m];
        let packed = vec![0.25f32; layers * d * m];
        let flops = (2 * layers * t * d * m * 16) as f64;
        let mut grad = |f: unsafe fn(&mut [f32], &[Lane], usize, &[Lane], usize, usize)| {
            rate(flops, || {
                for l in 0..layers {
                    let (a, b) = (&lanes(&narrow)[l * t * d..][..t * d], &lanes(&wide)[l * t * m..][..t * m]);
                    // SAFETY: the CPU has AVX-512F and FMA, checked at the start.
                    unsafe { f(&mut dw[l * d * m..][..d * m], a, d, b, m, t) };
                }
            })
        };
        let kernel = grad(outer::<false, true>);
        let blocks = grad(outer::<true, true>);
        let no_sums = grad(outer::<false, false>);
        let proj = rate(flops, || {
            for l in 0..layers {
                let x = &lanes(&narrow)[l * t * d..][..t * d];
                let o = &mut lanes_mut(&mut out)[l * t * m..][..t * m];
                // SAFETY: as above.
                unsafe { project(x, d, &packed[l * d * m..][..d * m], o, m) };
            }
        });
        println!("{name:<30} {kernel:>8.1} {blocks:>12.1} {no_sums:>14.1} {proj:>9.1}");
        std::hint::black_box((&dw, &out));
    }
}
