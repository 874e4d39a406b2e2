//! The one fusion rule: when two neighbouring layers, the second reading only the first, are
//! computed as one. The training graph ([`Graph::run`](crate::Graph::run)), the folded inference
//! compiler and the ONNX export all ask [`rule`] (through [`Graph::fusion_at`](crate::Graph::fusion_at)).

use crate::spec::LayerSpec;
use tensor_core::{Activation, Padding};

/// How the pair `(first, next)` becomes one computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusion {
    /// `next` is an element-wise activation the first layer applies to its output.
    Activation(Activation),
    /// The first layer is a `ZeroPadding2D` (this [`Padding::Explicit`]) that the valid-padded
    /// convolution `next` applies on the fly.
    Padding(Padding),
    /// `next` is a batch-norm folded into the kernel and bias of the convolution before it: its
    /// moving statistics are constants, so only where no batch statistics are ever used (inference).
    BatchNorm,
}

/// Whether `(first, next)` fuse, and how. `fold_batch_norm` allows [`Fusion::BatchNorm`]
/// (inference plans); a training graph, whose batch-norms may use batch statistics, passes false.
pub fn rule(first: &LayerSpec, next: &LayerSpec, fold_batch_norm: bool) -> Option<Fusion> {
    use LayerSpec as L;
    match (first, next) {
        (
            L::ZeroPadding2D(((top, bottom), (left, right))),
            L::Conv2D {
                padding: Padding::Valid,
                ..
            }
            | L::DepthwiseConv2D {
                padding: Padding::Valid,
                ..
            },
        ) => Some(Fusion::Padding(Padding::Explicit {
            top: *top,
            bottom: *bottom,
            left: *left,
            right: *right,
        })),
        (L::Conv2D { .. } | L::DepthwiseConv2D { .. }, L::BatchNormalization { .. })
            if fold_batch_norm =>
        {
            Some(Fusion::BatchNorm)
        }
        (
            L::Conv2D { .. }
            | L::DepthwiseConv2D { .. }
            | L::BatchNormalization { .. }
            | L::Dense {
                act: Activation::Linear,
                ..
            },
            L::Activation(a),
        ) => Some(Fusion::Activation(*a)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn pairs_fuse_as_the_rule_says() {
        let k = Tensor::zeros(ndarray::IxDyn(&[3, 3, 4, 1]));
        let c = Tensor::zeros(ndarray::IxDyn(&[4]));
        let dw = |padding| LayerSpec::DepthwiseConv2D {
            kernel: &k,
            stride: 2,
            padding,
        };
        let bn = LayerSpec::BatchNormalization {
            gamma: &c,
            beta: &c,
            moving_mean: &c,
            moving_variance: &c,
            eps: 1e-3,
        };
        let pad = LayerSpec::ZeroPadding2D(((0, 1), (1, 0)));
        let relu6 = LayerSpec::Activation(Activation::Relu6);
        let explicit = Padding::Explicit {
            top: 0,
            bottom: 1,
            left: 1,
            right: 0,
        };
        assert_eq!(
            rule(&pad, &dw(Padding::Valid), false),
            Some(Fusion::Padding(explicit))
        );
        assert_eq!(rule(&pad, &dw(Padding::Same), true), None);
        assert_eq!(rule(&dw(Padding::Same), &bn, true), Some(Fusion::BatchNorm));
        assert_eq!(rule(&dw(Padding::Same), &bn, false), None);
        assert_eq!(
            rule(&bn, &relu6, false),
            Some(Fusion::Activation(Activation::Relu6))
        );
        let dense = |act| LayerSpec::Dense {
            kernel: &k,
            bias: &c,
            act,
        };
        assert_eq!(
            rule(&dense(Activation::Linear), &relu6, true),
            Some(Fusion::Activation(Activation::Relu6))
        );
        assert_eq!(rule(&dense(Activation::Relu), &relu6, true), None);
        assert_eq!(rule(&LayerSpec::Add, &relu6, true), None);
        assert_eq!(rule(&relu6, &relu6, true), None);
    }
}
