//! Batches and fixed chunks: a batch is cut into chunks of a fixed size that
//! run in parallel, and their gradients are summed in chunk order, so the
//! result is bit-identical whatever the number of threads. Chunks run with
//! subnormal numbers flushed to zero ([`FlushDenormals`]).

use rayon::prelude::*;

use crate::kernel::denormal::FlushDenormals;
use crate::util::real::Real;

/// Samples per parallel work item (fixed, so results do not depend on threads).
pub const CHUNK: usize = 512;

/// Values per parallel piece of a pass over every parameter (the sum of the
/// chunk gradients, the optimizer's update); shorter passes run on the
/// calling thread. The passes are element by element, so the split does not
/// change a bit of the result.
pub const PIECE: usize = 8192;

/// `f(piece)` for consecutive pieces of `PIECE` items of `xs` (in parallel
/// when there are several), each with its offset in `xs`.
pub fn for_pieces<T: Send>(xs: &mut [T], f: impl Fn(usize, &mut [T]) + Sync) {
    if xs.len() > PIECE {
        xs.par_chunks_mut(PIECE).enumerate().for_each(|(i, piece)| f(i * PIECE, piece));
    } else {
        f(0, xs);
    }
}

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

    /// Input and target of the batch's `i`-th sequence, each `[T, 2]`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> (&'a [F], &'a [F]) {
        let row = self.rows.map_or(i, |r| r[i] as usize);
        let span = row * self.width..(row + 1) * self.width;
        (&self.inputs[span.clone()], &self.targets[span])
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

/// Runs `run(i, &mut work[i])` for every chunk (in parallel when there are
/// several), then sums the chunk gradients into `grads` in chunk order
/// (pieces of the parameters in parallel, [`for_pieces`]), so the result
/// does not depend on the thread count. Returns the summed loss.
pub(crate) fn run_chunks<F: Real, W: ChunkOutput<F> + Send + Sync>(
    work: &mut [W],
    grads: &mut [F],
    run: impl Fn(usize, &mut W) + Sync,
) -> f64 {
    // Flushing on this thread covers the chunks run here and the sum below;
    // each worker thread flushes for the chunks it runs.
    let _flush = FlushDenormals::on();
    if work.len() > 1 {
        work.par_iter_mut().enumerate().for_each(|(i, w)| {
            let _flush = FlushDenormals::on();
            run(i, w);
        });
    } else {
        work.iter_mut().enumerate().for_each(|(i, w)| run(i, w));
    }
    let work = &*work;
    for_pieces(grads, |at, piece| {
        let span = at..at + piece.len();
        piece.copy_from_slice(&work[0].grad()[span.clone()]);
        for w in &work[1..] {
            piece.iter_mut().zip(&w.grad()[span.clone()]).for_each(|(a, b)| *a += *b);
        }
    });
    work.iter().map(ChunkOutput::loss).sum()
}
