//! Seeded initialisers with Keras's defaults.

use crate::Tensor;
use rand::{Rng, SeedableRng};

/// Glorot (Xavier) uniform: `U(-l, l)`, `l = sqrt(6 / (fan_in + fan_out))`; for a 2-D `[in, out]` kernel.
pub fn glorot_uniform(shape: &[usize], seed: u64) -> Tensor {
    let (fan_in, fan_out) = match shape {
        [i, o] => (*i, *o),
        _ => {
            let receptive: usize = shape[..shape.len().saturating_sub(2)].iter().product();
            (
                receptive * shape[shape.len() - 2],
                receptive * shape[shape.len() - 1],
            )
        }
    };
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Tensor::from_shape_fn(shape.to_vec(), |_| rng.gen_range(-limit..limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_bounded() {
        let a = glorot_uniform(&[256, 15], 7);
        assert_eq!(a, glorot_uniform(&[256, 15], 7));
        assert_ne!(a, glorot_uniform(&[256, 15], 8));
        let l = (6.0f32 / 271.0).sqrt();
        assert!(a.iter().all(|v| v.abs() <= l));
        assert!(a.iter().any(|v| v.abs() > l * 0.9), "uses the whole range");
    }
}
