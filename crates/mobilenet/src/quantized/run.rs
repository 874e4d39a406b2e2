//! Running a quantized plan: values are f32 tensors or `u8` codes with their encoding, converted
//! only where an op of the other kind reads them.

use super::buffers::{buffer, recycle, CodeBuf};
use super::{QOp, QStep, QuantizedPlan};
use crate::folded::{exec, in_micro_batches, last_uses, on_pool};
use crate::{Error, Result};
use nn::graph::INPUT;
use nn::{NodeId, Tensor};
use std::collections::HashMap;
use tensor_core::conv::ConvGeom;
use tensor_core::int8::{self, Isa, QParams};

/// Images per pass; passes run side by side, as in the f32 plan. With AMX the 1x1 convolutions
/// take 32-row panels and a call's fixed costs (tile configuration, packing the bias) weigh more,
/// so passes are larger there (`e2e infer --int8`, batch 32, on a Xeon with AMX: 4 images 1.06x
/// 2 images, 8 images 0.94x 4); elsewhere 2, the size chosen on a Zen 5 with VNNI alone.
fn micro_batch(isa: Isa) -> usize {
    match isa {
        Isa::Amx => 4,
        _ => 2,
    }
}

/// `[N, H, W, C]` codes.
pub(crate) struct Codes {
    pub data: CodeBuf,
    pub shape: [usize; 4],
    pub q: QParams,
}

pub(crate) enum Value {
    F(Tensor),
    Q(Codes),
}

impl Value {
    fn codes(&self, step: &str) -> Result<&Codes> {
        match self {
            Value::Q(c) => Ok(c),
            Value::F(_) => Err(Error::Config(format!(
                "int8 plan: {step} reads an f32 tensor where it needs codes"
            ))),
        }
    }

    /// The value as f32 (codes are dequantized).
    fn real(&self) -> Result<Tensor> {
        match self {
            Value::F(t) => Ok(t.clone()),
            Value::Q(c) => {
                let mut v = vec![0f32; c.data.len()];
                int8::quant::dequantize_slice(&c.data, c.q, &mut v)?;
                Ok(Tensor::from_shape_vec(c.shape.to_vec(), v)
                    .map_err(|e| Error::Config(e.to_string()))?
                    .into_shared())
            }
        }
    }
}

fn quantize(t: &Tensor, q: QParams) -> Result<Codes> {
    let shape: [usize; 4] = t.shape().try_into().map_err(|_| {
        Error::Config(format!(
            "int8 plan: cannot encode a tensor of shape {:?}",
            t.shape()
        ))
    })?;
    let mut data = buffer(t.len());
    match t.as_slice() {
        Some(x) => int8::quant::quantize_slice(Isa::detect(), x, q, &mut data)?,
        None => int8::quant::quantize_slice(
            Isa::detect(),
            &t.iter().copied().collect::<Vec<_>>(),
            q,
            &mut data,
        )?,
    }
    Ok(Codes { data, shape, q })
}

impl QuantizedPlan {
    /// Logits `[N, classes]` for a preprocessed NHWC batch. The per-image part of the plan runs in
    /// micro-batches side by side; the head ([`head_start`]) then runs once on the whole batch, so
    /// its weights are read once rather than once per micro-batch.
    pub fn run(&self, x: &Tensor) -> Result<Tensor> {
        let (body, head) = self.steps.split_at(head_start(&self.steps));
        let boundary = match (head.is_empty(), body.last()) {
            (false, Some(last)) => last.out,
            _ => self.out,
        };
        let n = x.shape().first().copied().unwrap_or(0);
        let micro = micro_batch(Isa::detect());
        let mid = match n <= micro {
            true => on_pool(|| run_steps(body, INPUT, Value::F(x.clone()), boundary))?,
            false => joined(in_micro_batches(x, micro, |chunk| {
                run_steps(body, INPUT, Value::F(chunk.clone()), boundary)
            })?)?,
        };
        match head.is_empty() {
            true => mid.real(),
            false => run_steps(head, boundary, mid, self.out)?.real(),
        }
    }
}

