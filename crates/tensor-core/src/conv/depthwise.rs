//! Depthwise KxK convolution, vectorised across channels: NHWC keeps a pixel's channels contiguous,
//! so every tap is one multiply-add over a block of channels. The forward keeps each accumulator in
//! a register across the taps (explicit x86 vectors in `depthwise_x86`, a portable twin here); the
//! backward passes use plain rows the compiler vectorises.
//! Parallel over output rows (forward), input rows (input gradient) and row blocks (weight gradient).

use super::ConvGeom;
use crate::Activation;
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[inline(always)]
fn fma_row(acc: &mut [f32], x: &[f32], w: &[f32]) {
    for ((a, x), w) in acc.iter_mut().zip(x).zip(w) {
        *a += x * w;
    }
}

/// `y = act(dwconv(x, w) + bias)`; `w` is `[kh, kw, C]`.
///
/// Parallel over output rows. Within a row, each output pixel is built one channel block at a time:
/// the accumulator stays in a register across all taps and is stored once, with the activation
/// applied. x86 CPUs with AVX-512 or AVX2 run the explicit-vector rows of
/// [`depthwise_x86`](super::depthwise_x86) when `C` is a multiple of their width; everything else
/// runs the portable [`forward_row_blocked`]. Every slot of `y` is written (none is read), so it
/// may come fresh from [`crate::buffer::uninit`].
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    g.check_slices("depthwise forward", true, x.len(), w.len(), bias, y.len());
    let (c, ow) = (g.cin, g.cols.out);
    let zeros;
    let bias = match bias {
        Some(b) => b,
        None => {
            zeros = vec![0.0f32; c];
            &zeros
        }
    };
    y.par_chunks_mut(ow * c)
        .enumerate()
        .for_each(|(row, out)| forward_row(g, x, w, bias, act, row, out));
}

/// One output row `row` (image-major) of [`forward`], on the calling thread.
pub(crate) fn forward_row(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    act: Activation,
    row: usize,
    out: &mut [MaybeUninit<f32>],
) {
    #[cfg(target_arch = "x86_64")]
    {
        use super::depthwise_x86::{row3x3_avx2, row3x3_avx512, row_avx2, row_avx512};
        use crate::simd::{level, Level};
        let c = g.cin;
        let k3x3 = g.kh == 3 && g.kw == 3;
        match level() {
            // SAFETY: `level()` detected the features; `c` is a multiple of the lane count and the
            // kernel 3x3; the slices have the sizes `g` gives (the kernels assert it).
            Level::Avx512 if c.is_multiple_of(16) && k3x3 => {
                return unsafe { row3x3_avx512(g, x, w, bias, act, row, out) }
            }
            // SAFETY: as above (AVX-512 CPUs have AVX2 and FMA).
            Level::Avx512 | Level::Avx2 if c.is_multiple_of(8) && k3x3 => {
                return unsafe { row3x3_avx2(g, x, w, bias, act, row, out) }
            }
            // SAFETY: `level()` detected the features; `c` is a multiple of the lane count; the
            // slices have the sizes `g` gives (the kernels assert it).
            Level::Avx512 if c.is_multiple_of(16) && g.kh <= super::MAX_TAPS => {
                return unsafe { row_avx512(g, x, w, bias, act, row, out) }
            }
            // SAFETY: as above (AVX-512 CPUs have AVX2 and FMA).
            Level::Avx512 | Level::Avx2 if c.is_multiple_of(8) && g.kh <= super::MAX_TAPS => {
                return unsafe { row_avx2(g, x, w, bias, act, row, out) }
            }
            _ => {}
        }
    }
    forward_row_portable(g, x, w, bias, act, row, out)
}

crate::multiversion!(fn forward_row_portable(g: &ConvGeom, x: &[f32], w: &[f32], bias: &[f32], act: Activation, row: usize, out: &mut [MaybeUninit<f32>]) => forward_row_body);

#[inline(always)]
fn forward_row_body(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    act: Activation,
    row: usize,
    out: &mut [MaybeUninit<f32>],
) {
    if g.cin.is_multiple_of(8) {
        forward_row_blocked::<8>(g, x, w, bias, act, row, out)
    } else if g.cin.is_multiple_of(4) {
        forward_row_blocked::<4>(g, x, w, bias, act, row, out)
    } else {
        forward_row_blocked::<1>(g, x, w, bias, act, row, out)
    }
}

