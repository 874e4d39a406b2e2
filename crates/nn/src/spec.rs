//! What a layer computes, with typed access to its variables: what compilers read (the folded
//! inference plan, its quantization, the ONNX export, the summary) instead of parameter names.

use crate::Tensor;
use std::fmt;
use tensor_core::{Activation, Padding};

/// Rows `(top, bottom)` and columns `(left, right)` of zeros a `ZeroPadding2D` adds.
pub type Pad2 = ((usize, usize), (usize, usize));

/// One layer's computation and its variables, borrowed from the layer.
#[derive(Clone, Copy, Debug)]
pub enum LayerSpec<'a> {
    /// HWIO kernel `[kh, kw, cin, cout]`, optional bias `[cout]`.
    Conv2D {
        kernel: &'a Tensor,
        bias: Option<&'a Tensor>,
        stride: usize,
        padding: Padding,
    },
    /// Kernel `[kh, kw, c, 1]` (depth multiplier 1), no bias.
    DepthwiseConv2D {
        kernel: &'a Tensor,
        stride: usize,
        padding: Padding,
    },
    /// Per-channel `[c]` variables; at inference `(x - mean) / sqrt(variance + eps) * gamma + beta`.
    BatchNormalization {
        gamma: &'a Tensor,
        beta: &'a Tensor,
        moving_mean: &'a Tensor,
        moving_variance: &'a Tensor,
        eps: f32,
    },
    Activation(Activation),
    ZeroPadding2D(Pad2),
    Add,
    GlobalAveragePooling2D,
    /// Kernel `[in, out]`, bias `[out]`, then `act`.
    Dense {
        kernel: &'a Tensor,
        bias: &'a Tensor,
        act: Activation,
    },
    /// The identity at inference.
    Dropout {
        rate: f32,
    },
    Softmax,
}

impl LayerSpec<'_> {
    /// The Keras class a model summary names.
    pub fn keras_class(&self) -> &'static str {
        match self {
            LayerSpec::Conv2D { .. } => "Conv2D",
            LayerSpec::DepthwiseConv2D { .. } => "DepthwiseConv2D",
            LayerSpec::BatchNormalization { .. } => "BatchNormalization",
            LayerSpec::Activation(_) => "ReLU",
            LayerSpec::ZeroPadding2D(_) => "ZeroPadding2D",
            LayerSpec::Add => "Add",
            LayerSpec::GlobalAveragePooling2D => "GlobalAveragePooling2D",
            LayerSpec::Dense { .. } => "Dense",
            LayerSpec::Dropout { .. } => "Dropout",
            LayerSpec::Softmax => "Softmax",
        }
    }
}

/// The Keras class and its configuration, on one line (`app activations --list`).
impl fmt::Display for LayerSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.keras_class();
        match self {
            LayerSpec::Conv2D {
                kernel,
                stride,
                padding,
                ..
            }
            | LayerSpec::DepthwiseConv2D {
                kernel,
                stride,
                padding,
            } => {
                let s = kernel.shape();
                let (kh, kw) = (s.first().unwrap_or(&0), s.get(1).unwrap_or(&0));
                write!(
                    f,
                    "{class} {kh}x{kw} stride {stride} padding {}",
                    padding_name(padding)
                )
            }
            LayerSpec::Activation(a) => write!(f, "{class} ({})", activation_name(*a)),
            LayerSpec::ZeroPadding2D(((t, b), (l, r))) => {
                write!(f, "{class} (({t}, {b}), ({l}, {r}))")
            }
            LayerSpec::Dense { bias, act, .. } => {
                write!(f, "{class} {} ({})", bias.len(), activation_name(*act))
            }
            LayerSpec::Dropout { rate } => write!(f, "{class} {rate}"),
            _ => f.write_str(class),
        }
    }
}

fn padding_name(p: &Padding) -> String {
    match p {
        Padding::Same => "same".into(),
        Padding::Valid => "valid".into(),
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => format!("(({top}, {bottom}), ({left}, {right}))"),
    }
}

fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Linear => "linear",
        Activation::Relu => "relu",
        Activation::Relu6 => "relu6",
    }
}
