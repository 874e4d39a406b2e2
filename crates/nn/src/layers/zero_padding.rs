//! `ZeroPadding2D(((top, bottom), (left, right)))`.

use super::view4;
use crate::layer::{one, Fusable};
use crate::{Ctx, Layer, Param, Result, Tensor};
use ndarray::{par_azip, s, Ix4};
use rayon::prelude::*;

pub struct ZeroPadding2D {
    name: String,
    /// `((top, bottom), (left, right))`.
    pub pad: ((usize, usize), (usize, usize)),
    in_hw: Option<(usize, usize)>,
}

impl ZeroPadding2D {
    pub fn new(name: &str, pad: ((usize, usize), (usize, usize))) -> Self {
        ZeroPadding2D {
            name: name.to_string(),
            pad,
            in_hw: None,
        }
    }
}

impl Layer for ZeroPadding2D {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], _ctx: Ctx) -> Result<Tensor> {
        let x = view4(&self.name, one(&self.name, inputs)?)?;
        let (n, h, w, c) = x.dim();
        let ((t, b), (l, r)) = self.pad;
        let (oh, ow) = (h + t + b, w + l + r);
        let xs = tensor_core::conv::contiguous(&x);
        let mut y = tensor_core::buffer::output_array(Ix4(n, oh, ow, c));
        // One pass: every output row is either all padding or padding, an input row, padding.
        y.as_slice_mut()
            .expect("fresh array is contiguous")
            .par_chunks_mut((ow * c).max(1))
            .enumerate()
            .for_each(|(row, out)| {
                let (img, oy) = (row / oh, row % oh);
                if oy < t || oy >= t + h {
                    out.fill(0.0);
                    return;
                }
                let src = &xs[((img * h + oy - t) * w) * c..][..w * c];
                let (left, rest) = out.split_at_mut(l * c);
                let (mid, right) = rest.split_at_mut(w * c);
                left.fill(0.0);
                mid.copy_from_slice(src);
                right.fill(0.0);
            });
        self.in_hw = Some((h, w));
        Ok(y.into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (h, w) = crate::layer::cached(&self.name, &self.in_hw)?;
        let ((t, _), (l, _)) = self.pad;
        let dy = view4(&self.name, dy)?;
        Ok(vec![need_dx.then(|| {
            let (n, _, _, c) = dy.dim();
            let mut dx = tensor_core::buffer::output_array(Ix4(n, *h, *w, c));
            par_azip!((o in &mut dx, &v in &dy.slice(s![.., t..t + h, l..l + w, ..])) *o = v);
            dx.into_dyn().into_shared()
        })])
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}

    fn fusable(&self) -> Option<Fusable> {
        let ((top, bottom), (left, right)) = self.pad;
        Some(Fusable::Padding(tensor_core::Padding::Explicit {
            top,
            bottom,
            left,
            right,
        }))
    }
}
