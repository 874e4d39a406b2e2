//! Depthwise KxK convolution, vectorised across channels: NHWC keeps a pixel's channels contiguous,
//! so every tap is one fused multiply-add over a `C`-wide row (the compiler emits SIMD for it).
//! Parallel over output rows (forward), input rows (input gradient) and row blocks (weight gradient).

use super::ConvGeom;
use crate::Activation;
use rayon::prelude::*;

#[inline(always)]
fn fma_row(acc: &mut [f32], x: &[f32], w: &[f32]) {
    for ((a, x), w) in acc.iter_mut().zip(x).zip(w) {
        *a += x * w;
    }
}

/// `y = act(dwconv(x, w) + bias)`; `w` is `[kh, kw, C]`.
///
/// One output row at a time (parallel over rows): for each tap, one pass over the columns it
/// reaches, so the row stays in L1 and the inner loop is a plain multiply-add over channels,
/// compiled for the CPU's vector width ([`crate::simd`]).
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    let (c, ow) = (g.cin, g.cols.out);
    y.par_chunks_mut(ow * c)
        .enumerate()
        .for_each(|(row, out)| forward_row(g, x, w, bias, act, row, out));
}

crate::multiversion!(fn forward_row(g: &ConvGeom, x: &[f32], w: &[f32], bias: Option<&[f32]>, act: Activation, row: usize, out: &mut [f32]) => forward_row_body);

#[inline(always)]
fn forward_row_body(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    row: usize,
    out: &mut [f32],
) {
    let (c, oh, iw) = (g.cin, g.rows.out, g.cols.input);
    let img_in = g.rows.input * iw * c;
    let (n, oy) = (row / oh, row % oh);
    let img = &x[n * img_in..][..img_in];
    match bias {
        Some(b) => out.chunks_exact_mut(c).for_each(|o| o.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    for ky in 0..g.kh {
        let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy, ky) else {
            continue;
        };
        let xrow = &img[iy * iw * c..][..iw * c];
        for kx in 0..g.kw {
            let wk = &w[(ky * g.kw + kx) * c..][..c];
            let (lo, hi) = valid_cols(&g.cols, g.stride, kx);
            for ox in lo..hi {
                let ix = ox * g.stride + kx - g.cols.before;
                fma_row(&mut out[ox * c..][..c], &xrow[ix * c..][..c], wk);
            }
        }
    }
    if act != Activation::Linear {
        out.iter_mut().for_each(|v| *v = act.apply(*v));
    }
}

/// The output columns `ox` whose tap `k` lands inside the input: `lo..hi`.
#[inline(always)]
fn valid_cols(d: &crate::PadDim, stride: usize, k: usize) -> (usize, usize) {
    // ix = ox * stride + k - before must lie in 0..input.
    let lo = d.before.saturating_sub(k).div_ceil(stride);
    let last = d.input + d.before;
    let hi = if last > k {
        ((last - 1 - k) / stride + 1).min(d.out)
    } else {
        0
    };
    (lo.min(hi), hi)
}

/// Output index along one axis that input `i` reaches through tap `k`, if any.
#[inline(always)]
fn out_of(d: &crate::PadDim, stride: usize, i: usize, k: usize) -> Option<usize> {
    let t = (i + d.before) as isize - k as isize;
    if t < 0 || !(t as usize).is_multiple_of(stride) {
        return None;
    }
    let o = t as usize / stride;
    (o < d.out).then_some(o)
}

/// `dx[n, iy, ix, c] = sum over taps of dy[n, oy, ox, c] * w[ky, kx, c]`, gathered per input row.
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (c, iw, ih) = (g.cin, g.cols.input, g.rows.input);
    let img_out = g.rows.out * g.cols.out * c;
    dx.par_chunks_mut(iw * c)
        .enumerate()
        .for_each(|(row, out)| {
            let (n, iy) = (row / ih, row % ih);
            let img = &dy[n * img_out..][..img_out];
            for ix in 0..iw {
                let acc = &mut out[ix * c..][..c];
                acc.fill(0.0);
                for ky in 0..g.kh {
                    let Some(oy) = out_of(&g.rows, g.stride, iy, ky) else {
                        continue;
                    };
                    for kx in 0..g.kw {
                        let Some(ox) = out_of(&g.cols, g.stride, ix, kx) else {
                            continue;
                        };
                        fma_row(
                            acc,
                            &img[(oy * g.cols.out + ox) * c..][..c],
                            &w[(ky * g.kw + kx) * c..][..c],
                        );
                    }
                }
            }
        });
}

/// `dw[ky, kx, c] = sum over pixels of x * dy`: one partial sum per block of output rows, added in
/// block order (deterministic whatever the thread count).
pub fn backward_weights(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    const ROWS: usize = 8;
    let (c, ow, oh) = (g.cin, g.cols.out, g.rows.out);
    let img_in = g.rows.input * g.cols.input * c;
    let klen = g.kh * g.kw * c;
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(ow * c * ROWS)
        .enumerate()
        .map(|(blk, rows)| {
            let mut acc = vec![0.0f32; klen];
            for (r, dyr) in rows.chunks_exact(ow * c).enumerate() {
                let row = blk * ROWS + r;
                let (n, oy) = (row / oh, row % oh);
                let img = &x[n * img_in..][..img_in];
                for ky in 0..g.kh {
                    let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy, ky) else {
                        continue;
                    };
                    for ox in 0..ow {
                        let d = &dyr[ox * c..][..c];
                        for kx in 0..g.kw {
                            let Some(ix) = ConvGeom::tap(&g.cols, g.stride, ox, kx) else {
                                continue;
                            };
                            fma_row(
                                &mut acc[(ky * g.kw + kx) * c..][..c],
                                &img[(iy * g.cols.input + ix) * c..][..c],
                                d,
                            );
                        }
                    }
                }
            }
            acc
        })
        .collect();
    dw.copy_from_slice(&crate::gemm::sum_in_order(partials, klen));
}
