//! Folding an inference-mode batch-norm into the convolution before it:
//! `bn(conv(x, w)) = conv(x, w * scale) + shift` with scale and shift per output channel.

use crate::{check_shape, Result};
use ndarray::{Array4, ArrayView4};

/// Batch-norm variables, Keras's names.
#[derive(Clone, Copy, Debug)]
pub struct BnView<'a> {
    pub gamma: &'a [f32],
    pub beta: &'a [f32],
    pub moving_mean: &'a [f32],
    pub moving_variance: &'a [f32],
    pub eps: f32,
}

/// Folds into a kernel whose output channel is its last axis (HWIO; also depthwise `(kh, kw, C, 1)`
/// when `depthwise` is set, where the channel is axis 2). Returns `(kernel, bias)`.
pub fn fold_batch_norm(
    w: ArrayView4<f32>,
    bn: BnView,
    depthwise: bool,
) -> Result<(Array4<f32>, Vec<f32>)> {
    let c = if depthwise {
        w.shape()[2]
    } else {
        w.shape()[3]
    };
    for p in [bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance] {
        check_shape("fold_batch_norm", &[c], &[p.len()])?;
    }
    let (scale, shift) = crate::batch_norm::scale_shift(
        bn.gamma,
        bn.beta,
        bn.moving_mean,
        bn.moving_variance,
        bn.eps,
    );
    let mut out = w.to_owned();
    for ((_, _, i, o), v) in out.indexed_iter_mut() {
        *v *= scale[if depthwise { i } else { o }];
    }
    Ok((out, shift))
}
