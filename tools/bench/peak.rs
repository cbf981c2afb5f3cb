//! The machine's arithmetic ceiling, quoted in BENCHMARKS.md: the core clock
//! (a chain of dependent `imul`, 3 cycles each) and the throughput of fused
//! multiply-adds with 12 independent accumulators, 256- and 512-bit wide.
//! x86-64 only; the 512-bit row needs AVX-512F.
//!
//! ```sh
//! rustc -O tools/bench/peak.rs -o /tmp/peak && /tmp/peak
//! ```
use std::arch::asm;
use std::time::Instant;

const N: u64 = 200_000_000;

/// `work` per iteration × `N` iterations of `body`, per second.
fn per_second(work: f64, body: impl Fn()) -> f64 {
    let start = Instant::now();
    body();
    work * N as f64 / start.elapsed().as_secs_f64()
}

/// `acc += x0 · x1` with the accumulator `$r$acc` and sources `$r`0, `$r`1.
macro_rules! fma {
    ($r:literal, $acc:literal) => {
        concat!("vfmadd231ps ", $r, $acc, ", ", $r, "0, ", $r, "1\n")
    };
}

/// Twelve independent multiply-adds, into `$r`2..13.
macro_rules! fma12 {
    ($r:literal) => {
        concat!(
            fma!($r, 2),
            fma!($r, 3),
            fma!($r, 4),
            fma!($r, 5),
            fma!($r, 6),
            fma!($r, 7),
            fma!($r, 8),
            fma!($r, 9),
            fma!($r, 10),
            fma!($r, 11),
            fma!($r, 12),
            fma!($r, 13)
        )
    };
}

macro_rules! fma_loop {
    ($r:literal) => {
        || {
            for _ in 0..N {
                // SAFETY: the caller checked the CPU feature; only the listed
                // (clobbered) vector registers are touched. `vzeroupper` avoids
                // the penalty of mixing wide and legacy SSE code afterwards.
                unsafe {
                    asm!(fma12!($r), "vzeroupper", out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
                        out("xmm5") _, out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _,
                        out("xmm11") _, out("xmm12") _, out("xmm13") _)
                };
            }
        }
    };
}

fn main() {
    let ghz = 1e-9
        * per_second(12.0, || {
            for _ in 0..N {
                // SAFETY: register-only arithmetic on a clobbered scratch register.
                unsafe { asm!("imul rax, rax", "imul rax, rax", "imul rax, rax", "imul rax, rax", out("rax") _) };
            }
        });
    println!("clock: {ghz:.2} GHz (dependent imul, 3-cycle latency)");
    let report = |name: &str, lanes: f64, per_s: f64| {
        let g = per_s * 1e-9;
        println!("{name}: {g:.2} G FMA/s = {:.2} per cycle = {:.0} Gflop/s f32 per core", g / ghz, g * lanes * 2.0);
    };
    if std::is_x86_feature_detected!("fma") && std::is_x86_feature_detected!("avx") {
        report("256-bit", 8.0, per_second(12.0, fma_loop!("ymm")));
    }
    if std::is_x86_feature_detected!("avx512f") {
        report("512-bit", 16.0, per_second(12.0, fma_loop!("zmm")));
    }
}
