//! Code buffers recycled per thread, so that a step's output is neither freshly allocated (new
//! zero pages) nor zeroed before the kernel overwrites it. Each starts on a cache line: a kernel
//! reading 64 bytes a pixel (channels a multiple of 64) then never reads across two lines.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use tensor_core::aligned::Aligned;

/// `len` codes at the front of a vector that stays at its full, initialised length, so that a
/// later, longer use of the same vector needs no zero-filling either.
pub(crate) struct CodeBuf {
    bytes: Aligned<u8>,
    len: usize,
}

impl Deref for CodeBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl DerefMut for CodeBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[..self.len]
    }
}

thread_local! {
    /// Buffers of values no longer needed, kept for the next steps and calls on this thread.
    static FREE: RefCell<Vec<Aligned<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (a step's inputs and output, and a few in flight).
const KEPT: usize = 6;

/// A buffer of `len` codes for a kernel to overwrite entirely: the longest kept one up to `len`,
/// replaced by a zero-filled one only past the longest length it ever had.
pub(crate) fn buffer(len: usize) -> CodeBuf {
    let mut bytes = FREE
        .with(|f| {
            let mut f = f.borrow_mut();
            let best = (0..f.len()).max_by_key(|&i| f[i].len().min(len))?;
            Some(f.swap_remove(best))
        })
        .unwrap_or_else(|| Aligned::zeroed(0));
    if bytes.len() < len {
        bytes = Aligned::zeroed(len);
    }
    CodeBuf { bytes, len }
}

/// Keeps `b` for a later [`buffer`]; past [`KEPT`] buffers the shortest is dropped (keeping the
/// short ones made the large steps grow, and zero-fill, a buffer on every pass).
pub(crate) fn recycle(b: CodeBuf) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        f.push(b.bytes);
        if f.len() > KEPT {
            let shortest = (0..f.len()).min_by_key(|&i| f[i].len()).unwrap_or(0);
            f.swap_remove(shortest);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_buffer_serves_any_shorter_length_and_then_a_longer_one_without_regrowing() {
        let mut b = buffer(1000);
        b.fill(9);
        let at = b.as_ptr();
        assert_eq!(at as usize % 64, 0, "on a cache line");
        recycle(b);
        let short = buffer(10);
        assert_eq!((short.len(), short.as_ptr()), (10, at));
        recycle(short);
        let again = buffer(1000);
        assert_eq!(again.as_ptr(), at, "the same vector, still 1000 long");
        assert!(again.iter().all(|&v| v == 9), "not zeroed");
    }
}
