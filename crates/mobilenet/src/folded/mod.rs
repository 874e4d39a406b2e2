//! Inference plans compiled from an `nn` graph: every batch-norm folded into the convolution before
//! it, the activation after it fused into the same pass, `ZeroPadding2D` + a `valid` convolution
//! turned into one padded convolution (all by [`nn::fusion::rule`], read through each layer's typed
//! [`LayerSpec`](nn::LayerSpec)), then inverted-residual blocks fused into tiled steps. The same
//! steps feed the quantizer ([`crate::quantized`]) and the ONNX export. Equal to the plain graph
//! within float rounding (tested).

mod blocks;
mod compile;
mod exec;
mod pool;

pub use compile::{compile_steps, Options};
pub(crate) use exec::exec;
pub(crate) use pool::{in_micro_batches, on_pool};

use crate::{Error, Result};
pub(crate) use blocks::as_pointwise;
pub(crate) use nn::graph::last_uses;

use nn::graph::INPUT;
use nn::{Graph, NodeId, Tensor};
use std::collections::HashMap;
use tensor_core::aligned::Aligned;
use tensor_core::panels::PackedB;
use tensor_core::{Activation, Padding};

/// Images per pass of [`FoldedPlan::run`].
pub const MICRO_BATCH: usize = 4;

/// One computation of a plan, with its folded f32 parameters.
#[derive(Clone, Debug)]
pub enum Op {
    /// A convolution (depthwise: kernel `[kh, kw, c, 1]`), its batch-norm folded in, then `act`.
    Conv {
        w: ndarray::Array4<f32>,
        bias: Vec<f32>,
        stride: usize,
        padding: Padding,
        act: Activation,
        depthwise: bool,
    },
    /// A batch-norm not folded into a convolution: `x * scale + shift`, then `act`.
    Scale {
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Activation,
    },
    Act(Activation),
    Pad(nn::spec::Pad2),
    Add,
    Gap,
    Dense {
        w: ndarray::Array2<f32>,
        b: ndarray::Array1<f32>,
        act: Activation,
    },
    /// Dropout at inference.
    Identity,
    /// expand 1x1 -> depthwise -> project 1x1 [+ input], in row tiles ([`Block`]).
    Block(Box<Block>),
    /// A 1x1 convolution or dense layer outside the blocks, its weights packed in panels: over
    /// the rows of its input's last axis.
    Packed(Box<PackedPw>),
}

/// A 1x1 convolution's folded weights `[cin, cout]` (row-major), bias and activation; or a
/// depthwise convolution's `[kh, kw, C]`, on a cache line (its kernel reads 64-byte vectors).
#[derive(Clone, Debug)]
pub struct Pw {
    pub w: Aligned<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// A 1x1 convolution of a block: its weights packed in panels ([`tensor_core::panels`]).
#[derive(Clone, Debug)]
pub struct PackedPw {
    pub w: PackedB,
    pub bias: Vec<f32>,
    pub act: Activation,
}

impl PackedPw {
    /// `p` with its `[cin, cout]` weights packed; `None` if they are not `cin x cout`.
    fn new(p: Pw) -> Option<PackedPw> {
        let cout = p.bias.len();
        let cin = p.w.len() / cout.max(1);
        Some(PackedPw {
            w: PackedB::pack(&p.w, cin, cout).ok()?,
            bias: p.bias,
            act: p.act,
        })
    }
}

/// An inverted-residual block compiled from its folded steps.
#[derive(Clone, Debug)]
pub struct Block {
    expand: Option<PackedPw>,
    dw: Pw,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: Padding,
    project: PackedPw,
    residual: bool,
}

/// One step of a plan: graph nodes `first..=out` computed as one.
#[derive(Clone, Debug)]
pub struct Step {
    /// The graph nodes it covers, for `--profile`: `first` or `first..last`.
    pub name: String,
    /// The node whose Keras name the step's computation goes by (the convolution of a padding +
    /// convolution step, else the first node).
    pub layer: NodeId,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub out: NodeId,
}

/// A compiled inference program for graph nodes `0..end`.
pub struct FoldedPlan {
    steps: Vec<Step>,
    keep: Vec<NodeId>,
}

impl FoldedPlan {
    /// Compiles nodes `0..end` (batch-norms folded, blocks fused); the outputs of `keep` are
    /// returned by [`run`](Self::run).
    pub fn compile(g: &Graph, end: NodeId, keep: &[NodeId]) -> Result<Self> {
        let steps = compile_steps(g, end, keep, Options::default())?;
        Ok(FoldedPlan {
            steps: blocks::pack_products(blocks::fuse_blocks(steps, keep)),
            keep: keep.to_vec(),
        })
    }
}

impl FoldedPlan {
    /// Runs the plan on `x`, returning the outputs of the kept nodes. The batch is processed in
    /// micro-batches of [`MICRO_BATCH`] images: intermediate tensors stay small enough for the
    /// allocator to reuse (no fresh zero pages per layer) and closer to the caches.
    pub fn run(&self, x: &Tensor) -> Result<HashMap<NodeId, Tensor>> {
        let n = x.shape().first().copied().unwrap_or(0);
        if n <= MICRO_BATCH {
            return on_pool(|| self.run_batch(x));
        }
        // Micro-batches run side by side (each op is parallel inside too): both cores stay busy
        // through the serial stretches of a layer.
        let outs = in_micro_batches(x, MICRO_BATCH, |chunk| self.run_batch(chunk))?;
        let mut parts: HashMap<NodeId, Vec<Tensor>> = HashMap::new();
        for out in outs {
            for (k, v) in out {
                parts.entry(k).or_default().push(v);
            }
        }
        parts
            .into_iter()
            .map(|(k, v)| {
                let views: Vec<_> = v.iter().map(|t| t.view()).collect();
                let joined = ndarray::concatenate(ndarray::Axis(0), &views)
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok((k, joined.into_shared()))
            })
            .collect()
    }

    fn run_batch(&self, x: &Tensor) -> Result<HashMap<NodeId, Tensor>> {
        let last_use = last_uses(self.steps.iter().map(|s| s.inputs.as_slice()).enumerate());
        let mut live: HashMap<NodeId, Tensor> = HashMap::new();
        let mut kept = HashMap::new();
        for (s, step) in self.steps.iter().enumerate() {
            let get = |j: NodeId| -> Result<&Tensor> {
                if j == INPUT {
                    Ok(x)
                } else {
                    live.get(&j)
                        .ok_or_else(|| Error::Config(format!("folded plan: node {j} not computed")))
                }
            };
            let ins: Vec<&Tensor> = step.inputs.iter().map(|&j| get(j)).collect::<Result<_>>()?;
            let t = nn::profile::start();
            let y = exec(&step.op, &ins)?;
            nn::profile::record(t, &step.name, nn::profile::Phase::Forward);
            for &j in &step.inputs {
                if last_use.get(&j) == Some(&s) && !self.keep.contains(&j) {
                    live.remove(&j);
                }
            }
            if self.keep.contains(&step.out) {
                kept.insert(step.out, y.clone());
            }
            live.insert(step.out, y);
        }
        Ok(kept)
    }

    /// Number of compiled steps (fewer than nodes: that is the folding).
    pub fn len(&self) -> usize {
        self.steps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}
