//! Row-major GEMM for a narrow right-hand matrix, without packing (x86 AVX-512): the 1x1
//! convolutions of MobileNetV2, where `B` is the `Cin x Cout` weight matrix and `A` the pixels.
//! matrixmultiply copies all of `A` into panels first; with `K` as small as 16 that copy costs as
//! much as the multiply. Here each element of `A` is broadcast straight from its row and multiplied
//! into up to four 16-lane vectors of a row of `B`, six to twelve rows of `C` at a time (12 to 24
//! accumulators in registers). Each output element is summed from zero over `k` in order with fused multiply-adds,
//! as matrixmultiply's kernel does.

use crate::gemm::Epilogue;
use crate::Activation;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Lanes per vector.
const L: usize = 16;
/// Rows of `C` per micro-tile, by vectors per row: enough independent accumulators (at least 12)
/// to cover the fused multiply-add latency, at most 24 so that they stay in registers.
const fn rows_per_tile(nb: usize) -> usize {
    match nb {
        1 => 12,
        2 => 8,
        _ => 6,
    }
}
/// Vectors per column block (64 columns).
const NB_MAX: usize = 4;
/// Values of `K` summed before they are added to `C`: matrixmultiply's `kc` for `f32` (its
/// default; the bit-for-bit test below holds the two to the same order for `K` above it).
const KC: usize = 256;

/// `C = A * B`, all row-major: `A` is `m x k` with row stride `lda`, `B` is `k x n` with row
/// stride `ldb` (a block of columns of a wider matrix when `ldb > n`), `C` is `m x n` (row stride
/// `n`). `C` is only stored to, never read, so its slots need not
/// be initialised: on return the first `m * n` are.
///
/// # Safety
/// The CPU must support AVX-512F. The slices are checked against the extents.
#[target_feature(enable = "avx512f")]
pub unsafe fn gemm_avx512(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [MaybeUninit<f32>],
    epi: Epilogue,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(lda >= k && a.len() >= (m - 1) * lda + k && c.len() >= m * n);
    assert!(
        epi.bias.is_none_or(|b| b.len() == n),
        "gemm: bias is not n long"
    );
    assert!(ldb >= n && (k == 0 || b.len() >= (k - 1) * ldb + n));
    let mut cb = 0;
    while cb < n {
        let width = (n - cb).min(NB_MAX * L);
        let nb = width.div_ceil(L);
        let tail = width - (nb - 1) * L;
        let mask: __mmask16 = if tail == L {
            0xffff
        } else {
            (1u16 << tail) - 1
        };
        let blk = Block {
            k,
            n,
            lda,
            ldb,
            cb,
            mask,
            bias: epi.bias.map_or(std::ptr::null(), |b| b.as_ptr()),
            act: epi.act,
        };
        match nb {
            1 => rows::<1, { rows_per_tile(1) }>(&blk, m, a, b, c),
            2 => rows::<2, { rows_per_tile(2) }>(&blk, m, a, b, c),
            3 => rows::<3, { rows_per_tile(3) }>(&blk, m, a, b, c),
            _ => rows::<4, { rows_per_tile(4) }>(&blk, m, a, b, c),
        }
        cb += width;
    }
}

