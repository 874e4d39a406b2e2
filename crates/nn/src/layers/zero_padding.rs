//! `ZeroPadding2D(((top, bottom), (left, right)))`.

use super::view4;
use crate::layer::one;
use crate::spec::LayerSpec;
use crate::{Ctx, Layer, Param, Result, Tensor};
use ndarray::Array4;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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
        let mut y = tensor_core::buffer::uninit(n * oh * ow * c);
        let zero = MaybeUninit::new(0.0);
        // One pass: every output row is either all padding or padding, an input row, padding.
        y.par_chunks_mut((ow * c).max(1))
            .enumerate()
            .for_each(|(row, out)| {
                let (img, oy) = (row / oh, row % oh);
                if oy < t || oy >= t + h {
                    out.fill(zero);
                    return;
                }
                let src = &xs[((img * h + oy - t) * w) * c..][..w * c];
                let (left, rest) = out.split_at_mut(l * c);
                let (mid, right) = rest.split_at_mut(w * c);
                left.fill(zero);
                tensor_core::buffer::write_from(mid, src);
                right.fill(zero);
            });
        // SAFETY: the rows cover `y`, and each was written whole (padding, input, padding).
        let y = unsafe { tensor_core::buffer::assume_init(y) };
        let y = Array4::from_shape_vec((n, oh, ow, c), y).expect("length is the shape's size");
        self.in_hw = Some((h, w));
        Ok(y.into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (h, w) = crate::layer::cached(&self.name, &self.in_hw)?;
        let ((t, _), (l, _)) = self.pad;
        let dy = view4(&self.name, dy)?;
        Ok(vec![need_dx.then(|| {
            let (n, oh, ow, c) = dy.dim();
            let (h, w) = (*h, *w);
            let dys = tensor_core::conv::contiguous(&dy);
            let mut dx = tensor_core::buffer::uninit(n * h * w * c);
            // Each row of dx is the middle of a row of dy.
            dx.par_chunks_mut((w * c).max(1))
                .enumerate()
                .for_each(|(row, out)| {
                    let (img, iy) = (row / h, row % h);
                    let src = &dys[((img * oh + iy + t) * ow + l) * c..][..w * c];
                    tensor_core::buffer::write_from(out, src);
                });
            // SAFETY: the rows cover `dx`, and each was written whole.
            let dx = unsafe { tensor_core::buffer::assume_init(dx) };
            Array4::from_shape_vec((n, h, w, c), dx)
                .expect("length is the shape's size")
                .into_dyn()
                .into_shared()
        })])
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::ZeroPadding2D(self.pad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two images of 2x3 pixels and 2 channels, padded top 1, bottom 0, left 0, right 2: the
    /// output holds the input at its place and zeros elsewhere; the gradient is dy's middle.
    #[test]
    fn pads_with_zeros_and_passes_the_middle_back() {
        let x = ndarray::Array::from_shape_fn((2, 2, 3, 2), |(n, y, x, c)| {
            1.0 + (n * 100 + y * 10 + x) as f32 + c as f32 * 0.5
        })
        .into_dyn()
        .into_shared();
        let mut pad = ZeroPadding2D::new("pad", ((1, 0), (0, 2)));
        let y = pad.forward(&[&x], Ctx::INFER).unwrap();
        assert_eq!(y.shape(), &[2, 3, 5, 2]);
        for ((n, oy, ox, c), &v) in y
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap()
            .indexed_iter()
        {
            let want = match (oy >= 1, ox < 3) {
                (true, true) => x[[n, oy - 1, ox, c]],
                _ => 0.0,
            };
            assert_eq!(v, want, "y[{n}, {oy}, {ox}, {c}]");
        }
        let dy = ndarray::Array::from_shape_fn((2, 3, 5, 2), |(n, y, x, c)| {
            (n * 1000 + y * 100 + x * 10 + c) as f32
        })
        .into_dyn()
        .into_shared();
        let dx = pad.backward(&dy, true).unwrap().remove(0).unwrap();
        assert_eq!(dx.shape(), &[2, 2, 3, 2]);
        for ((n, iy, ix, c), &v) in dx
            .view()
            .into_dimensionality::<ndarray::Ix4>()
            .unwrap()
            .indexed_iter()
        {
            assert_eq!(v, dy[[n, iy + 1, ix, c]], "dx[{n}, {iy}, {ix}, {c}]");
        }
    }
}
