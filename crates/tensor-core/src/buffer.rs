//! Output buffers for kernels that overwrite every element.
//!
//! A training step at batch 32 writes gigabytes of activations and gradients. Each fresh buffer is
//! initialised before a kernel writes it (handing out uninitialised `f32`s behind a `Vec` would be
//! undefined behaviour, whatever the kernel does next), but in parallel over the worker pool and in
//! large chunks, so that it costs a fraction of the single-threaded `memset` a plain `vec![0.0; n]`
//! pays on memory the allocator reuses. Debug builds (and so `cargo test`) fill with NaN instead of
//! zero: a kernel that reads an element before writing it, or leaves one unwritten, turns its output
//! NaN and fails its tests rather than passing on lucky zeros. [`retain_freed_memory`] keeps the
//! pages of freed buffers for the next ones.

use ndarray::{Array, Dimension};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Buffers at least this long (floats) are filled by the worker pool.
const PARALLEL_FILL: usize = 1 << 18;
/// Floats a worker fills at a time.
const FILL_CHUNK: usize = 1 << 16;

/// What a fresh output buffer holds until its kernel writes it.
pub const FILL: f32 = if cfg!(debug_assertions) {
    f32::NAN
} else {
    0.0
};

/// `len` floats, each [`FILL`], for a kernel that writes every one of them before anything reads them.
pub fn output(len: usize) -> Vec<f32> {
    if len < PARALLEL_FILL {
        return vec![FILL; len];
    }
    let mut v = Vec::<f32>::with_capacity(len);
    v.spare_capacity_mut()[..len]
        .par_chunks_mut(FILL_CHUNK)
        .for_each(|chunk| chunk.fill(MaybeUninit::new(FILL)));
    // SAFETY: the capacity is at least `len` and each of the first `len` elements was just written
    // (the chunks above cover `spare_capacity_mut()[..len]` exactly).
    unsafe { v.set_len(len) };
    v
}

/// `len` floats not yet written, for an element-wise kernel that writes each one through
/// [`MaybeUninit::write`]; [`assume_init`] then turns them into floats without another pass.
/// Debug builds hand them out as NaN, so an element left unwritten shows.
pub fn uninit(len: usize) -> Vec<MaybeUninit<f32>> {
    if cfg!(debug_assertions) {
        return vec![MaybeUninit::new(f32::NAN); len];
    }
    let mut v = Vec::with_capacity(len);
    // SAFETY: the capacity is `len`, and a `MaybeUninit<f32>` is valid whatever its bytes,
    // initialised or not.
    unsafe { v.set_len(len) };
    v
}

/// The floats of a buffer from [`uninit`] once its kernel has written them all.
///
/// # Safety
/// Every element of `v` has been written.
pub unsafe fn assume_init(v: Vec<MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: `MaybeUninit<f32>` has the size and alignment of `f32`, so the allocation is one of
    // `cap` floats; the caller guarantees the first `len` are initialised; `v` is not dropped.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

/// Initialised floats seen as write-only slots, for a kernel written against [`uninit`] buffers.
pub fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; every slot is initialised now, and
    // through a `&mut [MaybeUninit<f32>]` only `MaybeUninit::write` of a float (never an
    // uninitialised value) can change it, so the floats stay initialised.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

/// An array of `dim` from [`output`]: every element must be written before it is read.
pub fn output_array<D: Dimension>(dim: D) -> Array<f32, D> {
    let len = dim.size();
    Array::from_shape_vec(dim, output(len)).expect("length is the shape's size")
}

/// Keeps freed memory in the process, so each training step reuses the last step's pages: large
/// allocations come from the heap, which is never trimmed (glibc on Linux; a no-op elsewhere).
/// Returns whether the allocator accepted the settings.
///
/// A training step at batch 32 frees and allocates the same few gigabytes of activations and
/// gradients every time. glibc serves each buffer over 128 KB with a fresh `mmap` and returns it on
/// `free`, so every step the kernel faults in and zeroes every page again: a quarter of a step with
/// everything trainable. This tells glibc to serve large buffers from its heap and to keep freed
/// memory there; the next step's buffers of the same sizes then come back without a page fault. The
/// cost is some fragmentation (peak memory up to ~10% higher). Binaries and benches opt in; a library
/// never changes the process's allocator on its own.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallopt` only changes allocator parameters; called before threads allocate much.
        unsafe {
            // -1: never trim the heap (glibc's mallopt(3)).
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Ix2;

    #[test]
    fn has_the_asked_length_shape_and_fill() {
        for len in [
            0,
            7,
            PARALLEL_FILL - 1,
            PARALLEL_FILL,
            PARALLEL_FILL + FILL_CHUNK * 3 + 5,
        ] {
            let v = output(len);
            assert_eq!(v.len(), len);
            assert!(v.iter().all(|x| x.to_bits() == FILL.to_bits()), "len {len}");
        }
        let a = output_array(Ix2(3, 5));
        assert_eq!(a.shape(), &[3, 5]);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn debug_builds_poison_with_nan() {
        assert!(output(16).iter().all(|v| v.is_nan()));
        assert!(output(PARALLEL_FILL + 1).iter().all(|v| v.is_nan()));
    }
}