/// One column block: columns `cb..cb + 16 * NB` (the last vector masked).
#[derive(Clone, Copy)]
struct Block {
    k: usize,
    n: usize,
    lda: usize,
    ldb: usize,
    cb: usize,
    mask: __mmask16,
    /// The bias (`n` floats) or null, and the activation: applied as the last chunk is stored.
    bias: *const f32,
    act: Activation,
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows<const NB: usize, const R: usize>(
    blk: &Block,
    m: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [MaybeUninit<f32>],
) {
    let mut r = 0;
    while r + R <= m {
        tile::<NB, R>(blk, r, a, b, c);
        r += R;
    }
    while r < m {
        tile::<NB, 1>(blk, r, a, b, c);
        r += 1;
    }
}

/// Rows `r0..r0 + RR` of the column block.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile<const NB: usize, const RR: usize>(
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
        ldb,
        cb,
        mask,
        bias,
        act,
    } = *blk;
    let bp = b.as_ptr().add(cb);
    let ap = a.as_ptr().add(r0 * lda);
    let cp = c.as_mut_ptr().cast::<f32>().add(r0 * n + cb);
    // `K` in chunks of `KC`, as matrixmultiply: the first chunk's sums are stored, each later
    // chunk's (summed from zero) added to them. Stores first, so a slot is written whether or not
    // it held a float before; the adds read only what the first chunk stored.
    let mut k0 = 0;
    loop {
        let kc = (k - k0).min(KC);
        let acc = chunk::<NB, RR>(ap.add(k0), lda, bp.add(k0 * ldb), ldb, kc, mask);
        let last = k0 + kc >= k;
        for (q, row) in acc.iter().enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let p = cp.add(q * n + j * L);
                let m = if j + 1 == NB { mask } else { !0 };
                let mut v = if k0 == 0 {
                    v
                } else {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(m, p), v)
                };
                if last {
                    if !bias.is_null() {
                        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias.add(cb + j * L)));
                    }
                    v = activate(v, act);
                }
                _mm512_mask_storeu_ps(p, m, v);
            }
        }
        k0 += kc;
        if last {
            break;
        }
    }
}

/// The activation as [`Activation::apply`] computes it: `max(v, 0)` gives 0 for NaN as
/// `f32::max` does; ReLU6's max/min with the constant first keep a NaN, as `f32::clamp` does.
#[target_feature(enable = "avx512f")]
#[inline]
fn activate(v: __m512, act: Activation) -> __m512 {
    let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
    match act {
        Activation::Linear => v,
        Activation::Relu => _mm512_max_ps(v, zero),
        Activation::Relu6 => _mm512_min_ps(six, _mm512_max_ps(zero, v)),
    }
}

/// The sums over `kc` values of `K` (from zero, in order) of `RR` rows of `A` at `ap` (row stride
/// `lda`) times the `NB` vectors of `B`'s rows at `bp` (row stride `ldb`), the last one masked.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn chunk<const NB: usize, const RR: usize>(
    ap: *const f32,
    lda: usize,
    bp: *const f32,
    ldb: usize,
    kc: usize,
    mask: __mmask16,
) -> [[__m512; NB]; RR] {
    let mut acc = [[_mm512_setzero_ps(); NB]; RR];
    for kk in 0..kc {
        let brow = bp.add(kk * ldb);
        let mut bv = [_mm512_setzero_ps(); NB];
        for j in 0..NB {
            bv[j] = if j + 1 == NB {
                _mm512_maskz_loadu_ps(mask, brow.add(j * L))
            } else {
                _mm512_loadu_ps(brow.add(j * L))
            };
        }
        for q in 0..RR {
            let av = _mm512_set1_ps(*ap.add(q * lda + kk));
            for j in 0..NB {
                acc[q][j] = _mm512_fmadd_ps(av, bv[j], acc[q][j]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // The CPU's features, not `simd::level()`: the kernel is tested wherever it can run, also
        // when TENSOR_CORE_SIMD=generic keeps the dispatcher from choosing it.
        if !is_x86_feature_detected!("avx512f") {
            eprintln!("no AVX-512 on this CPU: the unpacked kernel cannot run here");
            return;
        }
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
            let run = |epi| {
                let mut c = vec![f32::NAN; m * n];
                let slots = crate::buffer::as_uninit(&mut c);
                // SAFETY: AVX-512 checked above.
                unsafe { gemm_avx512(m, k, n, &a, lda, &b, ldb, slots, epi) };
                c
            };
            let mut want = packed(m, k, n, &a, lda, &b, ldb);
            assert_eq!(run(Epilogue::NONE), want, "{at}");
            // The fused epilogue equals the separate pass over the product.
            let epi = Epilogue {
                bias: Some(&bias),
                act,
            };
            epi.apply(&mut want, n);
            assert_eq!(run(epi), want, "{at} {act:?}");
        }
    }
}
