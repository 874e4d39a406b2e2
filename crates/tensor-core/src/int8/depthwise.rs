//! The depthwise convolution in integers: `u8` codes, per-channel `i8` weights widened once to
//! `i32`, exact sums, requantized with bias and activation. The input is first padded with its
//! zero point, so every tap of every output lands inside it and the zero point's share of each
//! sum, `-zp * sum(w)`, moves into the bias. Runs of output rows are the parallel tasks.

use super::{Isa, Requant};
use crate::conv::ConvGeom;
use crate::{Error, Result};
use rayon::prelude::*;
use std::borrow::Cow;

/// What every output row of one call reads: the padded input and its extents.
pub(super) struct Rows<'a> {
    pub x: Cow<'a, [u8]>,
    pub n: usize,
    /// Padded input rows and columns.
    pub in_h: usize,
    pub in_w: usize,
    pub c: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// `[kh, kw, C]`, widened.
    pub w: Vec<i32>,
    /// `bias - zp_x * sum_taps(w)`.
    pub bias: Vec<i32>,
    pub rq: &'a Requant,
}

/// `x` with `g`'s padding around each image, filled with the zero point (borrowed when unpadded).
fn padded<'a>(g: &ConvGeom, x: &'a [u8], zp: u8) -> Cow<'a, [u8]> {
    let (r, cl, c) = (&g.rows, &g.cols, g.cin);
    if r.before + r.after + cl.before + cl.after == 0 {
        return Cow::Borrowed(x);
    }
    let (ph, pw) = (
        r.input + r.before + r.after,
        cl.input + cl.before + cl.after,
    );
    let mut out = vec![zp; g.n * ph * pw * c];
    for (img, dst) in x
        .chunks_exact(r.input * cl.input * c)
        .zip(out.chunks_exact_mut(ph * pw * c))
    {
        for (y, src) in img.chunks_exact(cl.input * c).enumerate() {
            let at = ((y + r.before) * pw + cl.before) * c;
            dst[at..at + src.len()].copy_from_slice(src);
        }
    }
    Cow::Owned(out)
}

impl Rows<'_> {
    fn row(&self, isa: Isa, row: usize, out: &mut [u8]) {
        match (isa, self.kh, self.kw) {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `supported` detected every feature of the tier (AVX-512 F, BW, VL, VNNI);
            // `forward` checked the extents, `out` is one output row.
            (Isa::Avx512Vnni, 3, 3) if Isa::Avx512Vnni.supported() => unsafe {
                super::x86::depthwise_row_avx512::<3, 3>(self, row, out)
            },
            _ => self.portable_row(row, out),
        }
    }

    /// Plain Rust, channels innermost.
    fn portable_row(&self, row: usize, out: &mut [u8]) {
        let (c, s) = (self.c, self.stride);
        let (n, oy) = (row / self.out_h, row % self.out_h);
        let (lo, hi) = self.rq.bounds();
        let mut acc = vec![0i32; c];
        for ox in 0..self.out_w {
            acc.copy_from_slice(&self.bias);
            for ky in 0..self.kh {
                let iy = n * self.in_h + oy * s + ky;
                for kx in 0..self.kw {
                    let xs = &self.x[(iy * self.in_w + ox * s + kx) * c..][..c];
                    let ws = &self.w[(ky * self.kw + kx) * c..][..c];
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
        x: padded(g, x, zp_x as u8),
        n: g.n,
        in_h: g.rows.input + g.rows.before + g.rows.after,
        in_w: g.cols.input + g.cols.before + g.cols.after,
        c,
        kh: g.kh,
        kw: g.kw,
        stride: g.stride,
        out_h: g.rows.out,
        out_w: cols,
        w,
        bias,
        rq,
    };
    // About four tasks a thread, each a run of whole output rows.
    let per_task = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
    out.par_chunks_mut(per_task * cols * c)
        .enumerate()
        .for_each(|(t, o)| {
            for (i, row) in o.chunks_exact_mut(cols * c).enumerate() {
                d.row(isa, t * per_task + i, row);
            }
        });
    Ok(())
}
