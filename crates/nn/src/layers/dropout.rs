//! `Dropout(rate)`: inverted dropout in training, identity in inference. Masks come from
//! `(seed, call counter)`, so a run is reproducible.

use crate::layer::{cached, one};
use crate::spec::LayerSpec;
use crate::{Ctx, Error, Layer, Mode, Param, Result, Tensor};
use rand::{Rng, SeedableRng};

pub struct Dropout {
    name: String,
    pub rate: f32,
    seed: u64,
    /// Number of training forwards so far, a state variable (`<name>/calls`) so checkpoints keep it.
    calls: Param,
    mask: Option<Tensor>,
}

impl Dropout {
    pub fn new(name: &str, rate: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::layer(
                name,
                format!("rate must be in [0, 1), got {rate}"),
            ));
        }
        Ok(Dropout {
            name: name.to_string(),
            rate,
            seed,
            calls: Param::state(format!("{name}/calls"), Tensor::zeros(vec![1])),
            mask: None,
        })
    }
}

impl Layer for Dropout {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&mut self, inputs: &[&Tensor], ctx: Ctx) -> Result<Tensor> {
        let x = one(&self.name, inputs)?;
        if ctx.mode == Mode::Infer || self.rate == 0.0 {
            self.mask = ctx.record.then(|| Tensor::ones(x.raw_dim()));
            return Ok(x.clone());
        }
        let calls = self.calls.value[0] as u64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.seed ^ calls.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        self.calls.value[0] += 1.0;
        let keep = 1.0 - self.rate;
        let mask = x.mapv(|_| {
            if rng.gen::<f32>() < keep {
                1.0 / keep
            } else {
                0.0
            }
        });
        let mask = mask.into_shared();
        let y = (x * &mask).into_shared();
        self.mask = ctx.record.then_some(mask);
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor, need_dx: bool) -> Result<Vec<Option<Tensor>>> {
        let mask = cached(&self.name, &self.mask)?;
        Ok(vec![need_dx.then(|| (dy * mask).into_shared())])
    }

    fn describe(&self) -> LayerSpec<'_> {
        LayerSpec::Dropout { rate: self.rate }
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.calls);
    }
}
