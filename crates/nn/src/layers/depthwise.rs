//! `DepthwiseConv2D` (depth multiplier 1, no bias), kernel `[kh, kw, C, 1]`.

use super::view4;
use crate::fusion::Fusion;
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use tensor_core::{conv, Activation, Padding};

pub struct DepthwiseConv2D {
    name: String,
    pub kernel: Param,
    pub stride: usize,
    pub padding: Padding,
    /// The padding of a `ZeroPadding2D` before this layer, when the graph fuses it in.
    fused_pad: Option<Padding>,
    /// The input and the padding the recorded forward used.
    x: Option<(Tensor, Padding)>,
}

impl DepthwiseConv2D {
    pub fn new(name: &str, kernel: Tensor, stride: usize, padding: Padding) -> Self {
        DepthwiseConv2D {
            kernel: Param::new(format!("{name}/depthwise_kernel"), kernel, true),
            name: name.to_string(),
            stride,
            padding,
            fused_pad: None,
            x: None,
        }
    }
}

impl Layer for DepthwiseConv2D {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        let w = view4(&self.name, &self.kernel.value)?;
        let padding = self.fused_pad.unwrap_or(self.padding);
        let y = conv::depthwise_conv2d(
            view4(&self.name, x)?,
            w,
            None,
            self.stride,
            padding,
            Activation::Linear,
        )?;
        self.x = ctx.record.then(|| (x.clone(), padding));
        Ok(y.into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (x, padding) = cached(&self.name, &self.x)?;
        let (dx, dw) = conv::depthwise_conv2d_backward(
            view4(&self.name, x)?,
            view4(&self.name, &self.kernel.value)?,
            view4(&self.name, dy)?,
            self.stride,
            *padding,
            need_dx,
        )?;
        if self.kernel.trainable {
            self.kernel.accumulate(dw.as_slice().expect("contiguous"));
        }
        Ok(vec![dx.map(|d| d.into_dyn().into_shared())])
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.kernel);
    }

    /// Takes over a `ZeroPadding2D` before it when its own padding is `valid`: padding on the fly
    /// reads the unpadded input, and no padded copy (nor its cropped gradient) is ever written.
    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::DepthwiseConv2D {
            kernel: &self.kernel.value,
            stride: self.stride,
            padding: self.padding,
        }
    }

    fn fuse(&mut self, f: Option<Fusion>) -> bool {
        match f {
            None => self.fused_pad = None,
            Some(Fusion::Padding(p)) if self.padding == Padding::Valid => self.fused_pad = Some(p),
            Some(_) => return false,
        }
        true
    }
}
