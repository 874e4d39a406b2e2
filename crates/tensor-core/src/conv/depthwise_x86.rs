//! The depthwise forward row with explicit x86 vectors (AVX-512: 16 lanes, AVX2 + FMA: 8 lanes).
//!
//! Per output pixel and channel block, one vector accumulator lives in a register through all the
//! taps and is stored once with the activation applied. (The portable version in `depthwise.rs`
//! computes the same sums; LLVM keeps its `[f32; L]` accumulator on the stack, and the
//! store-to-load chain through memory on every tap made it 2-3x slower.)
//!
//! The sums are in the reference's tap order, starting from the bias, with a separate multiply and
//! add per tap (not fused): the same roundings as the portable kernel and as before, which is what
//! keeps the Keras training-step fixtures within their tight tolerances.

use super::{ConvGeom, Taps, MAX_TAPS};
use crate::Activation;
use std::mem::MaybeUninit;

macro_rules! row_kernel {
    ($name:ident, $feat:literal, $lanes:expr, $v:ty, $load:ident, $store:ident, $mul:ident, $add:ident, $max:ident, $min:ident, $set1:ident) => {
        /// One output row `row` (image-major) of `act(dwconv(x, w) + bias)`.
        ///
        /// # Safety
        /// The CPU must support the target features; `g.cin` must be a multiple of the lane count,
        /// `x`, `w`, `bias` and `out` must have the sizes `g` gives (checked with asserts).
        #[target_feature(enable = $feat)]
        pub unsafe fn $name(
            g: &ConvGeom,
            x: &[f32],
            w: &[f32],
            bias: &[f32],
            act: Activation,
            row: usize,
            out: &mut [MaybeUninit<f32>],
        ) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let (c, oh, iw, s) = (g.cin, g.rows.out, g.cols.input, g.stride);
            let img_in = g.rows.input * iw * c;
            let (n, oy) = (row / oh, row % oh);
            assert!(c % L == 0 && (n + 1) * img_in <= x.len() && out.len() == g.cols.out * c);
            assert!(w.len() == g.kh * g.kw * c && bias.len() == c && g.kh <= MAX_TAPS);
            let img = x.as_ptr().add(n * img_in);
            let (before, last) = (g.cols.before, iw + g.cols.before);
            // The input rows this output row reads, with their tap index.
            let rows = Taps::new(g.kh, |ky| ConvGeom::tap(&g.rows, s, oy, ky));
            let (zero, six) = ($set1(0.0), $set1(6.0));
            for ox in 0..g.cols.out {
                let kx_lo = before.saturating_sub(ox * s);
                let kx_hi = g.kw.min(last.saturating_sub(ox * s));
                // Stores only: every slot of the row is written, none read.
                let o = out.as_mut_ptr().cast::<f32>().add(ox * c);
                for cb in (0..c).step_by(L) {
                    let mut acc: $v = $load(bias.as_ptr().add(cb));
                    for &(ky, iy) in rows.as_slice() {
                        let xr = img.add(iy * iw * c + cb);
                        let wr = w.as_ptr().add(ky * g.kw * c + cb);
                        for kx in kx_lo..kx_hi {
                            let ix = ox * s + kx - before;
                            acc = $add(acc, $mul($load(xr.add(ix * c)), $load(wr.add(kx * c))));
                        }
                    }
                    // max/min with the constant first: a NaN accumulator stays NaN, like `clamp`.
                    acc = match act {
                        Activation::Linear => acc,
                        Activation::Relu => $max(zero, acc),
                        Activation::Relu6 => $min(six, $max(zero, acc)),
                    };
                    $store(o.add(cb), acc);
                }
            }
        }
    };
}

