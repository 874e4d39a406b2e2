//! How a plan shares the thread pool: a small batch runs on a pool thread with the other threads
//! kept awake for it, a larger one in micro-batches side by side.

use crate::Result;
use nn::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `f` run on a thread of the pool (`rayon::scope` runs its body there), for a batch too small to
/// split into micro-batches: each layer's parallel loop then splits among the pool's threads
/// directly, instead of being handed to the pool and waited for by the caller (two thread switches
/// a layer; 1.15x at batch 1, `e2e infer --batch 1`).
///
/// Meanwhile every other pool thread runs [`stay_awake`]: between two layers an idle rayon thread
/// sleeps after a few dozen yields and takes tens of microseconds to wake for the next layer's
/// half (XNNPACK's pthreadpool spins instead); at batch 1 those sleeps were a tenth of the time.
pub(crate) fn on_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        let (home, done) = (rayon::current_thread_index(), &done);
        for _ in 1..rayon::current_num_threads() {
            s.spawn(move |_| stay_awake(done, home));
        }
        let out = f();
        done.store(true, Ordering::Release);
        out
    })
}

/// Longest stretch without work after which [`stay_awake`] gives its thread back to rayon's
/// sleep (no inference layer is that long on one thread; it also bounds any wait that depends on
/// this thread returning).
const MOST_IDLE: Duration = Duration::from_millis(2);

/// Until `done`, runs the pool's pending jobs as they appear (`rayon::yield_now`), spinning in
/// between, on any thread but `home` (the one running the inference, which must not spin on its
/// own behalf); returns early after [`MOST_IDLE`] without work.
fn stay_awake(done: &AtomicBool, home: Option<usize>) {
    if rayon::current_thread_index() == home {
        return;
    }
    let mut idle_since = Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = Instant::now(),
            _ if idle_since.elapsed() > MOST_IDLE => return,
            _ => std::hint::spin_loop(),
        }
    }
}

/// `f` on consecutive slices of `size` images of `x`, side by side on the thread pool, results in
/// order.
pub(crate) fn in_micro_batches<T: Send>(
    x: &Tensor,
    size: usize,
    f: impl Fn(&Tensor) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let n = x.shape().first().copied().unwrap_or(0);
    (0..n)
        .step_by(size.max(1))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let end = (start + size).min(n);
            // The shared array sliced in place: no copy of the images.
            let mut chunk = x.clone();
            chunk.slice_axis_inplace(ndarray::Axis(0), (start..end).into());
            f(&chunk)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_pool_returns_the_body_s_value_with_its_parallel_loops_shared() {
        use rayon::prelude::*;
        for _ in 0..50 {
            let (sum, threads) = on_pool(|| {
                let sum: u64 = (0..100_000u64).into_par_iter().map(|v| v * 3).sum();
                (sum, rayon::current_thread_index().is_some())
            });
            assert_eq!(sum, 3 * 99_999 * 100_000 / 2);
            assert!(threads, "the body runs on a pool thread");
        }
    }

    #[test]
    fn stay_awake_returns_once_done_and_at_once_on_its_home_thread() {
        let done = AtomicBool::new(true);
        let start = Instant::now();
        stay_awake(&done, Some(7));
        let done = AtomicBool::new(false);
        stay_awake(&done, rayon::current_thread_index());
        assert!(start.elapsed() < MOST_IDLE, "returned without waiting");
        // Not done and nothing to run: it gives the thread back after MOST_IDLE.
        let start = Instant::now();
        stay_awake(&done, Some(usize::MAX));
        assert!(start.elapsed() >= MOST_IDLE);
    }
}
