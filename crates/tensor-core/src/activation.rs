//! Element-wise activations: forward, and backward from the saved output.

use kind::Kind;
use rayon::prelude::*;

const PAR_MIN: usize = 1 << 15;

/// The activations MobileNetV2 and its head use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Activation {
    #[default]
    Linear,
    Relu,
    /// `min(max(x, 0), 6)`, Keras's `ReLU(6.)`.
    Relu6,
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Activation::Linear => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }

    /// The derivative, computed from the activation's *output* `y` (TensorFlow's rule: zero at the kinks).
    #[inline(always)]
    pub fn grad_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Linear => 1.0,
            Activation::Relu => (y > 0.0) as u8 as f32,
            Activation::Relu6 => ((y > 0.0) & (y < 6.0)) as u8 as f32,
        }
    }

    /// Applies the activation in place.
    pub fn apply_in_place(self, v: &mut [f32]) {
        if self == Activation::Linear {
            return;
        }
        let body = |c: &mut [f32]| {
            crate::per_activation!(self, A => crate::simd::vectorised(
                #[inline(always)]
                || c.iter_mut().for_each(|x| *x = A::apply(*x))
            ))
        };
        if v.len() >= PAR_MIN {
            v.par_chunks_mut(PAR_MIN).for_each(body);
        } else {
            body(v);
        }
    }
}

/// Each activation as its own type, so a kernel generic over [`kind::Kind`] is compiled once per
/// activation and its loop vectorises (a `match` on [`Activation`] per element keeps it scalar).
/// [`per_activation!`](crate::per_activation) turns an [`Activation`] value into one of them.
pub mod kind {
    /// An activation known at compile time; the same arithmetic as [`Activation`](super::Activation).
    pub trait Kind: Copy + Send + Sync + 'static {
        const ACT: super::Activation;
        #[inline(always)]
        fn apply(v: f32) -> f32 {
            Self::ACT.apply(v)
        }
        #[inline(always)]
        fn grad(y: f32) -> f32 {
            Self::ACT.grad_from_output(y)
        }
    }
    #[derive(Clone, Copy)]
    pub struct Linear;
    #[derive(Clone, Copy)]
    pub struct Relu;
    #[derive(Clone, Copy)]
    pub struct Relu6;
    impl Kind for Linear {
        const ACT: super::Activation = super::Activation::Linear;
    }
    impl Kind for Relu {
        const ACT: super::Activation = super::Activation::Relu;
    }
    impl Kind for Relu6 {
        const ACT: super::Activation = super::Activation::Relu6;
    }
}

/// Evaluates `$body` with the type `$A` standing for the activation `$act`
/// (one of [`activation::kind`](crate::activation::kind)'s types).
#[macro_export]
macro_rules! per_activation {
    ($act:expr, $A:ident => $body:expr) => {
        match $act {
            $crate::Activation::Linear => {
                type $A = $crate::activation::kind::Linear;
                $body
            }
            $crate::Activation::Relu => {
                type $A = $crate::activation::kind::Relu;
                $body
            }
            $crate::Activation::Relu6 => {
                type $A = $crate::activation::kind::Relu6;
                $body
            }
        }
    };
}

/// `y = act(x)`: one parallel pass (read `x`, write `y`).
pub fn forward(act: Activation, x: &[f32], y: &mut [f32]) {
    let body = |(y, x): (&mut [f32], &[f32])| {
        crate::per_activation!(act, A => crate::simd::vectorised(
            #[inline(always)]
            || {
                for (y, x) in y.iter_mut().zip(x) {
                    *y = A::apply(*x);
                }
            }
        ))
    };
    if x.len() >= PAR_MIN {
        y.par_chunks_mut(PAR_MIN)
            .zip(x.par_chunks(PAR_MIN))
            .for_each(body);
    } else {
        body((y, x));
    }
}

/// Output slots not yet written.
type Slots<'a> = &'a mut [std::mem::MaybeUninit<f32>];

