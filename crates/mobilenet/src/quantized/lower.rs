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
use tensor_core::int8::quant::MAX_BIAS;
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
        let out_q = (int || read_as_codes.contains(&s.out))
            .then(|| encoding(s.out))
            .transpose()?;
        out.push(lower_step(s, int, out_q, &encoding)?);
    }
    Ok(out)
}

/// One folded step as an integer op (`int`) reading codes, or as itself in f32; `out_q` is its
/// output's encoding when something reads it as codes.
fn lower_step(
    s: Step,
    int: bool,
    out_q: Option<QParams>,
    encoding: &impl Fn(NodeId) -> Result<QParams>,
) -> Result<QStep> {
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
    Ok(QStep {
        name: s.name,
        op,
        inputs,
        out: s.out,
        out_q,
    })
}

fn integer_op(op: &Op, q_in: &[QParams], q_out: QParams) -> Result<QOp> {
    let q_x = q_in[0];
    if let Some(pw) = as_pointwise(op) {
        let n = pw.bias.len();
        let k = pw.w.len() / n.max(1);
        let (w, scales) = per_channel(&pw.w, n, &pw.bias, q_x);
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
            let (wq, scales) = per_channel(&flat, cout, bias, q_x);
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
            let (wq, scales) = per_channel(&flat, c, bias, q_x);
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
/// `scale = max |w| / 127`, codes in `-127..=127`; raised where needed so that the channel's bias,
/// in the sum's units (`input scale * weight scale`), stays within the kernels' `MAX_BIAS` (a channel
/// whose folded weights are almost zero but whose bias is not would otherwise overflow an `i32`).
pub(crate) fn per_channel(
    w: &[f32],
    channels: usize,
    bias: &[f32],
    q_x: QParams,
) -> (Vec<i8>, Vec<f32>) {
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        max[i % channels] = max[i % channels].max(v.abs());
    }
    let bias_floor = |c: usize| {
        bias.get(c)
            .map_or(0.0, |b| b.abs() / (q_x.scale * MAX_BIAS as f32 / 2.0))
    };
    let scales: Vec<f32> = max
        .iter()
        .enumerate()
        .map(|(c, &m)| (m / 127.0).max(bias_floor(c)))
        .map(|s| if s > 0.0 { s } else { 1.0 })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel whose weights are almost zero but whose bias is not (a batch-norm with a tiny
    /// gamma folds into that) gets a weight scale that keeps its bias codes inside `MAX_BIAS`,
    /// and the bias is still represented to within a millionth; the other channel is untouched.
    #[test]
    fn a_large_bias_over_tiny_weights_stays_in_range() {
        let q = QParams {
            scale: 0.02,
            zero_point: 3,
        };
        let bias = [3.0, 0.1];
        let (codes, scales) = per_channel(&[1e-9, 0.5, -2e-9, 0.25], 2, &bias, q);
        let b = bias_codes(&bias, q, &scales);
        assert!(b[0].abs() <= MAX_BIAS, "{b:?}");
        assert!((b[0] as f32 * q.scale * scales[0] - 3.0).abs() < 3e-6);
        assert_eq!(scales[1], 0.5 / 127.0);
        assert_eq!((codes[1], codes[3]), (127, 64));
    }
}
