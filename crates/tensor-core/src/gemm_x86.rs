//! Row-major GEMM for a narrow right-hand matrix, without packing (x86 AVX-512, and AVX2 + FMA):
//! the 1x1 convolutions of MobileNetV2, where `B` is the `Cin x Cout` weight matrix and `A` the
//! pixels. matrixmultiply copies all of `A` into panels first; with `K` as small as 16 that copy
//! costs as much as the multiply. Here each element of `A` is broadcast straight from its row and
//! multiplied into up to four vectors (AVX2: two) of a row of `B`, several rows of `C` at a time
//! (12 to 24 accumulators in registers; AVX2, with 16 registers, 12). Each output element is
//! summed from zero over `k` in order with fused multiply-adds, as matrixmultiply's kernel does.
//!
//! The kernel is written once ([`unpacked_kernel!`]) over each instruction set's few vector
//! operations ([`v512`], [`v256`]).

/// Values of `K` summed before they are added to `C`: matrixmultiply's `kc` for `f32` (its
/// default; the bit-for-bit test below holds the two to the same order for `K` above it).
const KC: usize = 256;

/// Where the kernel finds `B` (`k x n`) in its slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Row-major with row stride `ldb` (a block of columns of a wider matrix when `ldb > n`).
    Rows { ldb: usize },
    /// Column panels of one vector's width (the kernel's `L`; the last zero-padded), each `k`
    /// rows front to back: panel `p` holds columns `p * L..` at `p * k * L`
    /// ([`crate::panels::PackedB`]).
    Panels,
}

