//! `Softmax` over the last axis of a `[N, classes]` input.

use super::view2;
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use tensor_core::softmax;

pub struct Softmax {
    name: String,
    y: Option<Tensor>,
}

impl Softmax {
    pub fn new(name: &str) -> Self {
        Softmax {
            name: name.to_string(),
            y: None,
        }
    }
}

impl Layer for Softmax {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let y = softmax::forward(view2(&self.name, one(&self.name, inputs)?)?)
            .into_dyn()
            .into_shared();
        self.y = ctx.record.then(|| y.clone());
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let y = cached(&self.name, &self.y)?;
        Ok(vec![need_dx
            .then(|| -> Result<Tensor> {
                Ok(
                    softmax::backward(view2(&self.name, y)?, view2(&self.name, dy)?)
                        .into_dyn()
                        .into_shared(),
                )
            })
            .transpose()?])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Softmax
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}
}
