//! Code buffers recycled per thread, so that a step's output is neither freshly allocated (new
//! zero pages) nor zeroed before the kernel overwrites it.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

/// `len` codes at the front of a vector that stays at its full, initialised length, so that a
/// later, longer use of the same vector needs no zero-filling either.
pub(crate) struct CodeBuf {
    bytes: Vec<u8>,
    len: usize,
}

impl From<Vec<u8>> for CodeBuf {
    fn from(bytes: Vec<u8>) -> CodeBuf {
        let len = bytes.len();
        CodeBuf { bytes, len }
    }
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
    static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Buffers kept per thread (a step's inputs and output, and a few in flight).
const KEPT: usize = 6;

/// A buffer of `len` codes for a kernel to overwrite entirely: the longest kept one up to `len`,
/// grown (zero-filled) only past the longest length it ever had.
pub(crate) fn buffer(len: usize) -> CodeBuf {
    let mut bytes = FREE
        .with(|f| {
            let mut f = f.borrow_mut();
            let best = (0..f.len()).max_by_key(|&i| f[i].len().min(len))?;
            Some(f.swap_remove(best))
        })
        .unwrap_or_default();
    if bytes.len() < len {
        bytes.resize(len, 0);
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
        recycle(b);
        let short = buffer(10);
        assert_eq!((short.len(), short.as_ptr()), (10, at));
        recycle(short);
        let again = buffer(1000);
        assert_eq!(again.as_ptr(), at, "the same vector, still 1000 long");
        assert!(again.iter().all(|&v| v == 9), "not zeroed");
    }
}
