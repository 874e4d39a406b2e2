//! The layer abstraction: four methods, forward and backward side by side in each implementation.

use crate::fusion::Fusion;
use crate::spec::LayerSpec;
use crate::{Param, Result, Tensor};

/// Training or inference. Frozen batch-norms use moving statistics in both (Keras).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Infer,
}

/// What a forward call is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub mode: Mode,
    /// Keep what backward needs (false for layers below the lowest trainable one).
    pub record: bool,
}

impl Ctx {
    pub const INFER: Ctx = Ctx {
        mode: Mode::Infer,
        record: false,
    };
    pub fn train(record: bool) -> Self {
        Ctx {
            mode: Mode::Train,
            record,
        }
    }
}

pub trait Layer: Send {
    /// The Keras layer name (`block_3_expand`, `dense_1`).
    fn name(&self) -> &str;
    /// Computes the output; with `ctx.record` caches what `backward` needs.
    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor>;
    /// Given `dL/dy`, adds parameter gradients and returns `dL/dx` per input (`None` when `!need_dx`).
    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>>;
    /// Visits every variable (trainable, frozen and state) in Keras order.
    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param));

    /// What this layer computes, with its variables: what compilers read.
    fn describe(&self) -> LayerSpec<'_>;

    /// Asks the layer to take over a neighbour's work in its next forward (and in the backward of
    /// that forward), as [`fusion::rule`](crate::fusion::rule) paired them; `None` undoes it.
    /// Returns whether the layer can. The graph asks before a forward and undoes it right after.
    fn fuse(&mut self, f: Option<Fusion>) -> bool {
        f.is_none()
    }
}

/// The single input of a one-input layer, or an error naming the layer.
pub fn one<'a>(name: &str, inputs: &[&'a Tensor]) -> Result<&'a Tensor> {
    match inputs {
        [x] => Ok(x),
        _ => Err(crate::Error::layer(
            name,
            format!("expects 1 input, got {}", inputs.len()),
        )),
    }
}

/// The cached value, or an error saying backward ran without a recorded forward.
pub fn cached<'a, T>(name: &str, c: &'a Option<T>) -> Result<&'a T> {
    c.as_ref()
        .ok_or_else(|| crate::Error::layer(name, "backward called without a recorded forward"))
}
