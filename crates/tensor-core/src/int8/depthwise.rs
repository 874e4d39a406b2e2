//! The depthwise convolution in integers: `u8` codes, per-channel `i8` weights widened once to
//! `i32`, exact sums, requantized with bias and activation. A tap that falls in the padding reads
//! the zero point, so the zero point's share of every sum, `-zp * sum(w)`, is one constant folded
//! into the bias, and the kernels sum raw codes. Runs of output rows are the parallel tasks.

use super::{Isa, Requant};
use crate::aligned::Aligned;
use crate::conv::ConvGeom;
use crate::{Error, Result};
use rayon::prelude::*;

/// The kernel one call runs, with what it prepared.
enum Kernel {
    Portable,
    /// AVX-512 VNNI, four taps a `vpdpbusd`, for 3 kernel columns and at most 3 rows.
    #[cfg(target_arch = "x86_64")]
    Vnni3(super::depthwise_vnni::Interleaved),
}

impl Kernel {
    /// Whether this kernel computes rows `row` and `row + 1` in one call.
    fn pairs(&self, d: &Rows, row: usize) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni3(_) => super::depthwise_vnni::pairs(d, row),
            Kernel::Portable => false,
        }
    }

    fn choose(isa: Isa, d: &Rows) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if isa.runs_vnni() && d.g.kw == 3 && d.g.kh <= super::depthwise_vnni::MAX_KH {
            return Kernel::Vnni3(super::depthwise_vnni::Interleaved::new(d));
        }
        let _ = (isa, d);
        Kernel::Portable
    }
}

/// What every output row of one call reads.
pub(super) struct Rows<'a> {
    pub x: &'a [u8],
    pub g: &'a ConvGeom,
    /// `[kh, kw, C]`, widened.
    pub w: Vec<i32>,
    /// `bias - zp_x * sum_taps(w)`.
    pub bias: Vec<i32>,
    /// `C` codes of the zero point: what a padding tap reads.
    pub zp_row: Vec<u8>,
    pub rq: &'a Requant,
}

