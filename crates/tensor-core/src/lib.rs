//! `tensor-core`: the numeric floor of the stack.
//!
//! Every tensor is `f32`, activations are NHWC and convolution kernels are Keras's HWIO
//! (depthwise: `(kh, kw, C, 1)`, dense: `(in, out)`). Each kernel comes as a plain
//! reference (`*::reference`) and a fast version; property tests hold one to the other.
//! Forward and backward of each op sit side by side in the same file.

pub mod activation;
pub mod add;
pub mod aligned;
pub mod batch_norm;
pub mod buffer;
pub mod conv;
pub mod dense;
pub mod error;
pub mod fold;
pub mod gemm;
#[cfg(target_arch = "x86_64")]
pub mod gemm_x86;
pub mod int8;
pub mod inverted_residual;
pub mod padding;
pub mod panels;
pub mod pool;
pub mod simd;
pub mod softmax;

pub use activation::Activation;
pub use error::{Error, Result};
pub use padding::{PadDim, Padding};

/// Checks that `got` equals `expected`, naming the op in the error.
pub fn check_shape(op: &'static str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}
