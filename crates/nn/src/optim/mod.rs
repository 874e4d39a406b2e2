//! Optimizers (one trait, a params struct each) and learning-rate schedules.

pub mod adam;
pub mod schedule;
pub mod sgd;

pub use adam::{Adam, AdamParams};
pub use schedule::{Constant, Cosine, LrSchedule, StepDecay};
pub use sgd::{Sgd, SgdParams};

use crate::{Param, Result, Tensor};
use std::collections::HashMap;

/// An optimizer updates trainable parameters from their accumulated gradients.
///
/// Use: `opt.begin_step(); graph.visit_params(&mut |p| if p.trainable { opt.update(p) });`
pub trait Optimizer: Send {
    /// Advances the step counter (bias correction uses it).
    fn begin_step(&mut self);
    /// Updates one trainable parameter in place from its gradient.
    fn update(&mut self, p: &mut Param);
    fn lr(&self) -> f32;
    fn set_lr(&mut self, lr: f32);
    /// Steps taken so far.
    fn iterations(&self) -> u64;
    /// Named state tensors for a checkpoint (`optimizer/...`).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores what `state` saved.
    fn load_state(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()>;
}

/// Reads the iteration counter saved as `optimizer/iterations` (two f32 halves, exact to 2^48).
pub(crate) fn read_iterations(t: &HashMap<String, Tensor>) -> Result<u64> {
    let v = t
        .get("optimizer/iterations")
        .ok_or_else(|| crate::Error::Invalid("checkpoint has no optimizer/iterations".into()))?;
    match v.as_slice() {
        Some([hi, lo]) => Ok((*hi as u64) << 24 | *lo as u64),
        _ => Err(crate::Error::Invalid(format!(
            "optimizer/iterations has shape {:?}, expected [2]",
            v.shape()
        ))),
    }
}

pub(crate) fn iterations_tensor(t: u64) -> Tensor {
    Tensor::from_shape_vec(vec![2], vec![(t >> 24) as f32, (t & 0xFF_FFFF) as f32])
        .expect("2 values")
}

/// A state tensor `optimizer/<kind>/<name>` must have as many values as the variable `<name>`
/// beside it in the same checkpoint (a resumed run restores both), and as its sibling state.
pub(crate) fn check_state_len(
    t: &HashMap<String, Tensor>,
    key: &str,
    name: &str,
    len: usize,
) -> Result<()> {
    match t.get(name) {
        Some(p) if p.len() != len => Err(crate::Error::Invalid(format!(
            "{key} has {len} values but the variable {name} has {}: the optimizer state does not belong to these weights",
            p.len()
        ))),
        _ => Ok(()),
    }
}