impl Rows<'_> {
    /// Input row of tap `ky` for output row `oy`, if inside the image.
    #[inline(always)]
    pub fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        ConvGeom::tap(&self.g.rows, self.g.stride, oy, ky)
    }

    /// Output row `row` into `out`, or with two rows in `out` (only where [`Kernel::pairs`]) rows
    /// `row` and `row + 1`.
    fn row(&self, kernel: &Kernel, row: usize, out: &mut [u8], scratch: &mut Aligned<u8>) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Kernel::choose` picked this one only after `runs_vnni` detected every
            // feature of the tier (AVX-512 F, BW, VL, VNNI) and for a 3-column kernel of at most
            // three rows; `forward` checked the extents, `p` was made from `self`, `out` is one
            // output row, or two only where `Kernel::pairs` said so (the kernel asserts both).
            Kernel::Vnni3(p) => unsafe {
                match out.len() / (self.g.cols.out * self.g.cin) {
                    2 => super::depthwise_vnni::row::<3, true>(self, p, row, out, scratch),
                    _ => super::depthwise_vnni::row::<3, false>(self, p, row, out, scratch),
                }
            },
            Kernel::Portable => {
                let _ = scratch;
                let len = self.g.cols.out * self.g.cin;
                for (i, o) in out.chunks_exact_mut(len).enumerate() {
                    portable_row(self, row + i, o)
                }
            }
        }
    }

    /// Plain Rust, channels innermost.
    #[inline(always)]
    fn portable_row_body(&self, row: usize, out: &mut [u8]) {
        let g = self.g;
        let (c, iw) = (g.cin, g.cols.input);
        let (n, oy) = (row / g.rows.out, row % g.rows.out);
        let img = &self.x[n * g.rows.input * iw * c..(n + 1) * g.rows.input * iw * c];
        let (lo, hi) = self.rq.bounds();
        let mut acc = vec![0i32; c];
        for ox in 0..g.cols.out {
            acc.copy_from_slice(&self.bias);
            for ky in 0..g.kh {
                let iy = self.in_row(oy, ky);
                for kx in 0..g.kw {
                    let xs = match (iy, ConvGeom::tap(&g.cols, g.stride, ox, kx)) {
                        (Some(iy), Some(ix)) => &img[(iy * iw + ix) * c..][..c],
                        _ => &self.zp_row[..c],
                    };
                    let ws = &self.w[(ky * g.kw + kx) * c..][..c];
                    for ((a, &v), &w) in acc.iter_mut().zip(xs).zip(ws) {
                        *a += v as i32 * w;
                    }
                }
            }
            for (ch, (o, &a)) in out[ox * c..(ox + 1) * c].iter_mut().zip(&acc).enumerate() {
                *o =
                    super::quant::requantize(a, self.rq.multiplier[ch], lo, hi, self.rq.zero_point);
            }
        }
    }
}

// The portable row compiled again for AVX2 / AVX-512 where the CPU has them: the channel loop
// vectorises and rounding is one instruction (integer sums and the same float operations: the
// same codes on every build).
crate::multiversion!(fn portable_row(rows: &Rows, row: usize, out: &mut [u8]) => Rows::portable_row_body);

fn check(
    g: &ConvGeom,
    x: &[u8],
    zp_x: i32,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out: &[u8],
) -> Result<()> {
    let op = "int8 depthwise";
    rq.check(op)?;
    super::quant::check_sums(op, bias, g.kh * g.kw)?;
    let c = g.cin;
    let (xs, os) = (
        g.n * g.rows.input * g.cols.input * c,
        g.n * g.rows.out * g.cols.out * c,
    );
    if x.len() != xs
        || out.len() != os
        || w.len() != g.kh * g.kw * c
        || bias.len() != c
        || rq.channels() != c
        || g.cout != c
    {
        return Err(Error::Shape {
            op,
            expected: vec![xs, os, g.kh * g.kw * c, c, c],
            got: vec![x.len(), out.len(), w.len(), bias.len(), rq.channels()],
        });
    }
    if !(0..=255).contains(&zp_x) {
        return Err(Error::Invalid {
            op,
            msg: format!("input zero point {zp_x} is not a u8 code"),
        });
    }
    Ok(())
}

/// `out = requant(bias + dwconv(x - zp_x, w))` for `x` `[N, H, W, C]` codes (`g` from
/// [`ConvGeom::depthwise`]) and `w` `[kh, kw, C]`; every extent is checked here.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    g: &ConvGeom,
    x: &[u8],
    zp_x: i32,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) -> Result<()> {
    check(g, x, zp_x, w, bias, rq, out)?;
    let c = g.cin;
    let (rows, cols) = (g.n * g.rows.out, g.cols.out);
    if rows * cols * c == 0 {
        return Ok(());
    }
    let w: Vec<i32> = w.iter().map(|&v| v as i32).collect();
    let bias = (0..c)
        .map(|ch| bias[ch] - zp_x * w.iter().skip(ch).step_by(c).sum::<i32>())
        .collect();
    let d = Rows {
        x,
        g,
        w,
        bias,
        zp_row: vec![zp_x as u8; c],
        rq,
    };
    let kernel = Kernel::choose(isa, &d);
    // About four tasks a thread, each a run of whole output rows.
    let per_task = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
    out.par_chunks_mut(per_task * cols * c)
        .enumerate()
        .for_each(|(t, o)| {
            let mut scratch = Aligned::zeroed(0);
            let (first, len) = (t * per_task, cols * c);
            let mut r = 0;
            while r * len < o.len() {
                let both = (r + 2) * len <= o.len() && kernel.pairs(&d, first + r);
                let count = if both { 2 } else { 1 };
                d.row(
                    &kernel,
                    first + r,
                    &mut o[r * len..(r + count) * len],
                    &mut scratch,
                );
                r += count;
            }
        });
    Ok(())
}
