//! Row-wise softmax, numerically stable (the maximum is subtracted first).

use ndarray::{Array2, ArrayView2, Axis, Zip};

pub fn forward(logits: ArrayView2<f32>) -> Array2<f32> {
    let mut y = logits.to_owned();
    for mut row in y.axis_iter_mut(Axis(0)) {
        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    y
}

/// `dx = y * (dy - sum(dy * y))` per row.
pub fn backward(y: ArrayView2<f32>, dy: ArrayView2<f32>) -> Array2<f32> {
    let mut dx = Array2::zeros(y.raw_dim());
    Zip::from(dx.rows_mut())
        .and(y.rows())
        .and(dy.rows())
        .for_each(|mut dx, y, dy| {
            let dot: f32 = y.iter().zip(dy).map(|(a, b)| a * b).sum();
            Zip::from(&mut dx)
                .and(&y)
                .and(&dy)
                .for_each(|d, &y, &g| *d = y * (g - dot));
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rows_sum_to_one_and_survive_large_logits() {
        let y = forward(array![[1000.0f32, 1000.0], [0.0, 2.0f32.ln()]].view());
        assert!((y[[0, 0]] - 0.5).abs() < 1e-6);
        assert!((y[[1, 1]] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn backward_finite_difference() {
        let x = array![[0.3f32, -1.2, 2.0]];
        let r = array![[0.5f32, -0.25, 1.0]];
        let y = forward(x.view());
        let dx = backward(y.view(), r.view());
        for j in 0..3 {
            let e = 1e-2;
            let (mut a, mut b) = (x.clone(), x.clone());
            a[[0, j]] += e;
            b[[0, j]] -= e;
            let f = |z: &Array2<f32>| (forward(z.view()) * &r).sum();
            let fd = (f(&a) - f(&b)) / (2.0 * e);
            assert!((fd - dx[[0, j]]).abs() < 1e-3, "{fd} vs {}", dx[[0, j]]);
        }
    }
}
