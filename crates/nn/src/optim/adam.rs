//! Adam exactly as Keras 3: `t += 1; a = lr * sqrt(1 - b2^t) / (1 - b1^t);
//! m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2); w -= a * m / (sqrt(v) + eps)`.

use super::{iterations_tensor, read_iterations, Optimizer};
use crate::{Error, Param, Result, Tensor};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for AdamParams {
    /// Keras's defaults.
    fn default() -> Self {
        AdamParams {
            lr: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

pub struct Adam {
    pub params: AdamParams,
    t: u64,
    alpha: f32,
    moments: HashMap<String, (Vec<f32>, Vec<f32>)>,
}

impl Adam {
    pub fn new(params: AdamParams) -> Self {
        Adam {
            params,
            t: 0,
            alpha: 0.0,
            moments: HashMap::new(),
        }
    }
}

impl Optimizer for Adam {
    fn begin_step(&mut self) {
        self.t += 1;
        let p = &self.params;
        let t = self.t as i32;
        // Keras computes the bias-corrected rate in float32.
        self.alpha = p.lr * (1.0 - p.beta_2.powi(t)).sqrt() / (1.0 - p.beta_1.powi(t));
    }

    fn update(&mut self, p: &mut Param) {
        let n = p.value.len();
        let (m, v) = self
            .moments
            .entry(p.name.clone())
            .or_insert_with(|| (vec![0.0; n], vec![0.0; n]));
        let (b1, b2, eps, a) = (
            self.params.beta_1,
            self.params.beta_2,
            self.params.epsilon,
            self.alpha,
        );
        let w = p.value.as_slice_mut().expect("contiguous");
        let g = p.grad.as_slice().expect("contiguous");
        for i in 0..n {
            m[i] += (g[i] - m[i]) * (1.0 - b1);
            v[i] += (g[i] * g[i] - v[i]) * (1.0 - b2);
            w[i] -= a * m[i] / (v[i].sqrt() + eps);
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
        let mut names: Vec<_> = self.moments.keys().collect();
        names.sort();
        for name in names {
            let (m, v) = &self.moments[name];
            out.push((
                format!("optimizer/m/{name}"),
                Tensor::from_shape_vec(vec![m.len()], m.clone()).expect("1-D"),
            ));
            out.push((
                format!("optimizer/v/{name}"),
                Tensor::from_shape_vec(vec![v.len()], v.clone()).expect("1-D"),
            ));
        }
        out
    }

    fn load_state(&mut self, t: &HashMap<String, Tensor>) -> Result<()> {
        self.t = read_iterations(t)?;
        self.moments.clear();
        for (k, m) in t {
            let Some(name) = k.strip_prefix("optimizer/m/") else {
                continue;
            };
            let v = t.get(&format!("optimizer/v/{name}")).ok_or_else(|| {
                Error::Invalid(format!(
                    "checkpoint has optimizer/m/{name} but no optimizer/v/{name}"
                ))
            })?;
            if m.len() != v.len() {
                return Err(Error::Invalid(format!(
                    "optimizer/m/{name} has {} values but optimizer/v/{name} {}",
                    m.len(),
                    v.len()
                )));
            }
            super::check_state_len(t, k, name, m.len())?;
            self.moments.insert(
                name.to_string(),
                (m.iter().copied().collect(), v.iter().copied().collect()),
            );
        }
        Ok(())
    }
}
