//! "No allocation in the step": a counting global allocator watches the
//! thread pool's threads while a trainer takes steps on them (after its first
//! steps, which may size the pool's queues). One test in this binary, so
//! nothing else runs on the pool while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use physlens::config::Config;
use physlens::train::Trainer;
use physlens::train::bench::bench_config;
use physlens::train::on_workers;

struct Counting;

/// Counts an allocation made on a thread of the rayon pool, where the steps
/// run (the test harness's own threads are not the trainer's business).
fn count() {
    if rayon::current_thread_index().is_some() {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: the caller's contract for `realloc` is passed on as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations during `steps` steps of `config`, after `warm` steps.
fn allocations_per_steps(config: &Config, warm: usize, steps: usize) -> usize {
    on_workers(|| {
        let mut trainer = Trainer::<f32>::new(config);
        (0..warm).for_each(|_| _ = trainer.step());
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        (0..steps).for_each(|_| _ = trainer.step());
        ALLOCATIONS.load(Ordering::SeqCst) - before
    })
}

#[test]
fn training_steps_allocate_nothing() {
    // The one allocation allowed: a pool thread registers with the work-stealing
    // deques' epoch collector (crossbeam-epoch) the first time it steals, which
    // may fall after the warm-up; at most once per thread. An allocation per
    // step would count 40.
    let once_per_thread = rayon::current_num_threads();
    // Context 1 and context 16 kernels, one chunk and several in parallel,
    // across epoch boundaries (the reshuffle) with a small training set.
    for (name, batch) in [("blog", 256), ("blog", 4096), ("wide", 256)] {
        let mut config = bench_config(name, batch).expect("known config");
        config.data.n_train = 4 * batch + batch / 2; // an epoch every four steps
        let count = allocations_per_steps(&config, 10, 40);
        assert!(count <= once_per_thread, "{name}/{batch}: {count} allocations in 40 steps");
    }
    // Fresh samples every step (n_train = 0) refill one buffer in place.
    let mut config = bench_config("blog", 512).expect("known config");
    config.data.n_train = 0;
    let count = allocations_per_steps(&config, 10, 40);
    assert!(count <= once_per_thread, "fresh samples: {count} allocations in 40 steps");
}
