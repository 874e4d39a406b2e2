//! Direct convolution for few input channels (the stem: 3x3x3 -> 32), x86 vectors over output
//! channels. im2col would build a `[pixels, kh*kw*cin]` matrix with `K = 27`, too thin for a GEMM
//! to pay for its packing; here each tap is one broadcast input value times one weight vector,
//! eight output pixels (AVX2: four) by two vectors of output channels at a time, so a weight load
//! serves eight fused multiply-adds and a broadcast two.
//!
//! Arithmetic as im2col + matrixmultiply's FMA kernel does it: taps summed from zero in
//! `(ky, kx, ci)` order with fused multiply-adds, then the bias added. Keeping those roundings keeps
//! the Keras training-step fixtures (whose frozen stem feeds everything after it) within tolerance.

use super::{ConvGeom, Taps, MAX_TAPS};
use crate::Activation;
use std::mem::MaybeUninit;

/// What every tile of one output row reads: the image, its tap rows, the first pixel's input
/// column offset, the sizes, the weights `[kh, kw, cin, cout]`, the bias and the activation.
struct Tile<'a> {
    img: *const f32,
    rows: &'a [(usize, usize)],
    col: usize,
    iw: usize,
    cin: usize,
    kw: usize,
    s: usize,
    cout: usize,
    w: *const f32,
    bias: *const f32,
    act: Activation,
}

