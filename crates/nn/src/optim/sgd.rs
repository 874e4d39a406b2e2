//! SGD with momentum as Keras: `v = momentum * v - lr * g; w += v` (plain `w -= lr * g` at momentum 0).

use super::{iterations_tensor, read_iterations, Optimizer};
use crate::{Param, Result, Tensor};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
}

impl Default for SgdParams {
    fn default() -> Self {
        SgdParams {
            lr: 0.01,
            momentum: 0.0,
        }
    }
}

pub struct Sgd {
    pub params: SgdParams,
    t: u64,
    velocity: HashMap<String, Vec<f32>>,
}

impl Sgd {
    pub fn new(params: SgdParams) -> Self {
        Sgd {
            params,
            t: 0,
            velocity: HashMap::new(),
        }
    }
}

impl Optimizer for Sgd {
    fn begin_step(&mut self) {
        self.t += 1;
    }

    fn update(&mut self, p: &mut Param) {
        let n = p.value.len();
        let vel = self
            .velocity
            .entry(p.name.clone())
            .or_insert_with(|| vec![0.0; n]);
        let w = p.value.as_slice_mut().expect("contiguous");
        let g = p.grad.as_slice().expect("contiguous");
        for i in 0..n {
            vel[i] = self.params.momentum * vel[i] - self.params.lr * g[i];
            w[i] += vel[i];
        }
    }

    fn lr(&self) -> f32 {
        self.params.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.params.lr = lr;
    }
    fn iterations(&self) -> u64 {
        self.t
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![(
            "optimizer/iterations".to_string(),
            iterations_tensor(self.t),
        )];
        let mut names: Vec<_> = self.velocity.keys().collect();
        names.sort();
        for name in names {
            let v = &self.velocity[name];
            out.push((
                format!("optimizer/velocity/{name}"),
                Tensor::from_shape_vec(vec![v.len()], v.clone()).expect("1-D"),
            ));
        }
        out
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<()> {
        self.t = read_iterations(t)?;
        self.velocity.clear();
        for (k, v) in t {
            if let Some(name) = k.strip_prefix("optimizer/velocity/") {
                super::check_state_len(t, k, name, v.len())?;
                self.velocity
                    .insert(name.to_string(), v.iter().copied().collect());
            }
        }
        Ok(())
    }
}
