//! `GlobalAveragePooling2D`: `[N, H, W, C] -> [N, C]`.

use super::{view2, view4};
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use tensor_core::pool;

pub struct GlobalAveragePooling2D {
    name: String,
    hw: Option<(usize, usize)>,
}

impl GlobalAveragePooling2D {
    pub fn new(name: &str) -> Self {
        GlobalAveragePooling2D {
            name: name.to_string(),
            hw: None,
        }
    }
}

impl Layer for GlobalAveragePooling2D {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], _ctx: Ctx) -> Result<Tensor> {
        let x = view4(&self.name, one(&self.name, inputs)?)?;
        self.hw = Some((x.dim().1, x.dim().2));
        Ok(pool::global_avg_pool(x).into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (h, w) = *cached(&self.name, &self.hw)?;
        if !need_dx {
            return Ok(vec![None]);
        }
        Ok(vec![Some(
            pool::global_avg_pool_backward(view2(&self.name, dy)?, h, w)?
                .into_dyn()
                .into_shared(),
        )])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::GlobalAveragePooling2D
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}
}
