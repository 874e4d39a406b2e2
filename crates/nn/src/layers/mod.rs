//! The layers MobileNetV2 and its classification head need, Keras names and defaults.

pub mod activation;
pub mod add;
pub mod batch_norm;
pub mod conv2d;
pub mod dense;
pub mod depthwise;
pub mod dropout;
pub mod pool;
pub mod softmax;
pub mod zero_padding;

pub use activation::ReLU;
pub use add::Add;
pub use batch_norm::BatchNormalization;
pub use conv2d::Conv2D;
pub use dense::Dense;
pub use depthwise::DepthwiseConv2D;
pub use dropout::Dropout;
pub use pool::GlobalAveragePooling2D;
pub use softmax::Softmax;
pub use zero_padding::ZeroPadding2D;

use crate::{Error, Result, Tensor};
use ndarray::{ArrayView2, ArrayView4, Ix2, Ix4};

pub(crate) fn view4<'a>(layer: &str, t: &'a Tensor) -> Result<ArrayView4<'a, f32>> {
    t.view().into_dimensionality::<Ix4>().map_err(|_| {
        Error::layer(
            layer,
            format!("expects a 4-D NHWC input, got shape {:?}", t.shape()),
        )
    })
}

pub(crate) fn view2<'a>(layer: &str, t: &'a Tensor) -> Result<ArrayView2<'a, f32>> {
    t.view().into_dimensionality::<Ix2>().map_err(|_| {
        Error::layer(
            layer,
            format!(
                "expects a 2-D [batch, features] input, got shape {:?}",
                t.shape()
            ),
        )
    })
}
