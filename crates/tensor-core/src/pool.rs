//! Global average pooling `[N, H, W, C] -> [N, C]`, and its backward.

use crate::{Error, Result};
use ndarray::{Array2, Array4, ArrayView2, ArrayView4, Axis};

pub fn global_avg_pool(x: ArrayView4<f32>) -> Array2<f32> {
    let (_, h, w, _) = x.dim();
    let s = x.sum_axis(Axis(1)).sum_axis(Axis(1));
    s / (h * w) as f32
}

/// `dx[n, y, x, c] = dy[n, c] / (H*W)`.
pub fn global_avg_pool_backward(dy: ArrayView2<f32>, h: usize, w: usize) -> Result<Array4<f32>> {
    let (n, c) = dy.dim();
    if h * w == 0 {
        return Err(Error::Invalid {
            op: "global_avg_pool_backward",
            msg: "empty spatial size".into(),
        });
    }
    let k = 1.0 / (h * w) as f32;
    Ok(Array4::from_shape_fn((n, h, w, c), |(i, _, _, ch)| {
        dy[[i, ch]] * k
    }))
}

/// Plain loops.
pub mod reference {
    use ndarray::{Array2, ArrayView4};

    pub fn global_avg_pool(x: ArrayView4<f32>) -> Array2<f32> {
        let (n, h, w, c) = x.dim();
        Array2::from_shape_fn((n, c), |(i, ch)| {
            let mut s = 0.0f64;
            for y in 0..h {
                for xx in 0..w {
                    s += x[[i, y, xx, ch]] as f64;
                }
            }
            (s / (h * w) as f64) as f32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_backward() {
        let x = Array4::from_shape_fn((2, 3, 2, 4), |(n, y, x, c)| {
            (n * 100 + y * 10 + x + c) as f32
        });
        let p = global_avg_pool(x.view());
        assert_eq!(p, reference::global_avg_pool(x.view()));
        assert_eq!(p[[1, 2]], 100.0 + 10.0 + 0.5 + 2.0);
        let dx = global_avg_pool_backward(Array2::ones((2, 4)).view(), 3, 2).unwrap();
        assert!((dx.sum() - 8.0).abs() < 1e-5);
    }
}
