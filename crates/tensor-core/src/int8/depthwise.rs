//! The depthwise convolution in integers: `u8` codes, per-channel `i8` weights widened once to
//! `i32`, exact sums, requantized with bias and activation. One output row a task.

use super::{Isa, Requant};
use crate::conv::{ConvGeom, Taps, MAX_TAPS};
use crate::{Error, PadDim, Result};
use rayon::prelude::*;

/// What every output row of one call reads.
pub(super) struct Rows<'a> {
    pub g: &'a ConvGeom,
    pub x: &'a [u8],
    pub zp_x: i32,
    /// `[kh, kw, C]`, widened.
    pub w: Vec<i32>,
    pub bias: &'a [i32],
    pub rq: &'a Requant,
}

impl Rows<'_> {
    /// The taps of output position `o` along one axis that land inside the input, with the input
    /// position each reads (padding reads the zero point: it adds nothing, so it is skipped).
    #[inline(always)]
    pub fn taps(&self, d: &PadDim, o: usize) -> Taps {
        let k = if std::ptr::eq(d, &self.g.rows) {
            self.g.kh
        } else {
            self.g.kw
        };
        Taps::new(k, |t| ConvGeom::tap(d, self.g.stride, o, t))
    }

    fn row(&self, isa: Isa, row: usize, out: &mut [u8]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::available` detected every feature of the tier; `forward` checked the
            // extents of `x`, `w`, `bias` and the multipliers, `out` is one output row.
            Isa::Avx512Vnni if Isa::available().contains(&Isa::Avx512Vnni) => unsafe {
                super::x86::depthwise_row_avx512(self, row, out)
            },
            _ => self.portable_row(row, out),
        }
    }

    /// Plain Rust, channels innermost.
    fn portable_row(&self, row: usize, out: &mut [u8]) {
        let g = self.g;
        let (c, iw) = (g.cin, g.cols.input);
        let (n, oy) = (row / g.rows.out, row % g.rows.out);
        let img = &self.x[n * g.rows.input * iw * c..(n + 1) * g.rows.input * iw * c];
        let (lo, hi) = self.rq.bounds();
        let mut acc = vec![0i32; c];
        let taps_y = self.taps(&g.rows, oy);
        for ox in 0..g.cols.out {
            acc.copy_from_slice(self.bias);
            for &(ky, iy) in taps_y.as_slice() {
                for &(kx, ix) in self.taps(&g.cols, ox).as_slice() {
                    let xs = &img[(iy * iw + ix) * c..][..c];
                    let ws = &self.w[(ky * g.kw + kx) * c..][..c];
                    for ((s, &v), &wt) in acc.iter_mut().zip(xs).zip(ws) {
                        *s += (v as i32 - self.zp_x) * wt;
                    }
                }
            }
            for (ch, (o, &s)) in out[ox * c..(ox + 1) * c].iter_mut().zip(&acc).enumerate() {
                *o =
                    super::quant::requantize(s, self.rq.multiplier[ch], lo, hi, self.rq.zero_point);
            }
        }
    }
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
    let op = "int8 depthwise";
    rq.check(op)?;
    let c = g.cin;
    let (rows, cols) = (g.n * g.rows.out, g.cols.out);
    if x.len() != g.n * g.rows.input * g.cols.input * c
        || out.len() != rows * cols * c
        || w.len() != g.kh * g.kw * c
        || bias.len() != c
        || rq.channels() != c
        || g.cout != c
    {
        return Err(Error::Shape {
            op,
            expected: vec![
                g.n * g.rows.input * g.cols.input * c,
                rows * cols * c,
                g.kh * g.kw * c,
                c,
                c,
            ],
            got: vec![x.len(), out.len(), w.len(), bias.len(), rq.channels()],
        });
    }
    if g.kh > MAX_TAPS || g.kw > MAX_TAPS || !(0..=255).contains(&zp_x) {
        return Err(Error::Invalid {
            op,
            msg: format!(
                "kernel {}x{} (at most {MAX_TAPS}) or zero point {zp_x} out of range",
                g.kh, g.kw
            ),
        });
    }
    if rows * cols * c == 0 {
        return Ok(());
    }
    let d = Rows {
        g,
        x,
        zp_x,
        w: w.iter().map(|&v| v as i32).collect(),
        bias,
        rq,
    };
    out.par_chunks_mut(cols * c)
        .enumerate()
        .for_each(|(row, o)| d.row(isa, row, o));
    Ok(())
}
