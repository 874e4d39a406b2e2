//! Direct convolution for layers with few input channels (the stem), where im2col's GEMM would
//! have a tiny inner dimension. Only where the CPU has the vector kernels of
//! [`direct_x86`](super::direct_x86) and `Cout` fits their width; [`applies`] says when.
//! Parallel over output rows. Backward uses im2col's.

use super::ConvGeom;
use crate::Activation;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Input channels up to which the direct kernel beats im2col + GEMM.
const MAX_CIN: usize = 4;

/// Whether [`forward`] runs on this geometry and CPU.
pub fn applies(g: &ConvGeom) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::simd::{level, Level};
        let small = g.cin <= MAX_CIN && g.kh <= super::MAX_TAPS;
        match level() {
            Level::Avx512 | Level::Avx2 => small && g.cout.is_multiple_of(8),
            Level::Generic => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = g;
        false
    }
}

/// `y = act(conv(x, w) + bias)` into slots not yet written ([`crate::buffer::uninit`], or
/// [`crate::buffer::as_uninit`] of floats): each is written. Returns `false` (and writes nothing)
/// where [`applies`] is false.
pub fn forward(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) -> bool {
    g.check_slices("direct forward", false, x.len(), w.len(), bias, y.len());
    if !applies(g) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use super::direct_x86::{row_avx2, row_avx512};
        use crate::simd::{level, Level};
        let zeros = vec![0.0f32; g.cout];
        let bias = bias.unwrap_or(&zeros);
        let wide = level() == Level::Avx512 && g.cout.is_multiple_of(16);
        y.par_chunks_mut(g.cols.out * g.cout)
            .enumerate()
            .for_each(|(row, out)| {
                if wide {
                    // SAFETY: AVX-512 detected, `cout` a multiple of 16; sizes asserted inside.
                    unsafe { row_avx512(g, x, w, bias, act, row, out) }
                } else {
                    // SAFETY: `applies` checked AVX2 + FMA and `cout` a multiple of 8.
                    unsafe { row_avx2(g, x, w, bias, act, row, out) }
                }
            });
    }
    true
}