macro_rules! backward_kernels {
    ($dx:ident, $dw:ident, $feat:literal, $lanes:expr, $v:ty, $load:ident, $store:ident, $mul:ident, $add:ident, $zero:ident) => {
        /// One input row `row` (image-major) of the input gradient: every tap that reaches it.
        ///
        /// # Safety
        /// As for the forward rows; `out` is one row of `dx` (`iw * C`).
        #[target_feature(enable = $feat)]
        pub unsafe fn $dx(
            g: &ConvGeom,
            dy: &[f32],
            w: &[f32],
            row: usize,
            out: &mut [MaybeUninit<f32>],
        ) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let (c, ih, iw, s) = (g.cin, g.rows.input, g.cols.input, g.stride);
            let (ow, img_out) = (g.cols.out, g.rows.out * g.cols.out * c);
            let (n, iy) = (row / ih, row % ih);
            assert!(c % L == 0 && (n + 1) * img_out <= dy.len() && out.len() == iw * c);
            assert!(w.len() == g.kh * g.kw * c && g.kh <= MAX_TAPS && g.kw <= MAX_TAPS);
            let img = dy.as_ptr().add(n * img_out);
            let rows = Taps::new(g.kh, |ky| ConvGeom::out_of(&g.rows, s, iy, ky));
            for ix in 0..iw {
                let cols = Taps::new(g.kw, |kx| ConvGeom::out_of(&g.cols, s, ix, kx));
                for cb in (0..c).step_by(L) {
                    let mut acc: $v = $zero();
                    for &(ky, oy) in rows.as_slice() {
                        for &(kx, ox) in cols.as_slice() {
                            let d = $load(img.add((oy * ow + ox) * c + cb));
                            let k = $load(w.as_ptr().add((ky * g.kw + kx) * c + cb));
                            acc = $add(acc, $mul(d, k));
                        }
                    }
                    $store(out.as_mut_ptr().cast::<f32>().add(ix * c + cb), acc);
                }
            }
        }

        /// The weight gradient of output rows `rows` (image-major), added into `acc` (`kh*kw*C`):
        /// one tap and channel block at a time, its sum kept in a register over all the rows.
        ///
        /// # Safety
        /// As for the forward rows.
        #[target_feature(enable = $feat)]
        pub unsafe fn $dw(
            g: &ConvGeom,
            x: &[f32],
            dy: &[f32],
            rows: std::ops::Range<usize>,
            acc: &mut [f32],
        ) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let (c, oh, ow, iw, s) = (g.cin, g.rows.out, g.cols.out, g.cols.input, g.stride);
            let img_in = g.rows.input * iw * c;
            assert!(c % L == 0 && acc.len() == g.kh * g.kw * c);
            assert!(
                rows.end * ow * c <= dy.len() && rows.end.div_ceil(oh.max(1)) * img_in <= x.len()
            );
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    // Output columns whose tap kx lands inside the input.
                    let lo = g.cols.before.saturating_sub(kx).div_ceil(s);
                    let last = iw + g.cols.before;
                    let hi = if last > kx {
                        ((last - 1 - kx) / s + 1).min(ow)
                    } else {
                        0
                    };
                    for cb in (0..c).step_by(L) {
                        let mut a: $v = $zero();
                        for row in rows.clone() {
                            let (n, oy) = (row / oh, row % oh);
                            let Some(iy) = ConvGeom::tap(&g.rows, s, oy, ky) else {
                                continue;
                            };
                            let xr = x.as_ptr().add(n * img_in + iy * iw * c + cb);
                            let dr = dy.as_ptr().add(row * ow * c + cb);
                            for ox in lo..hi.max(lo) {
                                let ix = ox * s + kx - g.cols.before;
                                a = $add(a, $mul($load(xr.add(ix * c)), $load(dr.add(ox * c))));
                            }
                        }
                        let p = acc.as_mut_ptr().add((ky * g.kw + kx) * c + cb);
                        $store(p, $add($load(p), a));
                    }
                }
            }
        }
    };
}

backward_kernels!(
    dx_row_avx512,
    dw_rows_avx512,
    "avx512f",
    16,
    __m512,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_setzero_ps
);
backward_kernels!(
    dx_row_avx2,
    dw_rows_avx2,
    "avx2,fma",
    8,
    __m256,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_setzero_ps
);

row_kernel!(
    row_avx512,
    "avx512f",
    16,
    __m512,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_set1_ps
);
row_kernel!(
    row_avx2,
    "avx2,fma",
    8,
    __m256,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_set1_ps
);
