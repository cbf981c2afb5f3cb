//! Subnormal numbers flushed to zero while a kernel runs. Values below the
//! smallest normal float (1.2e-38 in f32, 2.2e-308 in f64) turn up in
//! training — softmax weights of far-off tokens, gelu of very negative
//! inputs, their gradients — and on Intel cores an arithmetic instruction
//! that meets one takes a slow microcode assist (on the AVX-512 Xeon of
//! BENCHMARKS.md `deep_mlp` trained 12× slower with them than without).
//! Each flushed value moves by less than that smallest normal value;
//! every thread flushes the same way, so runs stay bit-identical whatever
//! the thread count.

/// While alive, the current thread flushes subnormal results to zero and
/// reads subnormal inputs as zero (x86-64's MXCSR FTZ and DAZ bits); the
/// previous mode comes back on drop. Elsewhere it does nothing.
#[derive(Debug)]
pub(crate) struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

impl FlushDenormals {
    /// Turns flushing on for this thread.
    pub(crate) fn on() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_mxcsr();
            write_mxcsr(saved | FTZ_DAZ);
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushDenormals {}
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        write_mxcsr(self.saved);
    }
}

#[cfg(target_arch = "x86_64")]
fn read_mxcsr() -> u32 {
    let mut value = 0u32;
    // SAFETY: stmxcsr stores the 32-bit control register into the local.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut value, options(nostack, preserves_flags)) };
    value
}

#[cfg(target_arch = "x86_64")]
fn write_mxcsr(value: u32) {
    // SAFETY: ldmxcsr loads a value read by `read_mxcsr` with only the FTZ
    // and DAZ mode bits changed; no exception is unmasked.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &value, options(nostack, readonly, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnormals_are_flushed_only_while_the_guard_lives() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = |x: f32| std::hint::black_box(x) * std::hint::black_box(0.5f32);
        assert!(half(tiny) > 0.0, "subnormal results by default");
        {
            let _flush = FlushDenormals::on();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(half(tiny), 0.0);
                assert_eq!(std::hint::black_box(f32::from_bits(1)) * 1.0, 0.0, "subnormal inputs read as zero");
            }
        }
        assert!(half(tiny) > 0.0, "the previous mode is restored");
    }
}
