//! 1x1 stride-1 convolution as one GEMM over the `[N*H*W, C]` view of NHWC memory (no copies).

use super::ConvGeom;
use crate::gemm::{par_gemm_into_with, par_gemm_split_k, Epilogue, Mat};
use crate::Activation;
use std::mem::MaybeUninit;

fn pixels(g: &ConvGeom) -> usize {
    g.n * g.rows.input * g.cols.input
}

/// `y[P, cout] = act(x[P, cin] * w[cin, cout] + bias)`. `y`'s slots need not be initialised
/// (a fresh [`crate::buffer::uninit`], or [`crate::buffer::as_uninit`] of floats): each is written.
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) {
    g.check_slices("pointwise forward", false, x.len(), w.len(), bias, y.len());
    let p = pixels(g);
    let (a, b) = (Mat::rows(x, g.cin), Mat::rows(w, g.cout));
    par_gemm_into_with(p, g.cin, g.cout, a, b, y, Epilogue { bias, act });
}

/// `dx[P, cin] = dy[P, cout] * w^T`, with `w^T` copied row-major first (it is small) so that the
/// product takes the unpacked kernel where it applies. Every slot of `dx` is written.
pub fn backward_input(g: &ConvGeom, dy: &[f32], w: &[f32], dx: &mut [MaybeUninit<f32>]) {
    g.check_slices(
        "pointwise backward_input",
        false,
        dx.len(),
        w.len(),
        None,
        dy.len(),
    );
    let p = pixels(g);
    let mut wt = vec![0.0f32; g.cin * g.cout];
    for (ci, row) in w.chunks_exact(g.cout).enumerate() {
        for (co, &v) in row.iter().enumerate() {
            wt[co * g.cin + ci] = v;
        }
    }
    let (a, b) = (Mat::rows(dy, g.cout), Mat::rows(&wt, g.cin));
    par_gemm_into_with(p, g.cout, g.cin, a, b, dx, Epilogue::NONE);
}

/// `dw[cin, cout] = x^T * dy`, split over pixels and summed.
pub fn backward_weights(g: &ConvGeom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    g.check_slices(
        "pointwise backward_weights",
        false,
        x.len(),
        dw.len(),
        None,
        dy.len(),
    );
    let p = pixels(g);
    par_gemm_split_k(
        g.cin,
        p,
        g.cout,
        Mat::transposed(x, g.cin),
        Mat::rows(dy, g.cout),
        0.0,
        dw,
    );
}
