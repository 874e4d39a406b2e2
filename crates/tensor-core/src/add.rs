//! Element-wise addition of two same-shaped tensors (residual connections).

use crate::{check_shape, Result};
use ndarray::{ArrayD, ArrayViewD, Zip};

/// `y = a + b`.
pub fn forward(a: ArrayViewD<f32>, b: ArrayViewD<f32>) -> Result<ArrayD<f32>> {
    check_shape("add", a.shape(), b.shape())?;
    // Collected element by element into a buffer written once (ndarray's `map_collect`).
    Ok(Zip::from(&a).and(&b).par_map_collect(|&a, &b| a + b))
}

/// The gradient of a sum reaches both inputs unchanged: `da = db = dy`.
pub fn backward(dy: ArrayViewD<f32>) -> (ArrayD<f32>, ArrayD<f32>) {
    (dy.to_owned(), dy.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn adds_and_rejects_mismatch() {
        let a = arr1(&[1.0f32, 2.0]).into_dyn();
        let b = arr1(&[3.0f32, 4.0]).into_dyn();
        assert_eq!(
            forward(a.view(), b.view()).unwrap(),
            arr1(&[4.0, 6.0]).into_dyn()
        );
        let c = arr1(&[1.0f32]).into_dyn();
        let err = forward(a.view(), c.view()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "add: shape mismatch: expected [2], got [1]"
        );
    }
}
