//! The quantization pass: folded f32 steps + calibrated ranges -> integer steps where the kernels
//! exist (convolutions of every kind, residual adds), f32 steps elsewhere (pooling, the dense
//! head, anything else).

use super::{QOp, QStep, INPUT_CODES};
use crate::folded::{as_pointwise, Op, Step};
use crate::{Error, Result};
use nn::graph::INPUT;
use nn::NodeId;
use std::collections::{HashMap, HashSet};
use tensor_core::int8::add::AddParams;
use tensor_core::int8::{PackedWeights, QParams, Requant};
use tensor_core::Activation;

/// Whether a folded step runs on an integer kernel (its inputs are then codes; the image is
/// encoded first by a `Quantize` step).
fn is_integer(s: &Step) -> bool {
    match &s.op {
        Op::Conv { .. } => s.inputs.len() == 1,
        Op::Add => s.inputs.len() == 2 && !s.inputs.contains(&INPUT),
        _ => false,
    }
}

/// The step that encodes the image for the integer ops that read it.
fn quantize_input(q: QParams) -> QStep {
    QStep {
        name: "input (quantize)".into(),
        op: QOp::Quantize,
        inputs: vec![INPUT],
        out: INPUT_CODES,
        out_q: Some(q),
    }
}

pub(crate) fn lower(steps: Vec<Step>, ranges: &HashMap<NodeId, (f32, f32)>) -> Result<Vec<QStep>> {
    let integer: Vec<bool> = steps.iter().map(is_integer).collect();
    let read_as_codes: HashSet<NodeId> = steps
        .iter()
        .zip(&integer)
        .filter(|(_, &int)| int)
        .flat_map(|(s, _)| s.inputs.iter().copied())
        .collect();
    let encoding = |node: NodeId| -> Result<QParams> {
        let &(lo, hi) = ranges.get(&node).ok_or_else(|| {
            Error::Config(format!("quantization: node {node} was never calibrated"))
        })?;
        Ok(QParams::from_range(lo, hi))
    };
    let mut out = Vec::with_capacity(steps.len() + 1);
    if read_as_codes.contains(&INPUT) {
        out.push(quantize_input(encoding(INPUT)?));
    }
    for (s, int) in steps.into_iter().zip(integer) {
        out.push({
            let out_q = match int || read_as_codes.contains(&s.out) {
                true => Some(encoding(s.out)?),
                false => None,
            };
            let op = match (int, out_q) {
                (true, Some(q_out)) => {
                    let q_in: Vec<QParams> = s
                        .inputs
                        .iter()
                        .map(|&j| encoding(j))
                        .collect::<Result<_>>()?;
                    integer_op(&s.op, &q_in, q_out)?
                }
                _ => QOp::Float(s.op),
            };
            // Integer ops read the image's codes.
            let inputs = s
                .inputs
                .iter()
                .map(|&j| if int && j == INPUT { INPUT_CODES } else { j })
                .collect();
            QStep {
                name: s.name,
                op,
                inputs,
                out: s.out,
                out_q,
            }
        });
    }
    Ok(out)
}

fn integer_op(op: &Op, q_in: &[QParams], q_out: QParams) -> Result<QOp> {
    let q_x = q_in[0];
    if let Some(pw) = as_pointwise(op) {
        let n = pw.bias.len();
        let k = pw.w.len() / n.max(1);
        let (w, scales) = per_channel(&pw.w, n);
        return Ok(QOp::Pointwise {
            w: PackedWeights::pack(&w, k, n)?,
            bias: bias_codes(&pw.bias, q_x, &scales),
            rq: requant(q_x, &scales, q_out, pw.act),
        });
    }
    Ok(match op {
        Op::Conv {
            w,
            bias,
            stride,
            padding,
            act,
            depthwise: false,
        } => {
            let (kh, kw, cin, cout) = w.dim();
            let flat: Vec<f32> = w.iter().copied().collect();
            let (wq, scales) = per_channel(&flat, cout);
            QOp::Conv {
                w: PackedWeights::pack(&wq, kh * kw * cin, cout)?,
                kh,
                kw,
                stride: *stride,
                padding: *padding,
                bias: bias_codes(bias, q_x, &scales),
                rq: requant(q_x, &scales, q_out, *act),
            }
        }
        Op::Conv {
            w,
            bias,
            stride,
            padding,
            act,
            depthwise: true,
        } => {
            let (kh, kw, c, _) = w.dim();
            let flat: Vec<f32> = w.iter().copied().collect();
            let (wq, scales) = per_channel(&flat, c);
            QOp::Depthwise {
                w: wq,
                kh,
                kw,
                stride: *stride,
                padding: *padding,
                bias: bias_codes(bias, q_x, &scales),
                rq: requant(q_x, &scales, q_out, *act),
            }
        }
        Op::Add => QOp::Add(AddParams::new(q_in[0], q_in[1], q_out)),
        _ => {
            return Err(Error::Config(
                "quantization: no integer kernel for this op".into(),
            ))
        }
    })
}

/// Symmetric `i8` weights with one scale per output channel (`channel = index % channels`):
/// `scale = max |w| / 127`, codes in `-127..=127`.
pub(crate) fn per_channel(w: &[f32], channels: usize) -> (Vec<i8>, Vec<f32>) {
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        max[i % channels] = max[i % channels].max(v.abs());
    }
    let scales: Vec<f32> = max
        .iter()
        .map(|&m| if m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let codes = w
        .iter()
        .enumerate()
        .map(|(i, v)| (v / scales[i % channels]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, scales)
}

/// Biases in the sum's units (`input scale * weight scale`).
fn bias_codes(bias: &[f32], q_x: QParams, scales: &[f32]) -> Vec<i32> {
    bias.iter()
        .zip(scales)
        .map(|(b, s)| (b / (q_x.scale * s)).round() as i32)
        .collect()
}

/// The output rule: multipliers per channel, the activation as the clamp on codes.
fn requant(q_x: QParams, scales: &[f32], q_out: QParams, act: Activation) -> Requant {
    let (lo, hi) = match act {
        Activation::Linear => (0, 255),
        Activation::Relu => (q_out.quantize(0.0), 255),
        Activation::Relu6 => q_out.clamp_codes(0.0, 6.0),
    };
    Requant {
        multiplier: scales.iter().map(|s| q_x.scale * s / q_out.scale).collect(),
        zero_point: q_out.zero_point,
        lo,
        hi,
    }
}
