//! A regular convolution (any kernel, stride, padding) in integers: the input's patches gathered
//! into rows of codes (padding as the zero point, which adds nothing to the sums), then the 1x1
//! kernel over them. MobileNetV2's first convolution (3x3, stride 2, 3 channels) is the user.

use super::{pointwise, Isa, PackedWeights, Requant};
use crate::conv::ConvGeom;
use crate::{Error, Result};
use rayon::prelude::*;
use std::cell::RefCell;

/// `[N * OH * OW, kh * kw * Cin]` patches of `x` (`[N, H, W, Cin]`), in the kernel's HWIO order.
pub fn im2col(g: &ConvGeom, x: &[u8], zp: u8) -> Vec<u8> {
    let mut a = vec![0u8; g.n * g.rows.out * g.cols.out * g.kh * g.kw * g.cin];
    im2col_into(g, x, zp, &mut a);
    a
}

/// [`im2col`] into `a`, every byte of which is written (padding as `zp`).
pub fn im2col_into(g: &ConvGeom, x: &[u8], zp: u8, a: &mut [u8]) {
    let (c, ow) = (g.cin, g.cols.out);
    let k = g.kh * g.kw * c;
    assert!(x.len() == g.n * g.rows.input * g.cols.input * c);
    assert!(a.len() == g.n * g.rows.out * ow * k);
    if a.is_empty() {
        return;
    }
    a.par_chunks_mut(ow * k).enumerate().for_each(|(row, dst)| {
        let (n, oy) = (row / g.rows.out, row % g.rows.out);
        // The image and everything after it: a wide copy may read past the image's last byte.
        let img = &x[n * g.rows.input * g.cols.input * c..];
        patch_row(g, img, zp, oy, dst);
    });
}

/// Bytes one wide copy moves.
const WIDE: usize = 16;
/// Kernel rows the wide copies handle.
const WIDE_ROWS: usize = 4;

/// The patches of output row `oy` into `dst`. A kernel row inside the image is one run of
/// `kw * c` bytes. Where the runs are at most [`WIDE`] bytes, the pixels whose kernel lies inside
/// the row (but the last) copy each run as `WIDE` bytes, one move: the bytes past the run land on
/// later slots of `dst` (the next kernel row's, or the next pixel's first), written after it, as
/// pixels go left to right with their kernel rows in order. Other pixels copy tap by tap.
fn patch_row(g: &ConvGeom, img: &[u8], zp: u8, oy: usize, dst: &mut [u8]) {
    let (c, iw, s, ow) = (g.cin, g.cols.input, g.stride, g.cols.out);
    let (run, before) = (g.kw * c, g.cols.before);
    let k = g.kh * run;
    // Pixels `lo..hi` have every tap inside the row: `ox * s >= before`, `ox * s + kw <= iw + before`.
    let lo = before.div_ceil(s).min(ow);
    let hi = match (iw + before).checked_sub(g.kw) {
        Some(last) => (last / s + 1).min(ow).max(lo),
        None => lo,
    };
    let mut rows = [None; WIDE_ROWS];
    for (ky, r) in rows.iter_mut().enumerate().take(g.kh) {
        *r = ConvGeom::tap(&g.rows, s, oy, ky).map(|iy| iy * iw * c);
    }
    // A wide pixel's copies stay inside `dst` (the last pixels' would pass its end) and read
    // inside `img`.
    let fits = |ox: usize| {
        let from = (ox * s - before) * c;
        ox * k + (g.kh - 1) * run + WIDE <= dst.len()
            && rows.iter().flatten().all(|&r| r + from + WIDE <= img.len())
    };
    let wide_end = match g.kh <= WIDE_ROWS && run <= WIDE {
        true => (lo..hi).rev().find(|&ox| fits(ox)).map_or(lo, |ox| ox + 1),
        false => lo,
    };
    for ox in 0..lo {
        patch(g, img, zp, oy, ox, dst);
    }
    for ox in lo..wide_end {
        let (at, from) = (ox * k, (ox * s - before) * c);
        for (ky, r) in rows.iter().enumerate().take(g.kh) {
            let to = at + ky * run;
            match r {
                Some(r) => dst[to..to + WIDE].copy_from_slice(&img[r + from..r + from + WIDE]),
                None => dst[to..to + run].fill(zp),
            }
        }
    }
    for ox in wide_end..ow {
        patch(g, img, zp, oy, ox, dst);
    }
}

/// The patch of output pixel `(oy, ox)` into its slot of `dst`, tap by tap (padding as `zp`).
fn patch(g: &ConvGeom, img: &[u8], zp: u8, oy: usize, ox: usize, dst: &mut [u8]) {
    let (c, iw, run) = (g.cin, g.cols.input, g.kw * g.cin);
    let at = ox * g.kh * run;
    for ky in 0..g.kh {
        let to = at + ky * run;
        let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy, ky) else {
            dst[to..to + run].fill(zp);
            continue;
        };
        for kx in 0..g.kw {
            let slot = &mut dst[to + kx * c..to + (kx + 1) * c];
            match ConvGeom::tap(&g.cols, g.stride, ox, kx) {
                Some(ix) => small_copy(slot, &img[(iy * iw + ix) * c..(iy * iw + ix + 1) * c]),
                None => slot.fill(zp),
            }
        }
    }
}

thread_local! {
    /// Each thread's patch matrix, kept between calls (a fresh one each call was zero pages to
    /// fault in).
    static PATCHES: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// `f` on a buffer of `len` bytes: this thread's kept one, or a fresh one when that is in use
/// (a thread waiting inside the pool may start another convolution).
fn with_patches<T>(len: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
    PATCHES.with(|p| match p.try_borrow_mut() {
        Ok(mut kept) => {
            if kept.len() < len {
                kept.resize(len, 0);
            }
            f(&mut kept[..len])
        }
        Err(_) => f(&mut vec![0u8; len]),
    })
}

/// `out = requant(bias + conv(x - zp_x, w))`: `g` from [`ConvGeom::new`], `w` the packed
/// `[kh * kw * Cin, Cout]` kernel; every extent is checked.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    g: &ConvGeom,
    x: &[u8],
    zp_x: i32,
    w: &PackedWeights,
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) -> Result<()> {
    let op = "int8 conv";
    let xs = g.n * g.rows.input * g.cols.input * g.cin;
    if x.len() != xs || w.k != g.kh * g.kw * g.cin || w.n != g.cout {
        return Err(Error::Shape {
            op,
            expected: vec![xs, g.kh * g.kw * g.cin, g.cout],
            got: vec![x.len(), w.k, w.n],
        });
    }
    let zp = u8::try_from(zp_x).map_err(|_| Error::Invalid {
        op,
        msg: format!("input zero point {zp_x} is not a u8 code"),
    })?;
    let rows = g.n * g.rows.out * g.cols.out;
    with_patches(rows * w.k, |a| {
        im2col_into(g, x, zp, a);
        pointwise::forward(isa, a, rows, zp_x, w, bias, rq, out)
    })
}

/// Copies a few bytes, eight at a time (`copy_from_slice` calls memcpy, costly for runs this
/// short).
#[inline(always)]
fn small_copy(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        d.copy_from_slice(s);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}
