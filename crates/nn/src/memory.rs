//! Keeping freed memory in the process, so each training step reuses the last step's pages.
//!
//! A training step at batch 32 frees and allocates the same few gigabytes of activations and
//! gradients every time. glibc serves each buffer over 128 KB with a fresh `mmap` and returns it on
//! `free`, so every step the kernel faults in and zeroes every page again: a quarter of a step with
//! everything trainable. [`retain_freed_memory`] tells glibc to serve large buffers from its heap and
//! to keep freed memory there; the next step's buffers of the same sizes then come back without a
//! page fault. The cost is some fragmentation (peak memory ~10% higher). Binaries opt in; a library
//! never changes the process's allocator on its own.

/// Serves large allocations from the heap and keeps freed memory (glibc on Linux; a no-op elsewhere).
/// Returns whether the allocator accepted the settings.
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
