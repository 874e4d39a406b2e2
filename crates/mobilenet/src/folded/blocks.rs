//! Inverted-residual fusion: `[expand 1x1 ->] depthwise -> project 1x1 [-> add input]` runs of
//! folded steps become one tiled [`Block`] step.

use super::{Block, Op, PackedPw, Pw, Step};
use nn::NodeId;
use std::collections::HashMap;
use tensor_core::aligned::Aligned;
use tensor_core::Padding;

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
            w: Aligned::from_slice(&w.iter().copied().collect::<Vec<_>>()),
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
pub(crate) fn fuse_blocks(steps: Vec<Step>, keep: &[NodeId]) -> Vec<Step> {
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
        let project = as_pointwise(&pj_step.op).and_then(PackedPw::new);
        let expand = match expand {
            Some(e) => match PackedPw::new(e) {
                Some(e) => Some(e),
                None => {
                    fused.push(out[i].take().expect("each step moved once"));
                    i += 1;
                    continue;
                }
            },
            None => None,
        };
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
                w: Aligned::from_slice(&w.iter().copied().collect::<Vec<_>>()),
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
            layer: at(i).expect("exists").layer,
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

/// The 1x1 convolutions and dense layers left outside the blocks, with their weights packed in
/// panels as the blocks' are ([`PackedPw`]).
pub(crate) fn pack_products(steps: Vec<Step>) -> Vec<Step> {
    steps
        .into_iter()
        .map(|s| {
            let product = match &s.op {
                Op::Dense { w, b, act } => PackedPw::new(Pw {
                    w: Aligned::from_slice(&w.iter().copied().collect::<Vec<_>>()),
                    bias: b.to_vec(),
                    act: *act,
                }),
                op => as_pointwise(op).and_then(PackedPw::new),
            };
            match product {
                Some(p) => Step {
                    op: Op::Packed(Box::new(p)),
                    ..s
                },
                None => s,
            }
        })
        .collect()
}
