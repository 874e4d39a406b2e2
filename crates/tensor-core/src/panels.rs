//! A product's right-hand matrix (the `[k, n]` weights of a 1x1 convolution) packed once into
//! column panels one vector wide, XNNPACK's packed weights: panel `p` holds columns
//! `p * width..` for every row, `k` rows of `width` floats front to back. The kernel then reads
//! each panel as one forward stream, where row-major weights make it jump a whole row (up to
//! 5 KB, a new page every row) between two vectors: at batch 1, where each inference streams
//! every weight from beyond L2, the hardware prefetcher follows panels and not rows.

use crate::aligned::Aligned;
use crate::{Error, Result};
use std::ops::Range;

/// The width panels are packed at on this CPU: the vector length of the kernel that reads them
/// (16 floats with AVX-512, else 8).
pub fn native_width() -> usize {
    match crate::simd::level() {
        crate::simd::Level::Avx512 => 16,
        _ => 8,
    }
}

/// `[k, n]` weights in panels of `width` columns (the last zero-padded), from a cache line.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedB {
    k: usize,
    n: usize,
    width: usize,
    data: Aligned<f32>,
}

impl PackedB {
    /// Packs row-major `[k, n]` weights at [`native_width`].
    pub fn pack(w: &[f32], k: usize, n: usize) -> Result<PackedB> {
        PackedB::pack_at(w, k, n, native_width())
    }

    /// Packs row-major `[k, n]` weights in panels of `width` columns.
    pub(crate) fn pack_at(w: &[f32], k: usize, n: usize, width: usize) -> Result<PackedB> {
        if w.len() != k * n || width == 0 {
            return Err(Error::Shape {
                op: "pack weights",
                expected: vec![k, n],
                got: vec![w.len()],
            });
        }
        let mut data = Aligned::zeroed(n.div_ceil(width) * k * width);
        for (i, row) in w.chunks_exact(n.max(1)).enumerate() {
            for (p, cols) in row.chunks(width).enumerate() {
                data[(p * k + i) * width..][..cols.len()].copy_from_slice(cols);
            }
        }
        Ok(PackedB { k, n, width, data })
    }

    pub fn view(&self) -> Panels<'_> {
        Panels {
            data: &self.data,
            k: self.k,
            n: self.n,
            width: self.width,
        }
    }
}

/// Borrowed panels: all columns of a [`PackedB`], or a range of them starting on a panel.
#[derive(Clone, Copy, Debug)]
pub struct Panels<'a> {
    data: &'a [f32],
    pub k: usize,
    pub n: usize,
    pub width: usize,
}

impl<'a> Panels<'a> {
    /// The floats from the first panel on: `n.div_ceil(width)` panels of `k * width`.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Columns `r` (`r.start` a multiple of the width, `r.end` at most `n`), or `None`.
    pub fn columns(self, r: Range<usize>) -> Option<Panels<'a>> {
        if !r.start.is_multiple_of(self.width) || r.start > r.end || r.end > self.n {
            return None;
        }
        Some(Panels {
            data: &self.data[r.start / self.width * self.k * self.width..],
            n: r.len(),
            ..self
        })
    }

    /// Element `(i, j)`.
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[(j / self.width * self.k + i) * self.width + j % self.width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_every_weight_where_at_finds_it_and_columns_start_on_a_panel() {
        let (k, n) = (5, 37);
        let w: Vec<f32> = (0..k * n).map(|v| v as f32).collect();
        for width in [8, 16] {
            let p = PackedB::pack_at(&w, k, n, width).unwrap();
            let v = p.view();
            assert_eq!(v.data().len(), n.div_ceil(width) * k * width);
            for i in 0..k {
                for j in 0..n {
                    assert_eq!(v.at(i, j), w[i * n + j], "width {width} ({i}, {j})");
                }
            }
            // The padding of the last panel is zero.
            assert_eq!(v.data()[(n / width * k) * width + n % width], 0.0);
            let c = v.columns(width..n).unwrap();
            assert_eq!((c.n, c.at(2, 0)), (n - width, w[2 * n + width]));
            assert!(v.columns(3..n).is_none() && v.columns(0..n + 1).is_none());
        }
        assert!(PackedB::pack(&w, k, n + 1).is_err());
    }
}
