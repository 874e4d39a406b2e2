//! The frozen part of a network compiled for inference: every batch-norm folded into the convolution
//! before it, the ReLU6 after it fused into the same pass, `ZeroPadding2D` + `valid` depthwise turned
//! into one padded depthwise. Equal to the plain graph within float rounding (tested).

use crate::model::Kind;
use crate::{Error, Result};
use nn::graph::INPUT;
use nn::{Graph, NodeId, Tensor};
use std::collections::HashMap;
use tensor_core::fold::{fold_batch_norm, BnView};
use tensor_core::{conv, Activation, Padding};

/// Images per pass of [`FoldedPlan::run`].
pub const MICRO_BATCH: usize = 4;

/// MobileNetV2 builds every batch-norm with Keras's epsilon (the model uses `BnConfig::default()`).
const BN_EPS: f32 = 1e-3;

pub(crate) enum Op {
    Conv {
        w: ndarray::Array4<f32>,
        bias: Vec<f32>,
        stride: usize,
        padding: Padding,
        act: Activation,
        depthwise: bool,
    },
    Scale {
        scale: Vec<f32>,
        shift: Vec<f32>,
        act: Activation,
    },
    Act(Activation),
    Pad(((usize, usize), (usize, usize))),
    Add,
    Gap,
    Dense {
        w: ndarray::Array2<f32>,
        b: ndarray::Array1<f32>,
        act: Activation,
    },
    Identity,
    /// expand 1x1 -> depthwise -> project 1x1 [+ input], in row tiles ([`Block`]).
    Block(Box<Block>),
}

/// A 1x1 convolution's folded weights `[cin, cout]`, bias and activation.
pub(crate) struct Pw {
    pub w: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Activation,
}

/// An inverted-residual block compiled from its folded steps.
pub(crate) struct Block {
    expand: Option<Pw>,
    dw: Pw,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: Padding,
    project: Pw,
    residual: bool,
}

pub(crate) struct Step {
    /// The graph nodes it covers, for `--profile`: `first` or `first..last`.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub out: NodeId,
}

/// A compiled inference program for graph nodes `0..end`.
pub struct FoldedPlan {
    steps: Vec<Step>,
    keep: Vec<NodeId>,
}

/// The variables of one node by short name (`kernel`, `gamma`, ...).
fn values(g: &mut Graph, id: NodeId) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    g.layer_mut(id).visit_params(&mut |p| {
        let short = p.name.rsplit('/').next().unwrap_or(&p.name).to_string();
        out.insert(short, p.value.clone());
    });
    out
}

fn slice(t: &Tensor) -> &[f32] {
    t.as_slice().expect("parameters are contiguous")
}

fn to4(t: Tensor) -> Result<ndarray::Array4<f32>> {
    t.into_dimensionality()
        .map(|a| a.into_owned())
        .map_err(|e| Error::Config(format!("expected a 4-D kernel: {e}")))
}

impl FoldedPlan {
    /// Compiles nodes `0..end`; the outputs of `keep` are returned by [`run`](Self::run).
    pub fn compile(g: &mut Graph, kinds: &[Kind], end: NodeId, keep: &[NodeId]) -> Result<Self> {
        let steps = fuse_blocks(fold_steps(g, kinds, end, keep)?, keep);
        Ok(FoldedPlan {
            steps,
            keep: keep.to_vec(),
        })
    }
}