/// AVX-512F: 16 lanes, 32 registers, tails by `__mmask16`.
mod v512 {
    use crate::Activation;
    use std::arch::x86_64::*;
    pub type V = __m512;
    pub type Mask = __mmask16;
    pub const L: usize = 16;
    /// Vectors per column block (64 columns).
    pub const NB_MAX: usize = 4;
    /// Rows of `C` per micro-tile, by vectors per row: enough independent accumulators (at least
    /// 12) to cover the fused multiply-add latency, at most 24 so that they stay in registers.
    pub const fn rows_per_tile(nb: usize) -> usize {
        match nb {
            1 => 12,
            2 => 8,
            _ => 6,
        }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn mask(tail: usize) -> Mask {
        if tail >= L {
            0xffff
        } else {
            (1u16 << tail) - 1
        }
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn zero() -> V {
        _mm512_setzero_ps()
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn splat(p: *const f32) -> V {
        _mm512_set1_ps(*p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn load(p: *const f32) -> V {
        _mm512_loadu_ps(p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn load_masked(p: *const f32, m: Mask) -> V {
        _mm512_maskz_loadu_ps(m, p)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn store(p: *mut f32, v: V) {
        _mm512_storeu_ps(p, v)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub unsafe fn store_masked(p: *mut f32, m: Mask, v: V) {
        _mm512_mask_storeu_ps(p, m, v)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn fma(a: V, b: V, c: V) -> V {
        _mm512_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn add(a: V, b: V) -> V {
        _mm512_add_ps(a, b)
    }
    /// The activation as [`Activation::apply`] computes it: `max(v, 0)` gives 0 for NaN as
    /// `f32::max` does; ReLU6's max/min with the constant first keep a NaN, as `f32::clamp` does.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub fn activate(v: V, act: Activation) -> V {
        let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
        match act {
            Activation::Linear => v,
            Activation::Relu => _mm512_max_ps(v, zero),
            Activation::Relu6 => _mm512_min_ps(six, _mm512_max_ps(zero, v)),
        }
    }
}

/// AVX2 + FMA: 8 lanes, 16 registers, tails by a lane mask in a vector.
mod v256 {
    use crate::Activation;
    use std::arch::x86_64::*;
    pub type V = __m256;
    pub type Mask = __m256i;
    pub const L: usize = 8;
    /// Vectors per column block (16 columns).
    pub const NB_MAX: usize = 2;
    /// Rows of `C` per micro-tile: 12 accumulators, with the vectors of `B` and the broadcast
    /// value of `A`, in 16 registers.
    pub const fn rows_per_tile(nb: usize) -> usize {
        match nb {
            1 => 12,
            _ => 6,
        }
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn mask(tail: usize) -> Mask {
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(tail.min(L) as i32), lanes)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn zero() -> V {
        _mm256_setzero_ps()
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn splat(p: *const f32) -> V {
        _mm256_broadcast_ss(&*p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn load(p: *const f32) -> V {
        _mm256_loadu_ps(p)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn load_masked(p: *const f32, m: Mask) -> V {
        _mm256_maskload_ps(p, m)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn store(p: *mut f32, v: V) {
        _mm256_storeu_ps(p, v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn store_masked(p: *mut f32, m: Mask, v: V) {
        _mm256_maskstore_ps(p, m, v)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn fma(a: V, b: V, c: V) -> V {
        _mm256_fmadd_ps(a, b, c)
    }
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn add(a: V, b: V) -> V {
        _mm256_add_ps(a, b)
    }
    /// As [`super::v512::activate`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn activate(v: V, act: Activation) -> V {
        let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        match act {
            Activation::Linear => v,
            Activation::Relu => _mm256_max_ps(v, zero),
            Activation::Relu6 => _mm256_min_ps(six, _mm256_max_ps(zero, v)),
        }
    }
}

/// The unpacked GEMM over one instruction set's vector operations (`$isa`: [`v512`] or
/// [`v256`]), as the public function `$name` in a module of its own.
macro_rules! unpacked_kernel {
    ($module:ident, $name:ident, $isa:ident, $feat:literal) => {
        mod $module {
            use super::$isa::{self as v, Mask, L, NB_MAX, V};
            use super::{Layout, KC};
            use crate::gemm::Epilogue;
            use crate::Activation;
            use std::mem::MaybeUninit;

            /// `C = A * B`: `A` is `m x k` row-major with row stride `lda`, `B` is `k x n` as
            /// `layout` says, `C` is `m x n` (row stride `n`), then `epi` (bias, activation)
            /// applied in registers.
            /// `C` is only stored to, never read before it is written, so its slots need not be
            /// initialised: on return the first `m * n` are.
            ///
            /// # Safety
            /// The CPU must support the target features. The slices are checked against the
            /// extents.
            #[target_feature(enable = $feat)]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn $name(
                m: usize,
                k: usize,
                n: usize,
                a: &[f32],
                lda: usize,
                b: &[f32],
                layout: Layout,
                c: &mut [MaybeUninit<f32>],
                epi: Epilogue,
            ) {
                if m == 0 || n == 0 {
                    return;
                }
                // Floats from one row of `B` to the next, and from one vector of a row to the
                // next; where the vectors of column block `cb` start.
                let (row, vector, start): (usize, usize, fn(usize, usize) -> usize) = match layout {
                    Layout::Rows { ldb } => {
                        assert!(ldb >= n && (k == 0 || b.len() >= (k - 1) * ldb + n));
                        (ldb, L, |cb, _| cb)
                    }
                    Layout::Panels => {
                        assert!(b.len() >= n.div_ceil(L) * k * L);
                        (L, k * L, |cb, k| cb / L * k * L)
                    }
                };
                assert!(lda >= k && a.len() >= (m - 1) * lda + k && c.len() >= m * n);
                assert!(
                    epi.bias.is_none_or(|b| b.len() == n),
                    "gemm: bias is not n long"
                );
                let mut cb = 0;
                while cb < n {
                    let width = (n - cb).min(NB_MAX * L);
                    let nb = width.div_ceil(L);
                    let tail = width - (nb - 1) * L;
                    let blk = Block {
                        k,
                        n,
                        lda,
                        row,
                        vector,
                        b0: start(cb, k),
                        cb,
                        mask: v::mask(tail),
                        bias: epi.bias.map_or(std::ptr::null(), |b| b.as_ptr()),
                        act: epi.act,
                    };
                    // Masked loads and stores only where the last vector is partial: AVX2's
                    // `vmaskmovps` is slow on some CPUs (a store is microcoded on AMD Zen 2).
                    match (nb, tail < L) {
                        (1, false) => rows::<1, { v::rows_per_tile(1) }, false>(&blk, m, a, b, c),
                        (1, true) => rows::<1, { v::rows_per_tile(1) }, true>(&blk, m, a, b, c),
                        (2, false) => rows::<2, { v::rows_per_tile(2) }, false>(&blk, m, a, b, c),
                        (2, true) => rows::<2, { v::rows_per_tile(2) }, true>(&blk, m, a, b, c),
                        (3, false) => rows::<3, { v::rows_per_tile(3) }, false>(&blk, m, a, b, c),
                        (3, true) => rows::<3, { v::rows_per_tile(3) }, true>(&blk, m, a, b, c),
                        (_, false) => rows::<4, { v::rows_per_tile(4) }, false>(&blk, m, a, b, c),
                        (_, true) => rows::<4, { v::rows_per_tile(4) }, true>(&blk, m, a, b, c),
                    }
                    cb += width;
                }
            }

            /// One column block: columns `cb..cb + L * NB` (the last vector masked).
            #[derive(Clone, Copy)]
            struct Block {
                k: usize,
                n: usize,
                lda: usize,
                /// `B`'s strides ([`Layout`]) and the block's first float in it.
                row: usize,
                vector: usize,
                b0: usize,
                cb: usize,
                mask: Mask,
                /// The bias (`n` floats) or null, and the activation: applied as the last chunk
                /// is stored.
                bias: *const f32,
                act: Activation,
            }

            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn rows<const NB: usize, const R: usize, const MASKED: bool>(
                blk: &Block,
                m: usize,
                a: &[f32],
                b: &[f32],
                c: &mut [MaybeUninit<f32>],
            ) {
                let mut r = 0;
                while r + R <= m {
                    tile::<NB, R, MASKED>(blk, r, a, b, c);
                    r += R;
                }
                while r < m {
                    tile::<NB, 1, MASKED>(blk, r, a, b, c);
                    r += 1;
                }
            }

            /// Rows `r0..r0 + RR` of the column block (its last vector masked when `MASKED`).
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn tile<const NB: usize, const RR: usize, const MASKED: bool>(
                blk: &Block,
                r0: usize,
                a: &[f32],
                b: &[f32],
                c: &mut [MaybeUninit<f32>],
            ) {
                let Block {
                    k,
                    n,
                    lda,
                    row,
                    vector,
                    b0,
                    cb,
                    mask,
                    bias,
                    act,
                } = *blk;
                let bp = b.as_ptr().add(b0);
                let ap = a.as_ptr().add(r0 * lda);
                let cp = c.as_mut_ptr().cast::<f32>().add(r0 * n + cb);
                // `K` in chunks of `KC`, as matrixmultiply: the first chunk's sums are stored,
                // each later chunk's (summed from zero) added to them. Stores first, so a slot is
                // written whether or not it held a float before; the adds read only what the
                // first chunk stored.
                let mut k0 = 0;
                loop {
                    let kc = (k - k0).min(KC);
                    let bk = bp.add(k0 * row);
                    let acc = chunk::<NB, RR, MASKED>(ap.add(k0), lda, bk, row, vector, kc, mask);
                    let last = k0 + kc >= k;
                    for (q, row) in acc.iter().enumerate() {
                        for (j, &s) in row.iter().enumerate() {
                            let p = cp.add(q * n + j * L);
                            let part = MASKED && j + 1 == NB;
                            let get = |p: *const f32| {
                                if part {
                                    v::load_masked(p, mask)
                                } else {
                                    v::load(p)
                                }
                            };
                            let mut s = if k0 == 0 { s } else { v::add(get(p), s) };
                            if last {
                                if !bias.is_null() {
                                    s = v::add(s, get(bias.add(cb + j * L)));
                                }
                                s = v::activate(s, act);
                            }
                            if part {
                                v::store_masked(p, mask, s);
                            } else {
                                v::store(p, s);
                            }
                        }
                    }
                    k0 += kc;
                    if last {
                        break;
                    }
                }
            }

            /// The sums over `kc` values of `K` (from zero, in order) of `RR` rows of `A` at `ap`
            /// (row stride `lda`) times the `NB` vectors of `B`'s rows at `bp` (rows `row`
            /// floats apart, vectors `vector`), the last one masked.
            #[target_feature(enable = $feat)]
            #[inline]
            #[allow(clippy::too_many_arguments)]
            unsafe fn chunk<const NB: usize, const RR: usize, const MASKED: bool>(
                ap: *const f32,
                lda: usize,
                bp: *const f32,
                row: usize,
                vector: usize,
                kc: usize,
                mask: Mask,
            ) -> [[V; NB]; RR] {
                let mut acc = [[v::zero(); NB]; RR];
                for kk in 0..kc {
                    let brow = bp.add(kk * row);
                    let mut bv = [v::zero(); NB];
                    for (j, b) in bv.iter_mut().enumerate() {
                        *b = if MASKED && j + 1 == NB {
                            v::load_masked(brow.add(j * vector), mask)
                        } else {
                            v::load(brow.add(j * vector))
                        };
                    }
                    for (q, row) in acc.iter_mut().enumerate() {
                        let av = v::splat(ap.add(q * lda + kk));
                        for (s, &b) in row.iter_mut().zip(&bv) {
                            *s = v::fma(av, b, *s);
                        }
                    }
                }
                acc
            }
        }
        pub use $module::$name;
    };
}

unpacked_kernel!(k512, gemm_avx512, v512, "avx512f");
unpacked_kernel!(k256, gemm_avx2, v256, "avx2,fma");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::Epilogue;
    use crate::Activation;

    /// matrixmultiply's result for the same product (the packed path).
    fn packed(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
    ) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        // SAFETY: extents as given, row-major.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                lda as isize,
                1,
                b.as_ptr(),
                ldb as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        };
        c
    }

    /// Bit-identical to matrixmultiply wherever `gemm` picks it: every column-block width and
    /// tail (n = 1..70 and 96, 144), row counts that leave a remainder after the 6-row tiles, and
    /// row strides larger than `k` (of `A`) and than `n` (of `B`: a block of its columns).
    #[test]
    fn equals_matrixmultiply_bit_for_bit() {
        // The CPU's features, not `simd::level()`: each kernel is tested wherever it can run, also
        // when TENSOR_CORE_SIMD=generic keeps the dispatcher from choosing it.
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = is_x86_feature_detected!("avx512f");
        assert!(
            avx2 || avx512,
            "an x86-64 CPU without AVX2 + FMA: neither unpacked kernel can run here"
        );
        let val = |i: usize, s: usize| (((i * s + 3) % 17) as f32 - 8.0) * 0.37;
        let mut cases = vec![
            (13, 16, 96, 16, 96),
            (7, 144, 24, 150, 24),
            (6, 256, 144, 256, 144),
            (1, 1, 1, 1, 1),
            (9, 96, 288, 96, 576),
            (25, 160, 480, 160, 960),
            (13, 576, 96, 576, 96),
            (7, 960, 160, 960, 320),
            (6, 257, 33, 260, 33),
            (5, 1280, 64, 1280, 64),
        ];
        cases.extend((1..=70).map(|n| (11, 9, n, 12, n)));
        cases.extend((1..=20).map(|n| (7, 5, n, 5, n + 13)));
        for (i, (m, k, n, lda, ldb)) in cases.into_iter().enumerate() {
            let a: Vec<f32> = (0..m * lda).map(|i| val(i, 7)).collect();
            let b: Vec<f32> = (0..k * ldb).map(|i| val(i, 5)).collect();
            let bias: Vec<f32> = (0..n).map(|i| val(i, 3) * 4.0).collect();
            let act = [Activation::Linear, Activation::Relu, Activation::Relu6][i % 3];
            let at = format!("m {m} k {k} n {n} lda {lda} ldb {ldb}");
            let run = |wide: bool, epi| {
                let mut c = vec![f32::NAN; m * n];
                let slots = crate::buffer::as_uninit(&mut c);
                let rows = Layout::Rows { ldb };
                if wide {
                    // SAFETY: AVX-512 detected above.
                    unsafe { gemm_avx512(m, k, n, &a, lda, &b, rows, slots, epi) };
                } else {
                    // SAFETY: AVX2 and FMA detected above.
                    unsafe { gemm_avx2(m, k, n, &a, lda, &b, rows, slots, epi) };
                }
                c
            };
            let want = packed(m, k, n, &a, lda, &b, ldb);
            let epi = Epilogue {
                bias: Some(&bias),
                act,
            };
            let mut fused = want.clone();
            epi.apply(&mut fused, n);
            for (wide, have) in [(true, avx512), (false, avx2)] {
                if !have {
                    continue;
                }
                let isa = if wide { "AVX-512" } else { "AVX2" };
                assert_eq!(run(wide, Epilogue::NONE), want, "{isa} {at}");
                // The fused epilogue equals the separate pass over the product.
                assert_eq!(run(wide, epi), fused, "{isa} {at} {act:?}");
                // And `B` packed in panels of the kernel's vector width gives the same.
                let dense: Vec<f32> = b.chunks(ldb).flat_map(|r| &r[..n]).copied().collect();
                let width = if wide { 16 } else { 8 };
                let packed = crate::panels::PackedB::pack_at(&dense, k, n, width).unwrap();
                let mut c = vec![f32::NAN; m * n];
                let slots = crate::buffer::as_uninit(&mut c);
                let (p, layout) = (packed.view().data(), Layout::Panels);
                if wide {
                    // SAFETY: AVX-512 detected above.
                    unsafe { gemm_avx512(m, k, n, &a, lda, p, layout, slots, epi) };
                } else {
                    // SAFETY: AVX2 and FMA detected above.
                    unsafe { gemm_avx2(m, k, n, &a, lda, p, layout, slots, epi) };
                }
                assert_eq!(c, fused, "{isa} {at} panels");
            }
        }
    }
}
