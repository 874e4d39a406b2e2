//! `Conv2D` without bias by default (MobileNetV2's convolutions), HWIO kernel.

use super::view4;
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use tensor_core::{conv, Activation, Padding};

pub struct Conv2D {
    name: String,
    pub kernel: Param,
    pub bias: Option<Param>,
    pub stride: usize,
    pub padding: Padding,
    x: Option<Tensor>,
}

impl Conv2D {
    /// `kernel` is HWIO `[kh, kw, cin, cout]`.
    pub fn new(
        name: &str,
        kernel: Tensor,
        bias: Option<Tensor>,
        stride: usize,
        padding: Padding,
    ) -> Self {
        Conv2D {
            kernel: Param::new(format!("{name}/kernel"), kernel, true),
            bias: bias.map(|b| Param::new(format!("{name}/bias"), b, true)),
            name: name.to_string(),
            stride,
            padding,
            x: None,
        }
    }
}

impl Layer for Conv2D {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        let w = view4(&self.name, &self.kernel.value)?;
        let bias = self.bias.as_ref().map(|b| b.slice());
        let y = conv::conv2d(
            view4(&self.name, x)?,
            w,
            bias,
            self.stride,
            self.padding,
            Activation::Linear,
        )?;
        self.x = ctx.record.then(|| x.clone());
        Ok(y.into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let x = cached(&self.name, &self.x)?;
        let (dx, dw) = conv::conv2d_backward(
            view4(&self.name, x)?,
            view4(&self.name, &self.kernel.value)?,
            view4(&self.name, dy)?,
            self.stride,
            self.padding,
            need_dx,
        )?;
        if self.kernel.trainable {
            self.kernel.accumulate(dw.as_slice().expect("contiguous"));
        }
        if let Some(b) = self.bias.as_mut().filter(|b| b.trainable) {
            let c = b.value.len();
            let mut db = vec![0.0; c];
            dy.as_slice()
                .expect("contiguous")
                .chunks_exact(c)
                .for_each(|r| db.iter_mut().zip(r).for_each(|(a, v)| *a += v));
            b.accumulate(&db);
        }
        Ok(vec![dx.map(|d| d.into_dyn().into_shared())])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Conv2D {
            kernel: &self.kernel.value,
            bias: self.bias.as_ref().map(|b| &b.value),
            stride: self.stride,
            padding: self.padding,
        }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.kernel);
        if let Some(b) = self.bias.as_mut() {
            f(b);
        }
    }
}
