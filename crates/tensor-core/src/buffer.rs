//! Output buffers for kernels that overwrite every element.
//!
//! A training step at batch 32 writes gigabytes of activations and gradients. Filling each fresh
//! buffer before its kernel overwrites it cost about 9% of a step with everything trainable, and
//! handing out uninitialised `f32`s behind a `Vec` would be undefined behaviour, whatever the kernel
//! does next. So kernels write into slots: [`uninit`] gives `MaybeUninit<f32>`s, the kernel stores
//! each one (convolutions, depthwise, GEMMs, batch-norm, activations, padding), and [`assume_init`]
//! turns them into floats without another pass. A kernel written against initialised output gets
//! its slots [`filled`] first. Debug builds (and so `cargo test`) hand out slots holding NaN: a
//! kernel that leaves one unwritten, or reads it first, turns its output NaN and fails its tests
//! rather than passing on lucky zeros. [`retain_freed_memory`] keeps the pages of freed buffers for
//! the next ones.

use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Buffers at least this long (floats) are filled by the worker pool.
const PARALLEL_FILL: usize = 1 << 18;
/// Floats a worker fills at a time.
const FILL_CHUNK: usize = 1 << 16;

/// What [`filled`] puts in each slot (and, in debug builds, what [`uninit`] hands out).
pub const FILL: f32 = if cfg!(debug_assertions) {
    f32::NAN
} else {
    0.0
};

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

/// The slots, each set to [`FILL`], as floats: for a kernel written against initialised output.
pub fn filled(v: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    if v.len() < PARALLEL_FILL {
        v.fill(MaybeUninit::new(FILL));
    } else {
        v.par_chunks_mut(FILL_CHUNK)
            .for_each(|chunk| chunk.fill(MaybeUninit::new(FILL)));
    }
    // SAFETY: every slot was just written.
    unsafe { assume_init_mut(v) }
}

/// `len` slots of `buf` (grown as needed, never filled) starting on a cache line (64 bytes), for
/// a kernel that reads or writes them in 64-byte vectors: at multiples of 64 bytes from the start
/// these never straddle two lines.
pub fn cache_aligned(buf: &mut Vec<MaybeUninit<f32>>, len: usize) -> &mut [MaybeUninit<f32>] {
    const LINE: usize = 64 / std::mem::size_of::<f32>();
    if buf.len() < len + LINE {
        buf.resize(len + LINE, MaybeUninit::uninit());
    }
    // At most `LINE - 1` floats on from a float's (4-byte) alignment; otherwise unaligned.
    let skip = match buf.as_ptr().align_offset(64) {
        s if s < LINE => s,
        _ => 0,
    };
    &mut buf[skip..skip + len]
}

/// Writes `src` into the slots `dst` (as long as `src`), each once.
pub fn write_from(dst: &mut [MaybeUninit<f32>], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "write_from: lengths differ");
    for (slot, &v) in dst.iter_mut().zip(src) {
        slot.write(v);
    }
}

/// The floats of slots from [`uninit`] (or [`as_uninit`]) once a kernel has written them all.
///
/// # Safety
/// Every element of `v` has been written.
pub unsafe fn assume_init_mut(v: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and the caller guarantees every slot
    // holds a float.
    unsafe { &mut *(v as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// Initialised floats seen as write-only slots, for a kernel written against [`uninit`] buffers.
pub fn as_uninit(v: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`; every slot is initialised now, and
    // through a `&mut [MaybeUninit<f32>]` only `MaybeUninit::write` of a float (never an
    // uninitialised value) can change it, so the floats stay initialised.
    unsafe { &mut *(v as *mut [f32] as *mut [MaybeUninit<f32>]) }
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

    #[test]
    fn filled_slots_have_the_length_and_the_fill() {
        for len in [
            0,
            7,
            PARALLEL_FILL - 1,
            PARALLEL_FILL,
            PARALLEL_FILL + FILL_CHUNK * 3 + 5,
        ] {
            let mut v = uninit(len);
            let f = filled(&mut v);
            assert_eq!(f.len(), len);
            assert!(f.iter().all(|x| x.to_bits() == FILL.to_bits()), "len {len}");
        }
    }

    #[test]
    fn written_slots_are_the_floats() {
        let mut v = uninit(5);
        for (i, s) in v.iter_mut().enumerate() {
            s.write(i as f32 * 1.5);
        }
        // SAFETY: every slot was written just above.
        let v = unsafe { assume_init(v) };
        assert_eq!(v, [0.0, 1.5, 3.0, 4.5, 6.0]);
    }

    #[test]
    #[cfg(debug_assertions)]
    fn debug_builds_poison_with_nan() {
        let mut v = uninit(PARALLEL_FILL + 1);
        // SAFETY: debug builds hand out NaN in every slot, so all are initialised.
        assert!(unsafe { assume_init_mut(&mut v) }
            .iter()
            .all(|x| x.is_nan()));
        let mut v = uninit(16);
        assert!(filled(&mut v).iter().all(|x| x.is_nan()));
    }
}
