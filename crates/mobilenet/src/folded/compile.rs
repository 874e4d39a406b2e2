//! The compiler: graph nodes in order, each layer read through its [`LayerSpec`], each run of
//! neighbours that [`Graph::fusion_at`] pairs folded into one [`Step`].

use super::{Op, Step};
use crate::{Error, Result};
use nn::{Fusion, Graph, LayerSpec, NodeId, Tensor};
use tensor_core::fold::{fold_batch_norm, BnView};
use tensor_core::Activation;

/// How a plan is compiled.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Fold each batch-norm into the convolution before it (else it stays an [`Op::Scale`]).
    pub fold_batch_norm: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fold_batch_norm: true,
        }
    }
}

/// Nodes `0..end` as folded steps, one per computation (a convolution with its padding,
/// batch-norm and activation), before inverted-residual blocks are fused: the plan the quantizer
/// and the ONNX export read, op by op. The outputs of `keep` are never fused away.
pub fn compile_steps(g: &Graph, end: NodeId, keep: &[NodeId], opts: Options) -> Result<Vec<Step>> {
    let end = end.min(g.len());
    let mut steps = Vec::new();
    let mut i = 0;
    while i < end {
        let mut op = op_of(g, i)?;
        let (mut cur, mut layer) = (i, i);
        while let Some(f) = g.fusion_at(cur, end, keep, opts.fold_batch_norm) {
            if !absorb(&mut op, f, &g.layer(cur + 1).describe())
                .map_err(|e| Error::Config(format!("{}: {e}", g.layer(cur + 1).name())))?
            {
                break;
            }
            cur += 1;
            if matches!(f, Fusion::Padding(_)) {
                layer = cur;
            }
        }
        let name = match cur > i {
            true => format!("{}..{}", g.layer(i).name(), g.layer(cur).name()),
            false => g.layer(i).name().to_string(),
        };
        steps.push(Step {
            name,
            layer,
            op,
            inputs: g.inputs(i).to_vec(),
            out: cur,
        });
        i = cur + 1;
    }
    Ok(steps)
}

/// Node `id`'s layer as an op of its own.
fn op_of(g: &Graph, id: NodeId) -> Result<Op> {
    from_spec(&g.layer(id).describe())
        .map_err(|e| Error::Config(format!("{}: {e}", g.layer(id).name())))
}

fn from_spec(spec: &LayerSpec) -> std::result::Result<Op, String> {
    Ok(match *spec {
        LayerSpec::Conv2D {
            kernel,
            bias,
            stride,
            padding,
        } => {
            let w = array4(kernel)?;
            let bias = match bias {
                Some(b) => values(b),
                None => vec![0.0; w.dim().3],
            };
            Op::Conv {
                w,
                bias,
                stride,
                padding,
                act: Activation::Linear,
                depthwise: false,
            }
        }
        LayerSpec::DepthwiseConv2D {
            kernel,
            stride,
            padding,
        } => {
            let w = array4(kernel)?;
            Op::Conv {
                bias: vec![0.0; w.dim().2],
                w,
                stride,
                padding,
                act: Activation::Linear,
                depthwise: true,
            }
        }
        LayerSpec::BatchNormalization { .. } => {
            let bn = bn_values(spec).ok_or("not a batch-norm")?;
            let (scale, shift) = bn.scale_shift();
            Op::Scale {
                scale,
                shift,
                act: Activation::Linear,
            }
        }
        LayerSpec::Activation(a) => Op::Act(a),
        LayerSpec::ZeroPadding2D(p) => Op::Pad(p),
        LayerSpec::Add => Op::Add,
        LayerSpec::GlobalAveragePooling2D => Op::Gap,
        LayerSpec::Dense { kernel, bias, act } => Op::Dense {
            w: kernel
                .view()
                .into_dimensionality()
                .map_err(|_| format!("kernel of shape {:?} is not 2-D", kernel.shape()))?
                .to_owned(),
            b: ndarray::Array1::from(values(bias)),
            act,
        },
        LayerSpec::Dropout { .. } => Op::Identity,
        LayerSpec::Softmax => {
            return Err("Softmax inside the graph is not compiled: the plan returns logits".into())
        }
    })
}

/// `op` takes over the work of the next layer (`next`), as the fusion rule paired them. Returns
/// false when `op` cannot (it already applies an activation).
fn absorb(op: &mut Op, f: Fusion, next: &LayerSpec) -> std::result::Result<bool, String> {
    match (f, &mut *op) {
        (Fusion::Padding(p), Op::Pad(_)) => {
            let mut conv = from_spec(next)?;
            let Op::Conv { padding, .. } = &mut conv else {
                return Ok(false);
            };
            *padding = p;
            *op = conv;
            Ok(true)
        }
        (
            Fusion::BatchNorm,
            Op::Conv {
                w,
                bias,
                depthwise,
                act: Activation::Linear,
                ..
            },
        ) => {
            let bn = bn_values(next).ok_or("not a batch-norm")?;
            let (folded, shift) =
                fold_batch_norm(w.view(), bn.view(), *depthwise).map_err(|e| e.to_string())?;
            let (scale, _) = bn.scale_shift();
            for ((b, s), sh) in bias.iter_mut().zip(&scale).zip(&shift) {
                *b = *b * s + sh;
            }
            *w = folded;
            Ok(true)
        }
        (
            Fusion::Activation(a),
            Op::Conv { act, .. } | Op::Scale { act, .. } | Op::Dense { act, .. },
        ) if *act == Activation::Linear => {
            *act = a;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A batch-norm's variables, copied out in logical order.
struct BnValues {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    variance: Vec<f32>,
    eps: f32,
}

impl BnValues {
    fn view(&self) -> BnView<'_> {
        BnView {
            gamma: &self.gamma,
            beta: &self.beta,
            moving_mean: &self.mean,
            moving_variance: &self.variance,
            eps: self.eps,
        }
    }

    fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        tensor_core::batch_norm::scale_shift(
            &self.gamma,
            &self.beta,
            &self.mean,
            &self.variance,
            self.eps,
        )
    }
}

fn bn_values(spec: &LayerSpec) -> Option<BnValues> {
    match *spec {
        LayerSpec::BatchNormalization {
            gamma,
            beta,
            moving_mean,
            moving_variance,
            eps,
        } => Some(BnValues {
            gamma: values(gamma),
            beta: values(beta),
            mean: values(moving_mean),
            variance: values(moving_variance),
            eps,
        }),
        _ => None,
    }
}

/// A variable's values in logical order, whatever its memory layout.
fn values(t: &Tensor) -> Vec<f32> {
    t.iter().copied().collect()
}

fn array4(t: &Tensor) -> std::result::Result<ndarray::Array4<f32>, String> {
    t.view()
        .into_dimensionality()
        .map(|a| a.to_owned())
        .map_err(|_| format!("kernel of shape {:?} is not 4-D", t.shape()))
}
