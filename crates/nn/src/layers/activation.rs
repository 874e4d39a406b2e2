//! `ReLU` and `ReLU(max_value=6)`; backward masks with the saved output.

use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use tensor_core::{activation, Activation};

pub struct ReLU {
    name: String,
    pub act: Activation,
    y: Option<Tensor>,
}

impl ReLU {
    pub fn new(name: &str) -> Self {
        ReLU {
            name: name.to_string(),
            act: Activation::Relu,
            y: None,
        }
    }
    pub fn relu6(name: &str) -> Self {
        ReLU {
            name: name.to_string(),
            act: Activation::Relu6,
            y: None,
        }
    }
}

impl Layer for ReLU {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        let y = activation::forward_new(self.act, x.as_slice().expect("contiguous"));
        let y = Tensor::from_shape_vec(x.raw_dim(), y).expect("same length");
        self.y = ctx.record.then(|| y.clone());
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let y = cached(&self.name, &self.y)?;
        Ok(vec![need_dx.then(|| {
            let dx = activation::backward_new(
                self.act,
                y.as_slice().expect("contiguous"),
                dy.as_slice().expect("contiguous"),
            );
            Tensor::from_shape_vec(y.raw_dim(), dx).expect("same length")
        })])
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Activation(self.act)
    }
}