/// Nodes `0..end` as folded steps, one per convolution (with its batch-norm and activation), before
/// inverted-residual blocks are fused: the plan the quantizer rewrites, op by op.
pub(crate) fn fold_steps(
    g: &mut Graph,
    kinds: &[Kind],
    end: NodeId,
    keep: &[NodeId],
) -> Result<Vec<Step>> {
    let mut consumers = vec![0usize; g.len()];
    for i in 0..g.len() {
        for &j in g.inputs(i) {
            if j != INPUT {
                consumers[j] += 1;
            }
        }
    }
    // Node `next` can be absorbed into the op ending at `cur`.
    let absorbable = |g: &Graph, cur: NodeId, next: NodeId| {
        next < end && g.inputs(next) == [cur] && consumers[cur] == 1 && !keep.contains(&cur)
    };
    let mut steps = Vec::new();
    let mut i = 0;
    while i < end {
        let inputs = g.inputs(i).to_vec();
        let mut cur = i;
        let op = match kinds[i] {
            Kind::Pad(p) => match kinds.get(i + 1) {
                Some(Kind::Depthwise {
                    stride,
                    padding: Padding::Valid,
                }) if absorbable(g, i, i + 1) => {
                    cur = i + 1;
                    let v = values(g, cur);
                    let c = v["depthwise_kernel"].shape()[2];
                    let padding = Padding::Explicit {
                        top: p.0 .0,
                        bottom: p.0 .1,
                        left: p.1 .0,
                        right: p.1 .1,
                    };
                    Op::Conv {
                        w: to4(v["depthwise_kernel"].clone())?,
                        bias: vec![0.0; c],
                        stride: *stride,
                        padding,
                        act: Activation::Linear,
                        depthwise: true,
                    }
                }
                _ => Op::Pad(p),
            },
            Kind::Conv { stride, padding } => {
                let v = values(g, i);
                let c = *v["kernel"].shape().last().unwrap_or(&0);
                let bias = v
                    .get("bias")
                    .map(|b| slice(b).to_vec())
                    .unwrap_or(vec![0.0; c]);
                Op::Conv {
                    w: to4(v["kernel"].clone())?,
                    bias,
                    stride,
                    padding,
                    act: Activation::Linear,
                    depthwise: false,
                }
            }
            Kind::Depthwise { stride, padding } => {
                let v = values(g, i);
                let c = v["depthwise_kernel"].shape()[2];
                Op::Conv {
                    w: to4(v["depthwise_kernel"].clone())?,
                    bias: vec![0.0; c],
                    stride,
                    padding,
                    act: Activation::Linear,
                    depthwise: true,
                }
            }
            Kind::BatchNorm => {
                let v = values(g, i);
                let (scale, shift) = tensor_core::batch_norm::scale_shift(
                    slice(&v["gamma"]),
                    slice(&v["beta"]),
                    slice(&v["moving_mean"]),
                    slice(&v["moving_variance"]),
                    BN_EPS,
                );
                Op::Scale {
                    scale,
                    shift,
                    act: Activation::Linear,
                }
            }
            Kind::Relu(a) => Op::Act(a),
            Kind::Add => Op::Add,
            Kind::GlobalPool => Op::Gap,
            Kind::Dense(act) => {
                let v = values(g, i);
                let w = v["kernel"]
                    .clone()
                    .into_dimensionality()
                    .map_err(|e| Error::Config(e.to_string()))?
                    .into_owned();
                let b = v["bias"]
                    .clone()
                    .into_dimensionality()
                    .map_err(|e| Error::Config(e.to_string()))?
                    .into_owned();
                Op::Dense { w, b, act }
            }
            Kind::Dropout => Op::Identity,
        };
        let mut op = op;
        // Fold a following batch-norm into a convolution, then fuse a following activation.
        if let Op::Conv {
            w, bias, depthwise, ..
        } = &mut op
        {
            if kinds.get(cur + 1) == Some(&Kind::BatchNorm) && absorbable(g, cur, cur + 1) {
                cur += 1;
                let v = values(g, cur);
                let bn = BnView {
                    gamma: slice(&v["gamma"]),
                    beta: slice(&v["beta"]),
                    moving_mean: slice(&v["moving_mean"]),
                    moving_variance: slice(&v["moving_variance"]),
                    eps: BN_EPS,
                };
                let (wf, shift) = fold_batch_norm(w.view(), bn, *depthwise)?;
                let (scale, _) = tensor_core::batch_norm::scale_shift(
                    bn.gamma,
                    bn.beta,
                    bn.moving_mean,
                    bn.moving_variance,
                    bn.eps,
                );
                for ((b, s), sh) in bias.iter_mut().zip(&scale).zip(&shift) {
                    *b = *b * s + sh;
                }
                *w = wf;
            }
        }
        if let Some(Kind::Relu(a)) = kinds.get(cur + 1) {
            if absorbable(g, cur, cur + 1) {
                let fused = match &mut op {
                    Op::Conv { act, .. } | Op::Scale { act, .. } | Op::Dense { act, .. }
                        if *act == Activation::Linear =>
                    {
                        Some(act)
                    }
                    _ => None,
                };
                if let Some(act) = fused {
                    *act = *a;
                    cur += 1;
                }
            }
        }
        let name = match cur > i {
            true => format!("{}..{}", g.layer(i).name(), g.layer(cur).name()),
            false => g.layer(i).name().to_string(),
        };
        steps.push(Step {
            name,
            op,
            inputs,
            out: cur,
        });
        i = cur + 1;
    }
    Ok(steps)
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
        let last_use = last_uses(self.steps.iter().map(|s| s.inputs.as_slice()));
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

/// For each node, the index of the last step (of those whose inputs are given in order) that reads
/// it: after that step its value can be dropped.
pub(crate) fn last_uses<'a>(inputs: impl Iterator<Item = &'a [NodeId]>) -> HashMap<NodeId, usize> {
    let mut last = HashMap::new();
    for (s, ins) in inputs.enumerate() {
        for &j in ins {
            last.insert(j, s);
        }
    }
    last
}