macro_rules! row_kernel {
    ($name:ident, $tile:ident, $feat:literal, $lanes:expr, $pixels:expr, $v:ty, $load:ident, $store:ident, $fma:ident, $add:ident, $zero:ident, $max:ident, $min:ident, $set1:ident) => {
        /// `P` output pixels by `NB` vectors of output channels from channel `cb` on, taps summed
        /// from zero in `(ky, kx, ci)` order, then the bias added and the activation applied.
        ///
        /// # Safety
        /// The CPU must support the target features; the tile's pixels read only inside the
        /// image (the caller checks), and `out` has `P` pixels of `cout` slots from `cb` on.
        #[target_feature(enable = $feat)]
        #[inline]
        unsafe fn $tile<const P: usize, const NB: usize>(t: &Tile, cb: usize, out: *mut f32) {
            use std::arch::x86_64::*;
            const L: usize = $lanes;
            let (cin, cout, s) = (t.cin, t.cout, t.s);
            let mut acc = [[$zero(); NB]; P];
            for &(ky, iy) in t.rows {
                let xr = t.img.add(iy * t.iw * cin + t.col);
                for kx in 0..t.kw {
                    for ci in 0..cin {
                        let k = ((ky * t.kw + kx) * cin + ci) * cout + cb;
                        let mut wv = [$zero(); NB];
                        for (b, v) in wv.iter_mut().enumerate() {
                            *v = $load(t.w.add(k + b * L));
                        }
                        for (q, a) in acc.iter_mut().enumerate() {
                            let xv = $set1(*xr.add((q * s + kx) * cin + ci));
                            for b in 0..NB {
                                a[b] = $fma(xv, wv[b], a[b]);
                            }
                        }
                    }
                }
            }
            let (zero, six) = ($set1(0.0), $set1(6.0));
            for b in 0..NB {
                let bv = $load(t.bias.add(cb + b * L));
                for (q, a) in acc.iter().enumerate() {
                    let v = $add(a[b], bv);
                    // max/min with the constant first: a NaN stays NaN, like `clamp`.
                    let v = match t.act {
                        Activation::Linear => v,
                        Activation::Relu => $max(zero, v),
                        Activation::Relu6 => $min(six, $max(zero, v)),
                    };
                    $store(out.add(q * cout + b * L), v);
                }
            }
        }

        /// One output row `row` (image-major) of `act(conv(x, w) + bias)` into `out`'s slots,
        /// each written (only stored to, never read).
        ///
        /// # Safety
        /// The CPU must support the target features; `g.cout` must be a multiple of the lane
        /// count; the slices must have the sizes `g` gives (checked with asserts).
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
            let (cin, cout, oh, iw, s) = (g.cin, g.cout, g.rows.out, g.cols.input, g.stride);
            let (ow, kw) = (g.cols.out, g.kw);
            let img_in = g.rows.input * iw * cin;
            let (n, oy) = (row / oh, row % oh);
            assert!(cout % L == 0 && (n + 1) * img_in <= x.len() && out.len() == ow * cout);
            assert!(w.len() == g.kh * kw * cin * cout && bias.len() == cout && g.kh <= MAX_TAPS);
            let img = x.as_ptr().add(n * img_in);
            let rows = Taps::new(g.kh, |ky| ConvGeom::tap(&g.rows, s, oy, ky));
            let rows = rows.as_slice();
            let (before, last) = (g.cols.before, iw + g.cols.before);
            // Every kx tap of output column `ox` lands inside the input.
            let inside = |ox: usize| before <= ox * s && ox * s + kw <= last;
            let (zero, six) = ($set1(0.0), $set1(6.0));
            let finish = |acc: $v| match act {
                // max/min with the constant first: a NaN stays NaN, like `clamp`.
                Activation::Linear => acc,
                Activation::Relu => $max(zero, acc),
                Activation::Relu6 => $min(six, $max(zero, acc)),
            };
            let mut ox = 0;
            while ox < ow {
                if ox + P <= ow && inside(ox) && inside(ox + P - 1) {
                    // Input column of the tile's first pixel, as an offset into a row.
                    let col = (ox * s - before) * cin;
                    let o = out.as_mut_ptr().cast::<f32>().add(ox * cout);
                    let t = Tile {
                        img,
                        rows,
                        col,
                        iw,
                        cin,
                        kw,
                        s,
                        cout,
                        w: w.as_ptr(),
                        bias: bias.as_ptr(),
                        act,
                    };
                    // SAFETY: the features are this function's own; `inside` holds for the tile's
                    // first and last pixel, so every tap reads inside the image; `ox + P <= ow`
                    // and `cb + NB * L <= cout`, so the stores stay in `out`.
                    if cout % (2 * L) == 0 {
                        for cb in (0..cout).step_by(2 * L) {
                            $tile::<P, 2>(&t, cb, o.add(cb));
                        }
                    } else {
                        for cb in (0..cout).step_by(L) {
                            $tile::<P, 1>(&t, cb, o.add(cb));
                        }
                    }
                    ox += P;
                } else {
                    let kx_lo = before.saturating_sub(ox * s);
                    let kx_hi = kw.min(last.saturating_sub(ox * s));
                    for cb in (0..cout).step_by(L) {
                        let mut acc = $zero();
                        for &(ky, iy) in rows {
                            for kx in kx_lo..kx_hi {
                                let ix = ox * s + kx - before;
                                let xp = img.add((iy * iw + ix) * cin);
                                for ci in 0..cin {
                                    let k = ((ky * kw + kx) * cin + ci) * cout + cb;
                                    acc = $fma($set1(*xp.add(ci)), $load(w.as_ptr().add(k)), acc);
                                }
                            }
                        }
                        let v = finish($add(acc, $load(bias.as_ptr().add(cb))));
                        $store(out.as_mut_ptr().cast::<f32>().add(ox * cout + cb), v);
                    }
                    ox += 1;
                }
            }
        }
    };
}

row_kernel!(
    row_avx512,
    tile_avx512,
    "avx512f",
    16,
    8,
    __m512,
    _mm512_loadu_ps,
    _mm512_storeu_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_setzero_ps,
    _mm512_max_ps,
    _mm512_min_ps,
    _mm512_set1_ps
);
row_kernel!(
    row_avx2,
    tile_avx2,
    "avx2,fma",
    8,
    4,
    __m256,
    _mm256_loadu_ps,
    _mm256_storeu_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_setzero_ps,
    _mm256_max_ps,
    _mm256_min_ps,
    _mm256_set1_ps
);
