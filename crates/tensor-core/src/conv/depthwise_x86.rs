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

/// Where one output row `row` (image-major) of a depthwise row kernel reads: its image in `x`, the
/// output row within the image, and the input columns `before..last` of the padded row. Asserts
/// what the kernels rely on: `C` a multiple of `lanes`, and `x`, `w`, `bias` and the output row
/// (`out_len`) as long as `g` says.
struct RowAt {
    img: *const f32,
    oy: usize,
    before: usize,
    last: usize,
}

fn row_at(
    g: &ConvGeom,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out_len: usize,
    row: usize,
    lanes: usize,
) -> RowAt {
    let (c, oh, iw) = (g.cin, g.rows.out, g.cols.input);
    let img_in = g.rows.input * iw * c;
    let (n, oy) = (row / oh, row % oh);
    assert!(c % lanes == 0 && (n + 1) * img_in <= x.len() && out_len == g.cols.out * c);
    assert!(w.len() == g.kh * g.kw * c && bias.len() == c && g.kh <= MAX_TAPS);
    RowAt {
        img: x[n * img_in..].as_ptr(),
        oy,
        before: g.cols.before,
        last: iw + g.cols.before,
    }
}

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
            let (c, iw, s) = (g.cin, g.cols.input, g.stride);
            let RowAt {
                img,
                oy,
                before,
                last,
            } = row_at(g, x, w, bias, out.len(), row, L);
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

/// Where the pixels of a 3x3 row kernel read and write: each kernel row's input row (from the
/// channel block, `None` in the padding), the output row, the channel block and the geometry.
struct Pixels {
    rows: [Option<*const f32>; 3],
    o: *mut f32,
    cb: usize,
    c: usize,
    s: usize,
    before: usize,
}

macro_rules! row3x3_kernel {
    ($name:ident, $feat:literal, $lanes:expr, $pixels:expr, $v:ty, $load:ident, $store:ident, $mul:ident, $add:ident, $max:ident, $min:ident, $set1:ident) => {
        /// One output row `row` (image-major) of `act(dwconv(x, w) + bias)` for a 3x3 kernel, one
        /// channel block at a time: its nine weight vectors stay in registers while the pixels
        /// whose taps all land inside the input are summed several at a time, side by side (one
        /// load a tap, and independent sums, so the adds do not wait on one another). A pixel
        /// whose taps cross the padding is summed alone. Every sum is in the reference's order,
        /// with the same separate multiply and add a tap as the general row.
        ///
        /// # Safety
        /// As for the general row; `g.kh` and `g.kw` must be 3 (checked with an assert).
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
            const P: usize = $pixels;
            let (c, ow, iw, s) = (g.cin, g.cols.out, g.cols.input, g.stride);
            assert!(g.kh == 3 && g.kw == 3 && s > 0);
            let RowAt {
                img,
                oy,
                before,
                last,
            } = row_at(g, x, w, bias, out.len(), row, L);
            // The pixels `lo..hi` read taps 0..3 all inside the input: ox*s >= before and
            // ox*s + 3 <= last.
            let lo = before.div_ceil(s);
            let hi = if last >= 3 {
                ((last - 3) / s + 1).min(ow)
            } else {
                0
            };
            let o = out.as_mut_ptr().cast::<f32>();
            for cb in (0..c).step_by(L) {
                // Loops, not closures: a closure would not inherit the target features.
                let bv = $load(bias.as_ptr().add(cb));
                let mut wv: [$v; 9] = [bv; 9];
                for (t, v) in wv.iter_mut().enumerate() {
                    *v = $load(w.as_ptr().add(t * c + cb));
                }
                // Each kernel row's input row (from channel `cb`), or `None` in the padding.
                let mut rows: [Option<*const f32>; 3] = [None; 3];
                for (ky, r) in rows.iter_mut().enumerate() {
                    *r = ConvGeom::tap(&g.rows, s, oy, ky).map(|iy| img.add(iy * iw * c + cb));
                }
                let at = Pixels {
                    rows,
                    o,
                    cb,
                    c,
                    s,
                    before,
                };
                let mut ox = 0;
                while ox < ow {
                    let inside = if (lo..hi).contains(&ox) { hi - ox } else { 0 };
                    ox += if inside >= P {
                        pixels::<P>(&at, &wv, bv, ox, act)
                    } else if inside >= P / 2 {
                        pixels::<{ P / 2 }>(&at, &wv, bv, ox, act)
                    } else if inside >= 1 {
                        pixels::<1>(&at, &wv, bv, ox, act)
                    } else {
                        let kx_lo = before.saturating_sub(ox * s);
                        let kx_hi = 3.min(last.saturating_sub(ox * s));
                        let mut acc = bv;
                        for (ky, xr) in rows.iter().enumerate() {
                            let Some(xr) = *xr else { continue };
                            for kx in kx_lo..kx_hi {
                                let ix = ox * s + kx - before;
                                acc = $add(acc, $mul($load(xr.add(ix * c)), wv[ky * 3 + kx]));
                            }
                        }
                        $store(o.add(ox * c + cb), activate(acc, act));
                        1
                    };
                }
            }

            /// `Q` pixels from `ox` on whose taps all land inside the input, summed side by
            /// side and stored; returns `Q`.
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn pixels<const Q: usize>(
                at: &Pixels,
                wv: &[$v; 9],
                bv: $v,
                ox: usize,
                act: Activation,
            ) -> usize {
                use std::arch::x86_64::*;
                let (c, s) = (at.c, at.s);
                let mut acc = [bv; Q];
                for (ky, xr) in at.rows.iter().enumerate() {
                    let Some(xr) = *xr else { continue };
                    let (w0, w1, w2) = (wv[ky * 3], wv[ky * 3 + 1], wv[ky * 3 + 2]);
                    // One pointer stepping a pixel at a time, the taps at fixed offsets from it
                    // (the addresses stay simple: no registers spilled to hold them).
                    let mut xp = xr.add((ox * s - at.before) * c);
                    for a in acc.iter_mut() {
                        *a = $add(*a, $mul($load(xp), w0));
                        *a = $add(*a, $mul($load(xp.add(c)), w1));
                        *a = $add(*a, $mul($load(xp.add(2 * c)), w2));
                        xp = xp.add(s * c);
                    }
                }
                let mut op = at.o.add(ox * c + at.cb);
                for &a in acc.iter() {
                    $store(op, activate(a, act));
                    op = op.add(c);
                }
                Q
            }

            /// The activation, max/min with the constant first: a NaN sum stays NaN, like `clamp`.
            #[target_feature(enable = $feat)]
            #[inline]
            fn activate(a: $v, act: Activation) -> $v {
                use std::arch::x86_64::*;
                match act {
                    Activation::Linear => a,
                    Activation::Relu => $max($set1(0.0), a),
                    Activation::Relu6 => $min($set1(6.0), $max($set1(0.0), a)),
                }
            }
        }
    };
}