/// `f` run on a thread of the pool (`rayon::scope` runs its body there), for a batch too small to
/// split into micro-batches: each layer's parallel loop then splits among the pool's threads
/// directly, instead of being handed to the pool and waited for by the caller (two thread switches
/// a layer; 1.15x at batch 1, `e2e infer --batch 1`).
pub(crate) fn on_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    rayon::scope(|_| f())
}

/// `f` on consecutive slices of `size` images of `x`, side by side on the thread pool, results in
/// order.
pub(crate) fn in_micro_batches<T: Send>(
    x: &Tensor,
    size: usize,
    f: impl Fn(&Tensor) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let n = x.shape().first().copied().unwrap_or(0);
    (0..n)
        .step_by(size.max(1))
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let end = (start + size).min(n);
            f(&x.slice_axis(ndarray::Axis(0), (start..end).into())
                .to_shared())
        })
        .collect()
}

/// The parts of a folded convolution step, when it is a 1x1 stride-1 unpadded one.
pub(crate) fn as_pointwise(op: &Op) -> Option<Pw> {
    match op {
        Op::Conv {
            w,
            bias,
            stride: 1,
            padding,
            act,
            depthwise: false,
        } if w.dim().0 == 1 && w.dim().1 == 1 && no_padding(*padding) => Some(Pw {
            w: w.iter().copied().collect(),
            bias: bias.clone(),
            act: *act,
        }),
        _ => None,
    }
}

fn no_padding(p: Padding) -> bool {
    match p {
        Padding::Valid | Padding::Same => true, // 1x1 stride 1: `same` pads nothing
        Padding::Explicit {
            top,
            bottom,
            left,
            right,
        } => top + bottom + left + right == 0,
    }
}

/// Replaces each `[expand 1x1 ->] depthwise -> project 1x1 [-> add input]` run of steps whose
/// intermediate outputs nothing else reads by one tiled [`Block`] step.
fn fuse_blocks(steps: Vec<Step>, keep: &[NodeId]) -> Vec<Step> {
    let mut readers: HashMap<NodeId, usize> = HashMap::new();
    for s in &steps {
        for &j in &s.inputs {
            *readers.entry(j).or_default() += 1;
        }
    }
    // Only `next` reads `s`'s output.
    let private = |s: &Step, next: &Step| {
        next.inputs == [s.out] && readers.get(&s.out) == Some(&1) && !keep.contains(&s.out)
    };
    let mut out: Vec<Option<Step>> = steps.into_iter().map(Some).collect();
    let mut fused = Vec::new();
    let mut i = 0;
    while i < out.len() {
        let at = |k: usize| out.get(k).and_then(|s| s.as_ref());
        let is_dw = |k: usize| {
            matches!(
                at(k).map(|s| &s.op),
                Some(Op::Conv {
                    depthwise: true,
                    ..
                })
            )
        };
        let expand = at(i).and_then(|s| as_pointwise(&s.op));
        let j = match (&expand, is_dw(i + 1)) {
            (Some(_), true) if private(at(i).expect("exists"), at(i + 1).expect("exists")) => i + 1,
            _ if is_dw(i) => i,
            _ => {
                fused.push(out[i].take().expect("each step moved once"));
                i += 1;
                continue;
            }
        };
        let expand = if j > i { expand } else { None };
        let (Some(dw_step), Some(pj_step)) = (at(j), at(j + 1)) else {
            fused.push(out[i].take().expect("each step moved once"));
            i += 1;
            continue;
        };
        let project = as_pointwise(&pj_step.op);
        if project.is_none() || !private(dw_step, pj_step) {
            fused.push(out[i].take().expect("each step moved once"));
            i += 1;
            continue;
        }
        let u = at(i).expect("exists").inputs[0];
        let residual = match at(j + 2) {
            Some(a) => {
                matches!(a.op, Op::Add)
                    && a.inputs.len() == 2
                    && a.inputs.contains(&u)
                    && a.inputs.contains(&pj_step.out)
                    && readers.get(&pj_step.out) == Some(&1)
                    && !keep.contains(&pj_step.out)
            }
            None => false,
        };
        let Op::Conv {
            w,
            bias,
            stride,
            padding,
            act,
            ..
        } = &dw_step.op
        else {
            unreachable!("checked to be a depthwise convolution")
        };
        let block = Block {
            expand,
            dw: Pw {
                w: w.iter().copied().collect(),
                bias: bias.clone(),
                act: *act,
            },
            kh: w.dim().0,
            kw: w.dim().1,
            stride: *stride,
            padding: *padding,
            project: project.expect("checked above"),
            residual,
        };
        let end = if residual { j + 2 } else { j + 1 };
        let first = &at(i).expect("exists").name;
        let last = &at(end).expect("exists").name;
        let name = format!(
            "{} .. {}",
            first.split("..").next().unwrap_or(first),
            last.rsplit("..").next().unwrap_or(last)
        );
        let out_id = at(end).expect("exists").out;
        fused.push(Step {
            name,
            op: Op::Block(Box::new(block)),
            inputs: vec![u],
            out: out_id,
        });
        for k in i..=end {
            out[k] = None;
        }
        i = end + 1;
    }
    fused
}

