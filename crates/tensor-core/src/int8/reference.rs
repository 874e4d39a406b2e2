//! The plain integer kernels: loops as the definitions read, what the fast ones must equal exactly.

use super::add::AddParams;
use super::{QParams, Requant};
use crate::conv::ConvGeom;

/// `out[r, c] = requant(bias[c] + sum_k (a[r, k] - zp_a) * w[k, c])` for `rows` rows; `a` is
/// `[rows, k]`, `w` is `[k, n]` row-major, `out` is `[rows, n]`.
#[allow(clippy::too_many_arguments)]
pub fn pointwise(
    a: &[u8],
    rows: usize,
    k: usize,
    zp_a: i32,
    w: &[i8],
    n: usize,
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) {
    assert!(a.len() == rows * k && w.len() == k * n && bias.len() == n && out.len() == rows * n);
    for r in 0..rows {
        for c in 0..n {
            let mut acc = bias[c];
            for i in 0..k {
                acc += (a[r * k + i] as i32 - zp_a) * w[i * n + c] as i32;
            }
            out[r * n + c] = rq.apply(acc, c);
        }
    }
}

/// Depthwise convolution of `x` (`[N, H, W, C]` codes with zero point `zp_x`) by `w`
/// (`[kh, kw, C]`): padding reads as the zero point, so it adds nothing to the sums.
pub fn depthwise(
    g: &ConvGeom,
    x: &[u8],
    zp_x: i32,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) {
    let (c, ih, iw) = (g.cin, g.rows.input, g.cols.input);
    let (oh, ow) = (g.rows.out, g.cols.out);
    assert!(x.len() == g.n * ih * iw * c && out.len() == g.n * oh * ow * c);
    for n in 0..g.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut acc = bias[ch];
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.stride + ky) as isize - g.rows.before as isize;
                            let ix = (ox * g.stride + kx) as isize - g.cols.before as isize;
                            if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                continue;
                            }
                            let v = x[((n * ih + iy as usize) * iw + ix as usize) * c + ch];
                            acc += (v as i32 - zp_x) * w[(ky * g.kw + kx) * c + ch] as i32;
                        }
                    }
                    out[((n * oh + oy) * ow + ox) * c + ch] = rq.apply(acc, ch);
                }
            }
        }
    }
}

/// Element-wise sum of two encoded tensors into a third encoding.
pub fn add(a: &[u8], b: &[u8], p: &AddParams, out: &mut [u8]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    for i in 0..a.len() {
        out[i] = p.apply(a[i], b[i]);
    }
}

/// Mean real value of each channel of each image of `x` (`[n, pixels, c]` codes encoded by `q`):
/// the codes summed one by one, then [`super::pool::mean`].
pub fn global_avg_pool(x: &[u8], n: usize, pixels: usize, c: usize, q: QParams, out: &mut [f32]) {
    assert!(x.len() == n * pixels * c && out.len() == n * c);
    for i in 0..n {
        for ch in 0..c {
            let mut sum = 0u64;
            for p in 0..pixels {
                sum += x[(i * pixels + p) * c + ch] as u64;
            }
            out[i * c + ch] = super::pool::mean(sum, pixels, q);
        }
    }
}

/// Regular convolution of `x` (`[N, H, W, Cin]` codes) by `w` (HWIO `[kh, kw, Cin, Cout]`);
/// padding reads as the zero point.
pub fn conv(
    g: &ConvGeom,
    x: &[u8],
    zp_x: i32,
    w: &[i8],
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) {
    let (ci, co, ih, iw) = (g.cin, g.cout, g.rows.input, g.cols.input);
    let (oh, ow) = (g.rows.out, g.cols.out);
    assert!(x.len() == g.n * ih * iw * ci && out.len() == g.n * oh * ow * co);
    for n in 0..g.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..co {
                    let mut acc = bias[o];
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.stride + ky) as isize - g.rows.before as isize;
                            let ix = (ox * g.stride + kx) as isize - g.cols.before as isize;
                            if iy < 0 || ix < 0 || iy >= ih as isize || ix >= iw as isize {
                                continue;
                            }
                            for c in 0..ci {
                                let v = x[((n * ih + iy as usize) * iw + ix as usize) * ci + c];
                                let wt = w[((ky * g.kw + kx) * ci + c) * co + o];
                                acc += (v as i32 - zp_x) * wt as i32;
                            }
                        }
                    }
                    out[((n * oh + oy) * ow + ox) * co + o] = rq.apply(acc, o);
                }
            }
        }
    }
}