/// Where the plan's head begins: the longest run of f32 steps at its end that read nothing but
/// each other and the output of the f32 step just before them (the dense layers after the
/// pooling). Everything before works on images; the head on one vector an image.
fn head_start(steps: &[QStep]) -> usize {
    let float = |s: &QStep| matches!(s.op, QOp::Float(_));
    let mut start = steps.len();
    while start > 1 && float(&steps[start - 1]) && float(&steps[start - 2]) {
        let made: Vec<NodeId> = steps[start - 2..].iter().map(|s| s.out).collect();
        let closed = steps[start - 1..]
            .iter()
            .all(|s| s.inputs.iter().all(|j| made.contains(j)));
        if !closed {
            break;
        }
        start -= 1;
    }
    start
}

/// Micro-batches' values of one node, joined along the batch.
fn joined(parts: Vec<Value>) -> Result<Value> {
    let mismatch = || Error::Config("int8 plan: micro-batches disagree on a value's kind".into());
    match parts.first() {
        Some(Value::Q(first)) => {
            let (q, [_, h, w, c]) = (first.q, first.shape);
            let mut codes = Vec::new();
            for p in &parts {
                match p {
                    Value::Q(p) if p.q == q && p.shape[1..] == [h, w, c] => codes.push(&p.data),
                    _ => return Err(mismatch()),
                }
            }
            let mut data = buffer(codes.iter().map(|d| d.len()).sum());
            let mut at = 0;
            for d in codes {
                data[at..at + d.len()].copy_from_slice(d);
                at += d.len();
            }
            let n = data.len() / (h * w * c).max(1);
            Ok(Value::Q(Codes {
                data,
                shape: [n, h, w, c],
                q,
            }))
        }
        _ => {
            let tensors: Vec<&Tensor> = parts
                .iter()
                .map(|p| match p {
                    Value::F(t) => Ok(t),
                    Value::Q(_) => Err(mismatch()),
                })
                .collect::<Result<_>>()?;
            let views: Vec<_> = tensors.iter().map(|t| t.view()).collect();
            Ok(Value::F(
                ndarray::concatenate(ndarray::Axis(0), &views)
                    .map_err(|e| Error::Config(e.to_string()))?
                    .into_shared(),
            ))
        }
    }
}

