//! General KxK convolution: gather patches of a block of output rows into a matrix
//! `[pixels, kh*kw*cin]` (im2col), then one GEMM with the HWIO kernel viewed as `[kh*kw*cin, cout]`.
//! Work is split over (image, row block), so both cores are busy even at batch 1.

use super::ConvGeom;
use crate::gemm::{gemm, gemm_into_with, Epilogue, Mat};
use crate::Activation;
use rayon::prelude::*;

/// Output rows per task: enough pixels for a good GEMM, small enough to stay in cache.
fn block_rows(g: &ConvGeom) -> usize {
    (256 / g.cols.out.max(1)).clamp(1, g.rows.out.max(1))
}

/// Fills `col` with the patches of output rows `oy0..oy0+rows` of image `n`.
fn gather(g: &ConvGeom, x: &[f32], n: usize, oy0: usize, rows: usize, col: &mut [f32]) {
    let (cin, kk) = (g.cin, g.kh * g.kw * g.cin);
    let img = &x[n * g.rows.input * g.cols.input * cin..];
    for r in 0..rows {
        for ox in 0..g.cols.out {
            let dst = &mut col[(r * g.cols.out + ox) * kk..][..kk];
            for ky in 0..g.kh {
                let iy = ConvGeom::tap(&g.rows, g.stride, oy0 + r, ky);
                for kx in 0..g.kw {
                    let d = &mut dst[(ky * g.kw + kx) * cin..][..cin];
                    match (iy, ConvGeom::tap(&g.cols, g.stride, ox, kx)) {
                        (Some(iy), Some(ix)) => {
                            d.copy_from_slice(&img[(iy * g.cols.input + ix) * cin..][..cin])
                        }
                        _ => d.fill(0.0),
                    }
                }
            }
        }
    }
}

/// Adds the patch gradients `dcol` of output rows `oy0..oy0+rows` back into image `n` of `dx`.
fn scatter(g: &ConvGeom, dcol: &[f32], oy0: usize, rows: usize, dx_img: &mut [f32]) {
    let (cin, kk) = (g.cin, g.kh * g.kw * g.cin);
    for r in 0..rows {
        for ox in 0..g.cols.out {
            let src = &dcol[(r * g.cols.out + ox) * kk..][..kk];
            for ky in 0..g.kh {
                let Some(iy) = ConvGeom::tap(&g.rows, g.stride, oy0 + r, ky) else {
                    continue;
                };
                for kx in 0..g.kw {
                    let Some(ix) = ConvGeom::tap(&g.cols, g.stride, ox, kx) else {
                        continue;
                    };
                    let d = &mut dx_img[(iy * g.cols.input + ix) * cin..][..cin];
                    d.iter_mut()
                        .zip(&src[(ky * g.kw + kx) * cin..][..cin])
                        .for_each(|(a, b)| *a += b);
                }
            }
        }
    }
}

/// `y = act(conv(x, w) + bias)`.
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [f32],
) {
    g.check_slices("im2col forward", false, x.len(), w.len(), bias, y.len());
    let (ow, cout, kk) = (g.cols.out, g.cout, g.kh * g.kw * g.cin);
    let br = block_rows(g);
    let img_len = g.rows.out * ow * cout;
    // Each task owns a block of output rows of one image: disjoint slices of `y`.
    let tasks: Vec<(usize, usize, &mut [f32])> = y
        .chunks_mut(img_len)
        .enumerate()
        .flat_map(|(n, img)| {
            img.chunks_mut(br * ow * cout)
                .enumerate()
                .map(move |(b, blk)| (n, b * br, blk))
        })
        .collect();
    tasks
        .into_par_iter()
        .for_each_init(Vec::new, |col: &mut Vec<f32>, (n, oy0, out)| {
            let rows = out.len() / (ow * cout);
            col.resize(rows * ow * kk, 0.0);
            gather(g, x, n, oy0, rows, col);
            let (a, b) = (Mat::rows(col, kk), Mat::rows(w, cout));
            let epi = Epilogue { bias, act };
            gemm_into_with(
                rows * ow,
                kk,
                cout,
                a,
                b,
                crate::buffer::as_uninit(out),
                epi,
            );
        });
}

/// `dx = col2im(dy * w^T)`, parallel over images (each image's `dx` is disjoint).
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    g.check_slices(
        "im2col backward_input",
        false,
        dx.len(),
        w.len(),
        None,
        dy.len(),
    );
    let (ow, cout, kk) = (g.cols.out, g.cout, g.kh * g.kw * g.cin);
    let br = block_rows(g);
    let in_len = g.rows.input * g.cols.input * g.cin;
    let out_len = g.rows.out * ow * cout;
    dx.fill(0.0);
    dx.par_chunks_mut(in_len).enumerate().for_each_init(
        Vec::new,
        |dcol: &mut Vec<f32>, (n, dx_img)| {
            for oy0 in (0..g.rows.out).step_by(br) {
                let rows = br.min(g.rows.out - oy0);
                dcol.resize(rows * ow * kk, 0.0);
                let dyb = &dy[n * out_len + oy0 * ow * cout..][..rows * ow * cout];
                gemm(
                    rows * ow,
                    cout,
                    kk,
                    Mat::rows(dyb, cout),
                    Mat::transposed(w, cout),
                    0.0,
                    dcol,
                );
                scatter(g, dcol, oy0, rows, dx_img);
            }
        },
    );
}

/// `dw = sum over blocks of col^T * dy`: one partial sum per image, added in image order
/// (deterministic whatever the thread count).
pub fn backward_weights(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    g.check_slices(
        "im2col backward_weights",
        false,
        x.len(),
        dw.len(),
        None,
        dy.len(),
    );
    let (ow, cout, kk) = (g.cols.out, g.cout, g.kh * g.kw * g.cin);
    let br = block_rows(g);
    let out_len = g.rows.out * ow * cout;
    let partials: Vec<Vec<f32>> = (0..g.n)
        .into_par_iter()
        .map_init(Vec::new, |col: &mut Vec<f32>, n| {
            let mut acc = vec![0.0f32; kk * cout];
            for oy0 in (0..g.rows.out).step_by(br) {
                let rows = br.min(g.rows.out - oy0);
                col.resize(rows * ow * kk, 0.0);
                gather(g, x, n, oy0, rows, col);
                let dyb = &dy[n * out_len + oy0 * ow * cout..][..rows * ow * cout];
                gemm(
                    kk,
                    rows * ow,
                    cout,
                    Mat::transposed(col, kk),
                    Mat::rows(dyb, cout),
                    1.0,
                    &mut acc,
                );
            }
            acc
        })
        .collect();
    dw.copy_from_slice(&crate::gemm::sum_in_order(partials, kk * cout));
}
