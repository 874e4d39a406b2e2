//! Fully connected layer: `y[N, out] = x[N, in] * w[in, out] + b` (Keras's kernel layout).

use crate::gemm::{gemm, par_gemm_into_with, Epilogue, Mat};
use crate::{check_shape, Activation, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

fn std2(a: ArrayView2<f32>) -> std::borrow::Cow<[f32]> {
    match a.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// `y = x w + b`, on the thread pool (over rows, or over columns for a small batch).
pub fn forward(x: ArrayView2<f32>, w: ArrayView2<f32>, b: ArrayView1<f32>) -> Result<Array2<f32>> {
    let (n, i) = x.dim();
    let o = w.ncols();
    check_shape("dense", &[i, o], w.shape())?;
    check_shape("dense", &[o], b.shape())?;
    let bias = b.to_vec();
    let mut y = crate::buffer::uninit(n * o);
    let (x, w) = (std2(x), std2(w));
    let epi = Epilogue {
        bias: Some(&bias),
        act: Activation::Linear,
    };
    par_gemm_into_with(n, i, o, Mat::rows(&x, i), Mat::rows(&w, o), &mut y, epi);
    // SAFETY: `par_gemm_into_with` wrote all `n * o` slots.
    let y = unsafe { crate::buffer::assume_init(y) };
    Ok(Array2::from_shape_vec((n, o), y).expect("length is the shape's size"))
}

/// Gradients of a dense layer.
pub struct DenseGrads {
    pub dx: Option<Array2<f32>>,
    pub dw: Array2<f32>,
    pub db: Array1<f32>,
}

/// `dx = dy w^T`, `dw = x^T dy`, `db = sum_rows(dy)`.
pub fn backward(
    x: ArrayView2<f32>,
    w: ArrayView2<f32>,
    dy: ArrayView2<f32>,
    need_dx: bool,
) -> Result<DenseGrads> {
    let (n, i) = x.dim();
    let o = w.ncols();
    check_shape("dense_backward", &[n, o], dy.shape())?;
    check_shape("dense_backward", &[i, o], w.shape())?;
    let (xs, ws, dys) = (std2(x), std2(w), std2(dy));
    let mut dw = Array2::zeros((i, o));
    gemm(
        i,
        n,
        o,
        Mat::transposed(&xs, i),
        Mat::rows(&dys, o),
        0.0,
        dw.as_slice_mut().expect("contiguous"),
    );
    let dx = need_dx.then(|| {
        let mut dx = Array2::zeros((n, i));
        gemm(
            n,
            o,
            i,
            Mat::rows(&dys, o),
            Mat::transposed(&ws, o),
            0.0,
            dx.as_slice_mut().expect("contiguous"),
        );
        dx
    });
    Ok(DenseGrads {
        dx,
        dw,
        db: dy.sum_axis(Axis(0)),
    })
}

/// Plain loops.
pub mod reference {
    use ndarray::{Array2, ArrayView1, ArrayView2};

    pub fn forward(x: ArrayView2<f32>, w: ArrayView2<f32>, b: ArrayView1<f32>) -> Array2<f32> {
        Array2::from_shape_fn((x.nrows(), w.ncols()), |(r, j)| {
            b[j] + (0..x.ncols()).map(|k| x[[r, k]] * w[[k, j]]).sum::<f32>()
        })
    }
}