/// Runs `steps` from the value `start` of node `from`; returns the value of node `want`.
fn run_steps(steps: &[QStep], from: NodeId, start: Value, want: NodeId) -> Result<Value> {
    let isa = Isa::detect();
    let last_use = last_uses(steps.iter().map(|s| s.inputs.as_slice()).enumerate());
    let mut live: HashMap<NodeId, Value> = HashMap::new();
    live.insert(from, start);
    for (s, step) in steps.iter().enumerate() {
        let ins: Vec<&Value> = step
            .inputs
            .iter()
            .map(|j| {
                live.get(j).ok_or_else(|| {
                    Error::Config(format!(
                        "int8 plan: {} reads node {j}, not computed",
                        step.name
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let t = nn::profile::start();
        let y = exec_step(isa, step, &ins)?;
        nn::profile::record(t, &step.name, nn::profile::Phase::Forward);
        for &j in &step.inputs {
            if last_use.get(&j) == Some(&s) && j != want {
                if let Some(Value::Q(c)) = live.remove(&j) {
                    recycle(c.data);
                }
            }
        }
        live.insert(step.out, y);
    }
    live.remove(&want)
        .ok_or_else(|| Error::Config(format!("int8 plan: node {want} was not computed")))
}

fn exec_step(isa: Isa, step: &QStep, ins: &[&Value]) -> Result<Value> {
    let name = step.name.as_str();
    let first = ins
        .first()
        .ok_or_else(|| Error::Config(format!("int8 plan: {name} has no input")))?;
    let out_q = step
        .out_q
        .ok_or_else(|| Error::Config(format!("int8 plan: {name} has no output encoding")));
    let (data, shape) = match &step.op {
        QOp::Float(op) => return float_step(op, step.out_q, ins),
        QOp::Quantize => return Ok(Value::Q(quantize(&first.real()?, out_q?)?)),
        QOp::Conv {
            w,
            kh,
            kw,
            stride,
            padding,
            bias,
            rq,
        } => {
            let x = first.codes(name)?;
            let g = ConvGeom::new(
                "int8 conv",
                &x.shape,
                &[*kh, *kw, x.shape[3], w.n],
                *stride,
                *padding,
            )?;
            let mut out = buffer(g.n * g.rows.out * g.cols.out * w.n);
            int8::conv::forward(isa, &g, &x.data, x.q.zero_point, w, bias, rq, &mut out)?;
            (out, [g.n, g.rows.out, g.cols.out, w.n])
        }
        QOp::Pointwise { w, bias, rq } => {
            let x = first.codes(name)?;
            let [n, h, wd, _] = x.shape;
            let mut out = buffer(n * h * wd * w.n);
            int8::pointwise::forward(
                isa,
                &x.data,
                n * h * wd,
                x.q.zero_point,
                w,
                bias,
                rq,
                &mut out,
            )?;
            (out, [n, h, wd, w.n])
        }
        QOp::Depthwise {
            w,
            kh,
            kw,
            stride,
            padding,
            bias,
            rq,
        } => {
            let x = first.codes(name)?;
            let c = x.shape[3];
            let g = ConvGeom::depthwise(
                "int8 depthwise",
                &x.shape,
                &[*kh, *kw, c, 1],
                *stride,
                *padding,
            )?;
            let mut out = buffer(g.n * g.rows.out * g.cols.out * c);
            int8::depthwise::forward(isa, &g, &x.data, x.q.zero_point, w, bias, rq, &mut out)?;
            (out, [g.n, g.rows.out, g.cols.out, c])
        }
        QOp::Add(p) => add_step(isa, name, ins, p)?,
    };
    Ok(Value::Q(Codes {
        data,
        shape,
        q: out_q?,
    }))
}

/// A folded f32 op on its inputs as reals; its output encoded when something reads it as codes.
/// Pooling codes reads them as they are ([`pooled`]).
fn float_step(op: &crate::folded::Op, out_q: Option<QParams>, ins: &[&Value]) -> Result<Value> {
    if let (crate::folded::Op::Gap, [Value::Q(x)], None) = (op, ins, out_q) {
        return pooled(x).map(Value::F);
    }
    let reals: Vec<Tensor> = ins.iter().map(|v| v.real()).collect::<Result<_>>()?;
    let refs: Vec<&Tensor> = reals.iter().collect();
    let y = exec(op, &refs)?;
    Ok(match out_q {
        Some(q) => Value::Q(quantize(&y, q)?),
        None => Value::F(y),
    })
}

/// The global average pool of codes: their exact sums scaled once, without a dequantized copy.
fn pooled(x: &Codes) -> Result<Tensor> {
    let [n, h, w, c] = x.shape;
    let mut means = vec![0f32; n * c];
    int8::pool::global_avg_pool(&x.data, n, h * w, c, x.q, &mut means)?;
    Ok(Tensor::from_shape_vec(vec![n, c], means)
        .map_err(|e| Error::Config(e.to_string()))?
        .into_shared())
}

/// The residual sum of two code tensors of one shape.
fn add_step(
    isa: Isa,
    name: &str,
    ins: &[&Value],
    p: &int8::add::AddParams,
) -> Result<(CodeBuf, [usize; 4])> {
    let (a, b) = match ins {
        [a, b] => (a.codes(name)?, b.codes(name)?),
        _ => return Err(Error::Config(format!("int8 plan: {name} adds two inputs"))),
    };
    if a.shape != b.shape {
        return Err(Error::Config(format!(
            "int8 plan: {name} adds {:?} and {:?}",
            a.shape, b.shape
        )));
    }
    let mut out = buffer(a.data.len());
    int8::add::forward(isa, &a.data, &b.data, p, &mut out)?;
    Ok((out, a.shape))
}