row3x3_kernel!(
    row3x3_avx512,
    "avx512f",
    16,
    8,
    __m512,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_set1_ps
);
row3x3_kernel!(
    row3x3_avx2,
    "avx2,fma",
    8,
    4,
    __m256,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_set1_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Padding;

    /// The 3x3 rows equal the general rows bit for bit on real values (their sums are in the same
    /// order): widths that leave groups of 8, 4 and single pixels, both strides, every padding,
    /// several channel blocks, each activation; AVX-512 and AVX2 where the CPU has them.
    #[test]
    fn rows_3x3_equal_the_general_rows_bit_for_bit() {
        let avx512 = is_x86_feature_detected!("avx512f");
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        assert!(avx2, "x86-64 test machines have AVX2 and FMA");
        let pads = [
            Padding::Same,
            Padding::Valid,
            Padding::Explicit {
                top: 0,
                bottom: 1,
                left: 0,
                right: 1,
            },
            Padding::Explicit {
                top: 1,
                bottom: 0,
                left: 2,
                right: 0,
            },
        ];
        let val = |i: usize, k: usize| ((i * k + 5) % 23) as f32 * 0.137 - 1.3;
        let mut checked = 0;
        for (c, width) in [(8, 3), (16, 1), (24, 30), (32, 13), (48, 21), (64, 7)] {
            for stride in [1, 2] {
                for padding in pads {
                    let (h, act) = (5, [Activation::Linear, Activation::Relu6][c % 3 % 2]);
                    let shape = [1, h, width, c];
                    let Ok(g) = ConvGeom::depthwise("t", &shape, &[3, 3, c, 1], stride, padding)
                    else {
                        continue;
                    };
                    let x: Vec<f32> = (0..h * width * c).map(|i| val(i, 7)).collect();
                    let w: Vec<f32> = (0..9 * c).map(|i| val(i, 3)).collect();
                    let b: Vec<f32> = (0..c).map(|i| val(i, 11)).collect();
                    let len = g.cols.out * c;
                    for row in 0..g.rows.out {
                        let at =
                            format!("c {c} width {width} stride {stride} {padding:?} row {row}");
                        type Row = unsafe fn(
                            &ConvGeom,
                            &[f32],
                            &[f32],
                            &[f32],
                            Activation,
                            usize,
                            &mut [MaybeUninit<f32>],
                        );
                        let run = |f: Row| {
                            let mut out = vec![f32::NAN; len];
                            // SAFETY: features detected above; `c` is a multiple of the lanes;
                            // the slices have the sizes `g` gives.
                            unsafe {
                                f(&g, &x, &w, &b, act, row, crate::buffer::as_uninit(&mut out))
                            };
                            out
                        };
                        if avx512 && c % 16 == 0 {
                            let general = run(row_avx512);
                            assert_eq!(general, run(row3x3_avx512), "AVX-512, {at}");
                        }
                        let general = run(row_avx2);
                        assert_eq!(general, run(row3x3_avx2), "AVX2, {at}");
                        assert!(general.iter().all(|v| v.is_finite()), "{at}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100, "{checked} rows");
    }
}
