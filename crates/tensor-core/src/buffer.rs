//! Output buffers for kernels that overwrite every element, without paying to zero them first.
//!
//! A training step at batch 32 writes gigabytes of activations and gradients; zeroing each fresh
//! buffer before the kernel overwrites it was a fifth of the step (a single-threaded `memset`). The
//! buffers here are not zeroed in release builds. In debug builds (and so in `cargo test`) they are
//! filled with NaN instead, so a kernel that reads an element before writing it, or leaves one
//! unwritten, turns its output NaN and fails its tests rather than passing on lucky zeros.
//! [`retain_freed_memory`] keeps the pages of freed buffers for the next ones.

use ndarray::{Array, Dimension};

/// `len` floats for a kernel that writes every one of them before anything reads them.
pub fn uninit(len: usize) -> Vec<f32> {
    if cfg!(debug_assertions) {
        return vec![f32::NAN; len];
    }
    let mut v = Vec::<f32>::with_capacity(len);
    // SAFETY: the capacity is `len`; `f32` has no invalid bit patterns, and the contract of this
    // function is that the caller's kernel overwrites every element before any is read (debug builds
    // check it with the NaN fill above).
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(len)
    };
    v
}

/// An array of `dim` from [`uninit`]: every element must be written before it is read.
pub fn uninit_array<D: Dimension>(dim: D) -> Array<f32, D> {
    let len = dim.size();
    Array::from_shape_vec(dim, uninit(len)).expect("length is the shape's size")
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
    fn has_the_asked_length_and_shape() {
        assert_eq!(uninit(7).len(), 7);
        let a = uninit_array(Ix2(3, 5));
        assert_eq!(a.shape(), &[3, 5]);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn debug_builds_poison_with_nan() {
        assert!(uninit(16).iter().all(|v| v.is_nan()));
    }
}
