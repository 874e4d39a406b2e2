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
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    let (c, ow, oh) = (g.cin, g.cols.out, g.rows.out);
    let img_in = g.rows.input * g.cols.input * c;
    y.par_chunks_mut(ow * c).enumerate().for_each(|(row, out)| {
        let (n, oy) = (row / oh, row % oh);
        let img = &x[n * img_in..][..img_in];
        for ox in 0..ow {
            let acc = &mut out[ox * c..][..c];
            match bias {
                Some(b) => acc.copy_from_slice(b),
                None => acc.fill(0.0),
            }
            for ky in 0..g.kh {
                let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy, ky) else {
                    continue;
                };
                for kx in 0..g.kw {
                    let Some(ix) = ConvGeom::tap(&g.cols, g.stride, ox, kx) else {
                        continue;
                    };
                    fma_row(
                        acc,
                        &img[(iy * g.cols.input + ix) * c..][..c],
                        &w[(ky * g.kw + kx) * c..][..c],
                    );
                }
            }
            if act != Activation::Linear {
                acc.iter_mut().for_each(|v| *v = act.apply(*v));
            }
        }
    });
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
