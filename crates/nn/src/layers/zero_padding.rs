//! `ZeroPadding2D(((top, bottom), (left, right)))`.

use super::view4;
use crate::layer::one;
use crate::{Ctx, Layer, Param, Result, Tensor};
use ndarray::{par_azip, s, Array4};

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
        let mut y = Array4::zeros((n, h + t + b, w + l + r, c));
        let mut inner = y.slice_mut(s![.., t..t + h, l..l + w, ..]);
        par_azip!((o in &mut inner, &v in &x) *o = v);
        self.in_hw = Some((h, w));
        Ok(y.into_dyn().into_shared())
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let (h, w) = crate::layer::cached(&self.name, &self.in_hw)?;
        let ((t, _), (l, _)) = self.pad;
        let dy = view4(&self.name, dy)?;
        Ok(vec![need_dx.then(|| {
            let (n, _, _, c) = dy.dim();
            let mut dx = Array4::zeros((n, *h, *w, c));
            par_azip!((o in &mut dx, &v in &dy.slice(s![.., t..t + h, l..l + w, ..])) *o = v);
            dx.into_dyn().into_shared()
        })])
    }

    fn visit_params(&mut self, _f: &mut dyn FnMut(&mut Param)) {}
}
