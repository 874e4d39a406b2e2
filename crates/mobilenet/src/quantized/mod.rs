//! Post-training int8 inference: the folded plan with its 1x1 and depthwise convolutions and its
//! residual adds rewritten to integer kernels (`tensor_core::int8`), calibrated on real photos.
//!
//! - [`Calibrator`] runs the folded steps in f32 and records the range of every step's output.
//! - [`lower`] is the quantization pass: per-channel symmetric `i8` weights, per-tensor `u8`
//!   activations from the recorded min/max, `i32` biases; ops that stay in f32 (the first
//!   convolution on the image, pooling, the dense head) get dequantized inputs.
//! - [`file`] stores the result as one self-describing file.

mod buffers;
mod calibrate;
pub mod file;
mod lower;
mod run;

pub use calibrate::Calibrator;
pub use file::QuantizedInfo;

use crate::folded::Op;
use nn::NodeId;
use tensor_core::int8::add::AddParams;
use tensor_core::int8::{PackedWeights, QParams, Requant};
use tensor_core::Padding;

/// What a step computes.
pub(crate) enum QOp {
    /// A folded f32 op; quantized inputs are dequantized first.
    Float(Op),
    /// The image (f32) encoded as codes, for an integer op that reads it.
    Quantize,
    /// Any other convolution, through patches: `[kh * kw * cin, cout]` weights.
    Conv {
        w: PackedWeights,
        kh: usize,
        kw: usize,
        stride: usize,
        padding: Padding,
        bias: Vec<i32>,
        rq: Requant,
    },
    /// 1x1 convolution, stride 1: `[k, n]` weights.
    Pointwise {
        w: PackedWeights,
        bias: Vec<i32>,
        rq: Requant,
    },
    /// Depthwise convolution: `[kh, kw, C]` weights.
    Depthwise {
        w: Vec<i8>,
        kh: usize,
        kw: usize,
        stride: usize,
        padding: Padding,
        bias: Vec<i32>,
        rq: Requant,
    },
    /// Residual sum of two quantized tensors.
    Add(AddParams),
}

pub(crate) struct QStep {
    pub name: String,
    pub op: QOp,
    pub inputs: Vec<NodeId>,
    pub out: NodeId,
    /// The output's encoding when it is kept as `u8` codes (always for integer ops; for an f32 op
    /// when an integer op reads it).
    pub out_q: Option<QParams>,
}

/// The node id of the image's codes (the image itself is `nn::graph::INPUT`).
pub(crate) const INPUT_CODES: NodeId = nn::graph::INPUT - 1;

/// How activation ranges were calibrated, for the file and the user.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Calibration {
    /// `min-max`: the observed extremes of each tensor over all calibration images.
    pub method: String,
    pub images: usize,
}

/// A whole network (base + top or head) in int8, producing logits.
pub struct QuantizedPlan {
    pub(crate) steps: Vec<QStep>,
    /// The node whose output is the logits.
    pub(crate) out: NodeId,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    pub calibration: Calibration,
}

impl QuantizedPlan {
    /// Steps that run on integer kernels, and all steps.
    pub fn integer_steps(&self) -> (usize, usize) {
        let int = self
            .steps
            .iter()
            .filter(|s| !matches!(s.op, QOp::Float(_)))
            .count();
        (int, self.steps.len())
    }
}
