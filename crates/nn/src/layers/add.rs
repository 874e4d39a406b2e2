//! `Add`: the residual sum of two inputs.

use crate::spec::LayerSpec;
use crate::{Ctx, Error, Layer, Param, Result, Tensor};

pub struct Add {
    name: String,
}

impl Add {
    pub fn new(name: &str) -> Self {
        Add {
            name: name.to_string(),
        }
    }
}

impl Layer for Add {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], _ctx: Ctx) -> Result<Tensor> {
        match inputs {
            [a, b] => Ok(tensor_core::add::forward(a.view(), b.view())?.into_shared()),
            _ => Err(Error::layer(
                &self.name,
                format!("expects 2 inputs, got {}", inputs.len()),
            )),
        }
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            need_dx.then(|| dy.clone()),
            need_dx.then(|| dy.clone()),
        ])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Add
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}
}
