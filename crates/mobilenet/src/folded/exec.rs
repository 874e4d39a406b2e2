//! One step of a plan, run on its inputs with the f32 kernels.

use super::{Op, PackedPw};
use crate::{Error, Result};
use nn::Tensor;
use tensor_core::conv;

fn slice(t: &Tensor) -> Result<&[f32]> {
    t.as_slice()
        .ok_or_else(|| Error::Config("folded plan: an input is not contiguous".into()))
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
                slice(x)?,
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
        Op::Packed(p) => packed_product(p, x)?,
        Op::Block(b) => {
            use tensor_core::inverted_residual::{forward, Depthwise, Pointwise};
            fn pw(p: &PackedPw) -> Pointwise<'_> {
                Pointwise {
                    w: p.w.view(),
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

/// `act(x * w + bias)` over the rows of `x`'s last axis (`w.k` long), `w` packed in panels.
fn packed_product(p: &PackedPw, x: &Tensor) -> Result<Tensor> {
    let (k, n) = (p.w.view().k, p.w.view().n);
    let mut shape = x.shape().to_vec();
    if shape.last() != Some(&k) {
        return Err(Error::Config(format!(
            "folded plan: a product over {k} channels got a tensor of shape {shape:?}"
        )));
    }
    let rows = x.len() / k.max(1);
    let mut y = tensor_core::buffer::uninit(rows * n);
    let epi = tensor_core::gemm::Epilogue {
        bias: Some(&p.bias),
        act: p.act,
    };
    let a = tensor_core::gemm::Mat::rows(slice(x)?, k);
    tensor_core::gemm::par_gemm_panels_into_with(rows, a, p.w.view(), &mut y, epi);
    // SAFETY: `par_gemm_panels_into_with` wrote all `rows * n` slots.
    let y = unsafe { tensor_core::buffer::assume_init(y) };
    *shape.last_mut().expect("checked above") = n;
    Ok(Tensor::from_shape_vec(shape, y)
        .map_err(|e| Error::Config(e.to_string()))?
        .into_shared())
}