fn v4(t: &Tensor) -> Result<ndarray::ArrayView4<'_, f32>> {
    t.view()
        .into_dimensionality()
        .map_err(|_| Error::Config(format!("expected a 4-D tensor, got {:?}", t.shape())))
}

pub(crate) fn exec(op: &Op, ins: &[&Tensor]) -> Result<Tensor> {
    let x = ins[0];
    Ok(match op {
        Op::Conv {
            w,
            bias,
            stride,
            padding,
            act,
            depthwise,
        } => {
            let f = if *depthwise {
                conv::depthwise_conv2d
            } else {
                conv::conv2d
            };
            f(v4(x)?, w.view(), Some(bias), *stride, *padding, *act)?
                .into_dyn()
                .into_shared()
        }
        Op::Scale { scale, shift, act } => {
            let mut y = Tensor::zeros(x.raw_dim());
            tensor_core::batch_norm::inference_forward(
                slice(x),
                scale,
                shift,
                *act,
                y.as_slice_mut().expect("contiguous"),
            )?;
            y
        }
        Op::Act(a) => {
            let mut y = x.clone();
            a.apply_in_place(y.as_slice_mut().expect("contiguous"));
            y
        }
        Op::Pad(((t, b), (l, r))) => {
            let v = v4(x)?;
            let (n, h, w, c) = v.dim();
            let mut y = ndarray::Array4::zeros((n, h + t + b, w + l + r, c));
            y.slice_mut(ndarray::s![.., *t..t + h, *l..l + w, ..])
                .assign(&v);
            y.into_dyn().into_shared()
        }
        Op::Add => tensor_core::add::forward(ins[0].view(), ins[1].view())?.into_shared(),
        Op::Gap => tensor_core::pool::global_avg_pool(v4(x)?)
            .into_dyn()
            .into_shared(),
        Op::Dense { w, b, act } => {
            let x2 = x
                .view()
                .into_dimensionality()
                .map_err(|_| Error::Config("dense expects 2-D".into()))?;
            let mut y = tensor_core::dense::forward(x2, w.view(), b.view())?;
            act.apply_in_place(y.as_slice_mut().expect("contiguous"));
            y.into_dyn().into_shared()
        }
        Op::Identity => x.clone(),
        Op::Block(b) => {
            use tensor_core::inverted_residual::{forward, Depthwise, Pointwise};
            fn pw(p: &Pw) -> Pointwise<'_> {
                Pointwise {
                    w: &p.w,
                    bias: &p.bias,
                    act: p.act,
                }
            }
            let dw = Depthwise {
                w: &b.dw.w,
                kh: b.kh,
                kw: b.kw,
                bias: &b.dw.bias,
                act: b.dw.act,
                stride: b.stride,
                padding: b.padding,
            };
            forward(
                v4(x)?,
                b.expand.as_ref().map(pw),
                dw,
                pw(&b.project),
                b.residual,
            )?
            .into_dyn()
            .into_shared()
        }
    })
}
