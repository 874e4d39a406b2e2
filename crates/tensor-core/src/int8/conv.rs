//! A regular convolution (any kernel, stride, padding) in integers: the input's patches gathered
//! into rows of codes (padding as the zero point, which adds nothing to the sums), then the 1x1
//! kernel over them. MobileNetV2's first convolution (3x3, stride 2, 3 channels) is the user.

use super::{pointwise, Isa, PackedWeights, Requant};
use crate::conv::ConvGeom;
use crate::{Error, Result};
use rayon::prelude::*;

/// `[N * OH * OW, kh * kw * Cin]` patches of `x` (`[N, H, W, Cin]`), in the kernel's HWIO order.
pub fn im2col(g: &ConvGeom, x: &[u8], zp: u8) -> Vec<u8> {
    let (c, iw, ow) = (g.cin, g.cols.input, g.cols.out);
    let (k, run) = (g.kh * g.kw * c, g.kw * c);
    let mut a = vec![zp; g.n * g.rows.out * ow * k];
    if a.is_empty() {
        return a;
    }
    a.par_chunks_mut(ow * k).enumerate().for_each(|(row, dst)| {
        let (n, oy) = (row / g.rows.out, row % g.rows.out);
        let img = &x[n * g.rows.input * iw * c..(n + 1) * g.rows.input * iw * c];
        for ky in 0..g.kh {
            let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy, ky) else {
                continue;
            };
            let src = &img[iy * iw * c..(iy + 1) * iw * c];
            for ox in 0..ow {
                let at = ox * k + ky * g.kw * c;
                let first = (ox * g.stride) as isize - g.cols.before as isize;
                if first >= 0 && first as usize + g.kw <= iw {
                    // The whole kernel row is inside: one run of kw * c bytes (a short copy, not
                    // a memcpy call per tap: with 3 channels each would copy 3 bytes).
                    let from = first as usize * c;
                    let (to, from) = (&mut dst[at..at + run], &src[from..from + run]);
                    match run {
                        // The first convolution's 3x3 over RGB: a copy of known length.
                        9 => to.copy_from_slice(from),
                        _ => small_copy(to, from),
                    }
                    continue;
                }
                for kx in 0..g.kw {
                    if let Some(ix) = ConvGeom::tap(&g.cols, g.stride, ox, kx) {
                        let to = at + kx * c;
                        small_copy(&mut dst[to..to + c], &src[ix * c..(ix + 1) * c]);
                    }
                }
            }
        }
    });
    a
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
    pointwise::forward(isa, &im2col(g, x, zp), rows, zp_x, w, bias, rq, out)
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
