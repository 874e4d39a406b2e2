//! `Dense(units, activation)`: Glorot-uniform kernel `[in, out]`, zero bias (Keras's defaults).

use super::view2;
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{init, Ctx, Error, Layer, Param, Result, Tensor};
use ndarray::Array2;
use tensor_core::{activation, dense, Activation};

pub struct Dense {
    name: String,
    pub kernel: Param,
    pub bias: Param,
    /// `Linear` or `Relu`; a softmax output is applied by the loss (from logits) or a `Softmax` layer.
    pub act: Activation,
    cache: Option<(Tensor, Tensor)>,
}

impl Dense {
    /// A freshly initialised layer, reproducible from `seed`.
    pub fn new(name: &str, inputs: usize, units: usize, act: Activation, seed: u64) -> Self {
        let kernel = init::glorot_uniform(&[inputs, units], seed);
        Self::from_values(name, kernel, Tensor::zeros(vec![units]), act)
            .expect("shapes built together")
    }

    /// A layer from existing values: `kernel` `[in, out]`, `bias` `[out]`.
    pub fn from_values(name: &str, kernel: Tensor, bias: Tensor, act: Activation) -> Result<Self> {
        if kernel.ndim() != 2 || bias.shape() != [kernel.shape()[1]] {
            return Err(Error::layer(
                name,
                format!(
                    "kernel {:?} and bias {:?} do not fit",
                    kernel.shape(),
                    bias.shape()
                ),
            ));
        }
        Ok(Dense {
            kernel: Param::new(format!("{name}/kernel"), kernel, true),
            bias: Param::new(format!("{name}/bias"), bias, true),
            name: name.to_string(),
            act,
            cache: None,
        })
    }

    pub fn units(&self) -> usize {
        self.bias.value.len()
    }
}

impl Layer for Dense {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        let w = view2(&self.name, &self.kernel.value)?;
        let b = self
            .bias
            .value
            .view()
            .into_dimensionality()
            .map_err(|_| Error::layer(&self.name, "bias must be 1-D"))?;
        let mut y: Array2<f32> = dense::forward(view2(&self.name, x)?, w, b)?;
        self.act
            .apply_in_place(y.as_slice_mut().expect("contiguous"));
        let y = y.into_dyn().into_shared();
        self.cache = ctx.record.then(|| (x.clone(), y.clone()));
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (x, y) = cached(&self.name, &self.cache)?;
        let mut dz = Tensor::zeros(dy.raw_dim());
        activation::backward(
            self.act,
            y.as_slice().expect("contiguous"),
            dy.as_slice().expect("contiguous"),
            dz.as_slice_mut().expect("contiguous"),
        );
        let g = dense::backward(
            view2(&self.name, x)?,
            view2(&self.name, &self.kernel.value)?,
            view2(&self.name, &dz)?,
            need_dx,
        )?;
        if self.kernel.trainable {
            self.kernel.accumulate(g.dw.as_slice().expect("contiguous"));
        }
        if self.bias.trainable {
            self.bias.accumulate(g.db.as_slice().expect("contiguous"));
        }
        Ok(vec![g.dx.map(|d| d.into_dyn().into_shared())])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Dense {
            kernel: &self.kernel.value,
            bias: &self.bias.value,
            act: self.act,
        }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.kernel);
        f(&mut self.bias);
    }
}