/// `act(x)` into a new buffer, written once (no fill before it).
pub fn forward_new(act: Activation, x: &[f32]) -> Vec<f32> {
    let mut y = crate::buffer::uninit(x.len());
    let body = |(y, x): (Slots, &[f32])| {
        crate::per_activation!(act, A => crate::simd::vectorised(
            #[inline(always)]
            || {
                for (y, x) in y.iter_mut().zip(x) {
                    y.write(A::apply(*x));
                }
            }
        ))
    };
    y.par_chunks_mut(PAR_MIN)
        .zip(x.par_chunks(PAR_MIN))
        .for_each(body);
    // SAFETY: `y` and `x` have the same length and are cut into chunks of the same size, so the
    // loop above wrote every element of `y`.
    unsafe { crate::buffer::assume_init(y) }
}

/// `dy * act'(y)` into a new buffer, written once.
pub fn backward_new(act: Activation, y: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(
        y.len(),
        dy.len(),
        "activation backward: y and dy differ in length"
    );
    let mut dx = crate::buffer::uninit(y.len());
    let body = |(dx, (dy, y)): (Slots, (&[f32], &[f32]))| {
        crate::per_activation!(act, A => crate::simd::vectorised(
            #[inline(always)]
            || {
                for ((d, g), o) in dx.iter_mut().zip(dy).zip(y) {
                    d.write(g * A::grad(*o));
                }
            }
        ))
    };
    dx.par_chunks_mut(PAR_MIN)
        .zip(dy.par_chunks(PAR_MIN).zip(y.par_chunks(PAR_MIN)))
        .for_each(body);
    // SAFETY: `dx`, `dy` and `y` have the same length (checked above) and are cut into chunks of
    // the same size, so the loop wrote every element of `dx`.
    unsafe { crate::buffer::assume_init(dx) }
}

/// `dx = dy * act'(x)`, with the mask taken from the saved output `y`.
pub fn backward(act: Activation, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    let body = |(dx, (dy, y)): (&mut [f32], (&[f32], &[f32]))| {
        crate::per_activation!(act, A => crate::simd::vectorised(
            #[inline(always)]
            || {
                for ((d, g), o) in dx.iter_mut().zip(dy).zip(y) {
                    *d = g * A::grad(*o);
                }
            }
        ))
    };
    if y.len() >= PAR_MIN {
        dx.par_chunks_mut(PAR_MIN)
            .zip(dy.par_chunks(PAR_MIN).zip(y.par_chunks(PAR_MIN)))
            .for_each(body);
    } else {
        body((dx, (dy, y)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The written-once versions equal the in-place kernels, at sizes around the chunk size.
    #[test]
    fn new_buffers_equal_the_kernels_into_slices() {
        for len in [0, 5, PAR_MIN - 1, PAR_MIN, 3 * PAR_MIN + 7] {
            let x: Vec<f32> = (0..len).map(|i| (i % 17) as f32 - 5.0).collect();
            let dy: Vec<f32> = (0..len).map(|i| (i % 5) as f32 * 0.3).collect();
            for act in [Activation::Linear, Activation::Relu, Activation::Relu6] {
                let mut y = vec![0.0; len];
                forward(act, &x, &mut y);
                assert_eq!(forward_new(act, &x), y, "{act:?} {len}");
                let mut dx = vec![0.0; len];
                backward(act, &y, &dy, &mut dx);
                assert_eq!(backward_new(act, &y, &dy), dx, "{act:?} {len}");
            }
        }
    }

    #[test]
    fn relu6_clamps_and_masks() {
        let x = [-1.0, 0.5, 7.0, 6.0, 0.0];
        let mut y = [0.0; 5];
        forward(Activation::Relu6, &x, &mut y);
        assert_eq!(y, [0.0, 0.5, 6.0, 6.0, 0.0]);
        let mut dx = [0.0; 5];
        backward(Activation::Relu6, &y, &[1.0; 5], &mut dx);
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn relu_finite_difference() {
        let x = [-0.7f32, 0.3, 2.5, -3.0];
        let mut y = [0.0; 4];
        forward(Activation::Relu, &x, &mut y);
        let mut dx = [0.0; 4];
        backward(Activation::Relu, &y, &[1.0; 4], &mut dx);
        for i in 0..4 {
            let e = 1e-3;
            let fd =
                (Activation::Relu.apply(x[i] + e) - Activation::Relu.apply(x[i] - e)) / (2.0 * e);
            assert!((fd - dx[i]).abs() < 1e-3, "{i}: {fd} vs {}", dx[i]);
        }
    }
}