/// One output row, `C` a multiple of `L`: per pixel and channel block, the taps that land inside
/// the input are summed in a `[f32; L]` accumulator (one vector register) and stored once.
#[inline(always)]
fn forward_row_blocked<const L: usize>(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    act: Activation,
    row: usize,
    out: &mut [MaybeUninit<f32>],
) {
    let (c, oh, iw, s) = (g.cin, g.rows.out, g.cols.input, g.stride);
    let img_in = g.rows.input * iw * c;
    let (n, oy) = (row / oh, row % oh);
    let img = &x[n * img_in..][..img_in];
    let (before, last) = (g.cols.before, iw + g.cols.before);
    for (ox, o) in out.chunks_exact_mut(c).enumerate() {
        // Taps kx with 0 <= ox*s + kx - before < iw.
        let kx_lo = before.saturating_sub(ox * s);
        let kx_hi = g.kw.min(last.saturating_sub(ox * s));
        for cb in (0..c).step_by(L) {
            let mut acc = [0.0f32; L];
            acc.copy_from_slice(&bias[cb..cb + L]);
            for ky in 0..g.kh {
                let Some(iy) = ConvGeom::tap(&g.rows, s, oy, ky) else {
                    continue;
                };
                let xrow = &img[iy * iw * c..][..iw * c];
                for kx in kx_lo..kx_hi {
                    let ix = ox * s + kx - before;
                    let xv: &[f32; L] = xrow[ix * c + cb..][..L].try_into().unwrap();
                    let wv: &[f32; L] = w[(ky * g.kw + kx) * c + cb..][..L].try_into().unwrap();
                    for i in 0..L {
                        acc[i] += xv[i] * wv[i];
                    }
                }
            }
            let ov = &mut o[cb..cb + L];
            for (o, &a) in ov.iter_mut().zip(&acc) {
                o.write(match act {
                    Activation::Linear => a,
                    Activation::Relu => a.max(0.0),
                    Activation::Relu6 => a.clamp(0.0, 6.0),
                });
            }
        }
    }
}

/// `dx[n, iy, ix, c] = sum over taps of dy[n, oy, ox, c] * w[ky, kx, c]`, gathered per input row.
/// Every slot of `dx` is written.
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    g.check_slices(
        "depthwise backward_input",
        true,
        dx.len(),
        w.len(),
        None,
        dy.len(),
    );
    let (c, iw, ih) = (g.cin, g.cols.input, g.rows.input);
    let img_out = g.rows.out * g.cols.out * c;
    dx.par_chunks_mut(iw * c)
        .enumerate()
        .for_each(|(row, out)| {
            #[cfg(target_arch = "x86_64")]
            {
                use super::depthwise_x86::{dx_row_avx2, dx_row_avx512};
                use crate::simd::{level, Level};
                let fits = g.kh <= super::MAX_TAPS && g.kw <= super::MAX_TAPS;
                match level() {
                    // SAFETY: features detected; `c` a multiple of the lanes; sizes asserted inside.
                    Level::Avx512 if fits && c.is_multiple_of(16) => {
                        return unsafe { dx_row_avx512(g, dy, w, row, out) }
                    }
                    // SAFETY: as above.
                    Level::Avx512 | Level::Avx2 if fits && c.is_multiple_of(8) => {
                        return unsafe { dx_row_avx2(g, dy, w, row, out) }
                    }
                    _ => {}
                }
            }
            let (n, iy) = (row / ih, row % ih);
            let img = &dy[n * img_out..][..img_out];
            for ix in 0..iw {
                let acc = &mut out[ix * c..][..c];
                acc.fill(MaybeUninit::new(0.0));
                // SAFETY: every slot of `acc` was just written.
                let acc = unsafe { crate::buffer::assume_init_mut(acc) };
                for ky in 0..g.kh {
                    let Some(oy) = ConvGeom::out_of(&g.rows, g.stride, iy, ky) else {
                        continue;
                    };
                    for kx in 0..g.kw {
                        let Some(ox) = ConvGeom::out_of(&g.cols, g.stride, ix, kx) else {
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
    g.check_slices(
        "depthwise backward_weights",
        true,
        x.len(),
        dw.len(),
        None,
        dy.len(),
    );
    const ROWS: usize = 8;
    let (c, ow, oh) = (g.cin, g.cols.out, g.rows.out);
    let img_in = g.rows.input * g.cols.input * c;
    let klen = g.kh * g.kw * c;
    let partials: Vec<Vec<f32>> = dy
        .par_chunks(ow * c * ROWS)
        .enumerate()
        .map(|(blk, rows)| {
            let mut acc = vec![0.0f32; klen];
            #[cfg(target_arch = "x86_64")]
            {
                use super::depthwise_x86::{dw_rows_avx2, dw_rows_avx512};
                use crate::simd::{level, Level};
                let span = blk * ROWS..blk * ROWS + rows.len() / (ow * c);
                match level() {
                    // SAFETY: features detected; `c` a multiple of the lanes; sizes asserted inside.
                    Level::Avx512 if c.is_multiple_of(16) => {
                        unsafe { dw_rows_avx512(g, x, dy, span, &mut acc) };
                        return acc;
                    }
                    // SAFETY: as above.
                    Level::Avx512 | Level::Avx2 if c.is_multiple_of(8) => {
                        unsafe { dw_rows_avx2(g, x, dy, span, &mut acc) };
                        return acc;
                    }
                    _ => {}
                }
            }
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
