//! `BatchNormalization` exactly as Keras: a frozen layer always uses its moving statistics, even while
//! training; a trainable one in training uses batch statistics (biased variance) and updates
//! `moving = moving * momentum + batch * (1 - momentum)` with that same biased variance.

use crate::fusion::Fusion;
use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Error, Layer, Mode, Param, Result, Tensor};
use tensor_core::batch_norm::{self, BnCache};
use tensor_core::fold::BnView;
use tensor_core::Activation;

/// Keras's BatchNormalization options (MobileNetV2: eps 1e-3, momentum 0.999).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnConfig {
    pub eps: f32,
    pub momentum: f32,
}

impl Default for BnConfig {
    fn default() -> Self {
        BnConfig {
            eps: 1e-3,
            momentum: 0.999,
        }
    }
}

enum Cache {
    /// Batch statistics and the input (`x_hat` is recomputed from it).
    Batch(BnCache, Tensor),
    Moving(Tensor),
}

/// What backward needs: the cache, and the activation the forward fused in.
struct Recorded {
    cache: Cache,
    act: Activation,
}

pub struct BatchNormalization {
    name: String,
    pub gamma: Param,
    pub beta: Param,
    pub moving_mean: Param,
    pub moving_variance: Param,
    pub cfg: BnConfig,
    /// The activation of the next layer, applied here when the graph fuses it in.
    fused: Activation,
    cache: Option<Recorded>,
}

impl BatchNormalization {
    pub fn new(
        name: &str,
        gamma: Tensor,
        beta: Tensor,
        mean: Tensor,
        var: Tensor,
        cfg: BnConfig,
    ) -> Result<Self> {
        let c = gamma.len();
        for (what, t) in [
            ("beta", &beta),
            ("moving_mean", &mean),
            ("moving_variance", &var),
        ] {
            if t.shape() != [c] {
                return Err(Error::layer(
                    name,
                    format!("{what} has shape {:?}, gamma has [{c}]", t.shape()),
                ));
            }
        }
        Ok(BatchNormalization {
            gamma: Param::new(format!("{name}/gamma"), gamma, true),
            beta: Param::new(format!("{name}/beta"), beta, true),
            moving_mean: Param::state(format!("{name}/moving_mean"), mean),
            moving_variance: Param::state(format!("{name}/moving_variance"), var),
            name: name.to_string(),
            cfg,
            fused: Activation::Linear,
            cache: None,
        })
    }

    /// Whether a training forward uses batch statistics (the layer is trainable).
    pub fn uses_batch_stats(&self, ctx: Ctx) -> bool {
        ctx.mode == Mode::Train && (self.gamma.trainable || self.beta.trainable)
    }

    /// `(scale, shift)` of the inference transform.
    pub fn scale_shift(&self) -> (Vec<f32>, Vec<f32>) {
        batch_norm::scale_shift(
            self.gamma.slice(),
            self.beta.slice(),
            self.moving_mean.slice(),
            self.moving_variance.slice(),
            self.cfg.eps,
        )
    }
}

impl Layer for BatchNormalization {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        let c = self.gamma.value.len();
        if x.shape().last() != Some(&c) {
            return Err(Error::layer(
                &self.name,
                format!("input {:?} does not end in {c} channels", x.shape()),
            ));
        }
        let mut ys = tensor_core::buffer::uninit(x.len());
        let xs = x.as_slice().expect("contiguous");
        if self.uses_batch_stats(ctx) {
            let cache = batch_norm::training_forward_into(
                xs,
                self.gamma.slice(),
                self.beta.slice(),
                self.cfg.eps,
                self.fused,
                &mut ys,
            )?;
            let m = self.cfg.momentum;
            let update = |p: &mut Param, batch: &[f32]| {
                let v = p.value.as_slice_mut().expect("contiguous");
                v.iter_mut()
                    .zip(batch)
                    .for_each(|(mv, b)| *mv = *mv * m + b * (1.0 - m));
            };
            update(&mut self.moving_mean, &cache.mean);
            update(&mut self.moving_variance, &cache.var);
            self.cache = ctx.record.then(|| Recorded {
                cache: Cache::Batch(cache, x.clone()),
                act: self.fused,
            });
        } else {
            let (scale, shift) = self.scale_shift();
            batch_norm::inference_forward_into(xs, &scale, &shift, self.fused, &mut ys)?;
            self.cache = ctx.record.then(|| Recorded {
                cache: Cache::Moving(x.clone()),
                act: self.fused,
            });
        }
        // SAFETY: both forwards returned `Ok`, so each wrote every element of `ys`.
        let ys = unsafe { tensor_core::buffer::assume_init(ys) };
        Ok(Tensor::from_shape_vec(x.raw_dim(), ys).expect("same length"))
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let dys = dy.as_slice().expect("contiguous");
        let Recorded { cache, act } = cached(&self.name, &self.cache)?;
        let g = match cache {
            Cache::Batch(cache, x) => batch_norm::training_backward(
                dys,
                x.as_slice().expect("contiguous"),
                cache,
                (self.gamma.slice(), self.beta.slice()),
                *act,
                need_dx,
            )?,
            Cache::Moving(x) => batch_norm::inference_backward(
                x.as_slice().expect("contiguous"),
                dys,
                BnView {
                    gamma: self.gamma.slice(),
                    beta: self.beta.slice(),
                    moving_mean: self.moving_mean.slice(),
                    moving_variance: self.moving_variance.slice(),
                    eps: self.cfg.eps,
                },
                *act,
                need_dx,
            )?,
        };
        if self.gamma.trainable {
            self.gamma.accumulate(&g.dgamma);
        }
        if self.beta.trainable {
            self.beta.accumulate(&g.dbeta);
        }
        Ok(vec![g.dx.map(|d| {
            Tensor::from_shape_vec(dy.raw_dim(), d).expect("same size as dy")
        })])
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.gamma);
        f(&mut self.beta);
        f(&mut self.moving_mean);
        f(&mut self.moving_variance);
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::BatchNormalization {
            gamma: &self.gamma.value,
            beta: &self.beta.value,
            moving_mean: &self.moving_mean.value,
            moving_variance: &self.moving_variance.value,
            eps: self.cfg.eps,
        }
    }

    fn fuse(&mut self, f: Option<Fusion>) -> bool {
        match f {
            None => self.fused = Activation::Linear,
            Some(Fusion::Activation(act)) => self.fused = act,
            Some(_) => return false,
        }
        true
    }
}
