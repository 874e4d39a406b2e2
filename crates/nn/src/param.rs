//! A named parameter (or non-trainable variable such as a moving statistic) with its gradient.

use crate::Tensor;

#[derive(Clone, Debug)]
pub struct Param {
    /// Keras-style hierarchical name, `layer/variable` (e.g. `block_3_expand_BN/gamma`).
    pub name: String,
    pub value: Tensor,
    /// Accumulated gradient (same shape as `value`); zero until a backward pass adds to it.
    pub grad: Tensor,
    /// Receives gradients and optimizer updates. Moving statistics are never trainable.
    pub trainable: bool,
    /// Updated by the forward pass itself (batch-norm moving statistics), not by an optimizer.
    pub is_state: bool,
}

impl Param {
    pub fn new(name: impl Into<String>, value: Tensor, trainable: bool) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Param {
            name: name.into(),
            value,
            grad,
            trainable,
            is_state: false,
        }
    }

    /// A variable the forward pass updates (moving mean/variance).
    pub fn state(name: impl Into<String>, value: Tensor) -> Self {
        Param {
            is_state: true,
            ..Param::new(name, value, false)
        }
    }

    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    /// Adds `g` into the gradient.
    pub fn accumulate(&mut self, g: &[f32]) {
        let dst = self
            .grad
            .as_slice_mut()
            .expect("parameter gradients are contiguous");
        dst.iter_mut().zip(g).for_each(|(d, g)| *d += g);
    }

    pub fn slice(&self) -> &[f32] {
        self.value.as_slice().expect("parameters are contiguous")
    }
}
