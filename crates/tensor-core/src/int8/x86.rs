//! The x86 integer kernels. Sums are exact, and requantization does the reference's operations in
//! its order (`i32 -> f32`, multiply, clamp, round to nearest even, add the zero point), or, four
//! vectors at a time, a shorter sequence proven to give the same codes ([`Epilogue`]), so every
//! output equals [`super::reference`] bit for bit.

use super::add::AddParams;
use super::pack::{BLOCK, GROUP};
use super::pointwise::Tile;
use super::QParams;
use std::arch::x86_64::*;

/// The mask of the first `n` of 16 lanes (all of them for `n >= 16`).
#[inline(always)]
fn first_lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

/// The mask of the first `n` of 64 bytes (all of them for `n >= 64`).
#[inline(always)]
pub(super) fn first_bytes(n: usize) -> __mmask64 {
    match n {
        64.. => !0,
        _ => (1u64 << n) - 1,
    }
}

/// Rows of a VNNI tile and blocks of 16 columns (6 x 4 = 24 of the 32 registers hold sums).
const MR: usize = 6;
const NR: usize = 4;

/// `out = requant(a x w)` with `vpdpbusd`, tile by tile.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI must be present. `a` must hold whole rows of `t.w.k` codes and `out`
/// the same number of rows of `t.w.n`; `t.bias` and `t.mult` must hold `t.w.blocks * 16` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn pointwise_vnni(t: &Tile, a: &[u8], out: &mut [u8]) {
    let (k, n) = (t.w.k, t.w.n);
    let rows = a.len() / k;
    assert!(a.len() == rows * k && out.len() == rows * n);
    assert!(t.bias.len() == t.w.blocks * BLOCK && t.mult.len() == t.w.blocks * BLOCK);
    let mut r = 0;
    while r < rows {
        let mr = (rows - r).min(MR);
        let mut b = 0;
        while b < t.w.blocks {
            let nr = (t.w.blocks - b).min(NR);
            let (ap, op) = (a.as_ptr().add(r * k), out.as_mut_ptr().add(r * n));
            let room = a.len() - r * k;
            match nr {
                4 => vnni_rows::<4>(t, ap, op, b, mr, room),
                3 => vnni_rows::<3>(t, ap, op, b, mr, room),
                2 => vnni_rows::<2>(t, ap, op, b, mr, room),
                _ => vnni_rows::<1>(t, ap, op, b, mr, room),
            }
            b += nr;
        }
        r += mr;
    }
}

/// `mr <= MR` rows times blocks `b0..b0 + N`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn vnni_rows<const N: usize>(
    t: &Tile,
    a: *const u8,
    out: *mut u8,
    b0: usize,
    mr: usize,
    room: usize,
) {
    match mr {
        6 => vnni_tile::<6, N>(t, a, out, b0, room),
        5 => vnni_tile::<5, N>(t, a, out, b0, room),
        4 => vnni_tile::<4, N>(t, a, out, b0, room),
        3 => vnni_tile::<3, N>(t, a, out, b0, room),
        2 => vnni_tile::<2, N>(t, a, out, b0, room),
        _ => vnni_tile::<1, N>(t, a, out, b0, room),
    }
}

/// `M` rows from `a` times blocks `b0..b0 + N`, requantized into `out`; `room` bytes are readable
/// from `a` (whole rows of `k`, at least `M` of them).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn vnni_tile<const M: usize, const N: usize>(
    t: &Tile,
    a: *const u8,
    out: *mut u8,
    b0: usize,
    room: usize,
) {
    let (k, n, groups) = (t.w.k, t.w.n, t.w.groups);
    let w = t.w.data.as_ptr();
    let mut acc = [[_mm512_setzero_si512(); N]; M];
    for j in 0..N {
        let bias = _mm512_loadu_si512(t.bias.as_ptr().add((b0 + j) * BLOCK).cast());
        for row in acc.iter_mut() {
            row[j] = bias;
        }
    }
    // Where each row's codes and each block's weights start (a block's groups follow each other).
    let mut rows = [a; M];
    for (r, p) in rows.iter_mut().enumerate() {
        *p = a.add(r * k);
    }
    let mut blocks = [w; N];
    for (j, p) in blocks.iter_mut().enumerate() {
        *p = w.add((b0 + j) * groups * BLOCK * GROUP);
    }
    let full = k / GROUP;
    for g in 0..full {
        let mut bv = [_mm512_setzero_si512(); N];
        for (v, p) in bv.iter_mut().zip(&blocks) {
            *v = _mm512_loadu_si512(p.add(g * BLOCK * GROUP).cast());
        }
        for (row, p) in acc.iter_mut().zip(&rows) {
            let av = _mm512_set1_epi32(p.add(g * GROUP).cast::<i32>().read_unaligned());
            for (s, &b) in row.iter_mut().zip(&bv) {
                *s = _mm512_dpbusd_epi32(*s, av, b);
            }
        }
    }
    if full < groups {
        // The last, partial group: missing channels are zero (their weights are too).
        let mut bv = [_mm512_setzero_si512(); N];
        for (v, p) in bv.iter_mut().zip(&blocks) {
            *v = _mm512_loadu_si512(p.add(full * BLOCK * GROUP).cast());
        }
        for (r, (row, p)) in acc.iter_mut().zip(&rows).enumerate() {
            // Four bytes from the group on: past `k` they are the next row's codes, and their
            // weights are zero, so they add nothing; only where they would pass the end of `a`
            // (its last row) are the group's bytes copied out instead.
            let at = p.add(full * GROUP);
            let av = if r * k + (full + 1) * GROUP <= room {
                _mm512_set1_epi32(at.cast::<i32>().read_unaligned())
            } else {
                let mut bytes = [0u8; GROUP];
                std::ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), k % GROUP);
                _mm512_set1_epi32(i32::from_le_bytes(bytes))
            };
            for (s, &b) in row.iter_mut().zip(&bv) {
                *s = _mm512_dpbusd_epi32(*s, av, b);
            }
        }
    }
    let e = Epilogue::new(t.rq);
    let col0 = b0 * BLOCK;
    if N == 4 {
        // Four blocks: each row's 64 codes in one store.
        let m: [__m512; 4] =
            std::array::from_fn(|j| _mm512_loadu_ps(t.mult.as_ptr().add(col0 + j * BLOCK)));
        for (r, row) in acc.iter().enumerate() {
            if let Ok(row) = <[__m512i; 4]>::try_from(row.as_slice()) {
                e.store4(row, m, out.add(r * n + col0), n - col0);
            }
        }
        return;
    }
    // Rows from `single` on are stored a vector at a time.
    let mut single = 0;
    if N == 2 {
        // Two blocks: two rows' 32 codes each by one pack; an odd last row alone.
        let m = [0, 1, 0, 1].map(|j| _mm512_loadu_ps(t.mult.as_ptr().add(col0 + j * BLOCK)));
        for r in (0..M.saturating_sub(1)).step_by(2) {
            if let (Ok(a), Ok(b)) = (
                <[__m512i; 2]>::try_from(acc[r].as_slice()),
                <[__m512i; 2]>::try_from(acc[r + 1].as_slice()),
            ) {
                let o = out.add(r * n + col0);
                e.store_two_rows([a[0], a[1], b[0], b[1]], m, o, o.add(n), n - col0);
            }
        }
        single = M - M % 2;
    }
    for j in 0..N {
        let col = (b0 + j) * BLOCK;
        let m = _mm512_loadu_ps(t.mult.as_ptr().add(col));
        for (r, row) in acc.iter().enumerate().skip(single) {
            e.store(row[j], m, out.add(r * n + col), n - col);
        }
    }
}

/// The requantization of 16 sums of one row (bias included) into codes, shared by the VNNI and
/// AMX kernels: the reference's operations in its order.
///
/// Four vectors at a time ([`Epilogue::pack4`]) it takes XNNPACK's shorter route to the same
/// codes: only the upper bound is applied in `f32` (`min(acc * m, hi - zp)`); after the rounding
/// conversion, the zero point is added to 16-bit values (saturating) and the lower bound applied
/// to the packed bytes. That is exact: the lower bound `lo - zp` is an integer, so clamping
/// before or after rounding gives the same value; a sum far below it converts to `i32::MIN`
/// (or saturates to `-32768`) and still lands on `lo`; and above, every value is at most
/// `hi <= 255` once the zero point is back.
pub(super) struct Epilogue {
    lo: __m512,
    hi: __m512,
    zp: __m512i,
    zp16: __m512i,
    lo8: __m512i,
}

impl Epilogue {
    /// # Safety
    /// AVX-512 F and BW must be present.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn new(rq: &super::Requant) -> Epilogue {
        let (lo, hi) = rq.bounds();
        Epilogue {
            lo: _mm512_set1_ps(lo),
            hi: _mm512_set1_ps(hi),
            zp: _mm512_set1_epi32(rq.zero_point),
            zp16: _mm512_set1_epi16(rq.zero_point as i16),
            lo8: _mm512_set1_epi8(rq.lo as i8),
        }
    }

    /// [`Epilogue::codes`] of `acc`, the first `valid` (at most 16) stored at `out` as bytes.
    ///
    /// # Safety
    /// AVX-512 F and BW must be present; `out` writable for `valid.min(16)` bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn store(&self, acc: __m512i, m: __m512, out: *mut u8, valid: usize) {
        let q = self.codes(acc, m);
        _mm512_mask_cvtusepi32_storeu_epi8(out.cast(), first_lanes(valid), q);
    }

    /// The codes of four vectors of sums with their multipliers, packed into one vector of 64
    /// bytes: 128-bit lane `i` holds lanes `4i..4i + 4` of `acc[0]`, `acc[1]`, `acc[2]`,
    /// `acc[3]`, in that order (the in-lane packs' interleave).
    ///
    /// # Safety
    /// AVX-512 F and BW must be present.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn pack4(&self, acc: [__m512i; 4], m: [__m512; 4]) -> __m512i {
        let q: [__m512i; 4] = std::array::from_fn(|j| {
            let y = _mm512_min_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[j]), m[j]), self.hi);
            _mm512_cvtps_epi32(y)
        });
        let lo = _mm512_adds_epi16(_mm512_packs_epi32(q[0], q[1]), self.zp16);
        let hi = _mm512_adds_epi16(_mm512_packs_epi32(q[2], q[3]), self.zp16);
        _mm512_max_epu8(_mm512_packus_epi16(lo, hi), self.lo8)
    }

    /// [`Epilogue::pack4`] with the interleave undone: bytes `16 j..16 j + 16` are the codes of
    /// `acc[j]`, in lane order.
    ///
    /// # Safety
    /// AVX-512 F and BW must be present.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    unsafe fn pack4_in_order(&self, acc: [__m512i; 4], m: [__m512; 4]) -> __m512i {
        // Dword `d` of the result (four codes) is dword `4 (d % 4) + d / 4` of the pack.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm512_permutexvar_epi32(order, self.pack4(acc, m))
    }

    /// [`Epilogue::pack4`] of four vectors of one row (64 neighbouring columns), the first
    /// `valid` (at most 64) stored at `out` in column order by one store.
    ///
    /// # Safety
    /// AVX-512 F and BW must be present; `out` writable for `valid.min(64)` bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn store4(
        &self,
        acc: [__m512i; 4],
        m: [__m512; 4],
        out: *mut u8,
        valid: usize,
    ) {
        let row = self.pack4_in_order(acc, m);
        _mm512_mask_storeu_epi8(out.cast(), first_bytes(valid), row);
    }

    /// [`Epilogue::pack4`] of two blocks of 16 columns of two rows (`acc` and `m`: row 0's
    /// blocks, then row 1's), the first `valid` (at most 32) codes of each row stored at `out0`
    /// and `out1`.
    ///
    /// # Safety
    /// AVX-512 F and BW must be present; `out0` and `out1` writable for `valid.min(32)` bytes.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub(super) unsafe fn store_two_rows(
        &self,
        acc: [__m512i; 4],
        m: [__m512; 4],
        out0: *mut u8,
        out1: *mut u8,
        valid: usize,
    ) {
        // Each row's 32 codes in one half.
        let rows = self.pack4_in_order(acc, m);
        // The first `valid` of 32 bytes: the low half of the 64-byte mask.
        let mask = first_bytes(valid.min(32)) as __mmask32;
        _mm256_mask_storeu_epi8(out0.cast(), mask, _mm512_castsi512_si256(rows));
        _mm256_mask_storeu_epi8(out1.cast(), mask, _mm512_extracti64x4_epi64::<1>(rows));
    }

    /// `acc` times the multipliers `m`, clamped, rounded (to nearest even), plus the zero point:
    /// 16 codes as `i32`, each in `0..=255`.
    ///
    /// # Safety
    /// AVX-512 F must be present.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn codes(&self, acc: __m512i, m: __m512) -> __m512i {
        let y = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), m);
        let y = _mm512_min_ps(_mm512_max_ps(y, self.lo), self.hi);
        _mm512_add_epi32(_mm512_cvtps_epi32(y), self.zp)
    }
}

/// `out = requant(a x w)` with AVX2: bytes widened to `i16`, `vpmaddwd` sums pairs exactly (the
/// `u8 x i8` `vpmaddubsw` would saturate), two rows and one block of 16 columns at a time.
///
/// # Safety
/// AVX2 must be present; the extents as for [`pointwise_vnni`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pointwise_avx2(t: &Tile, a: &[u8], out: &mut [u8]) {
    let (k, n) = (t.w.k, t.w.n);
    let rows = a.len() / k;
    assert!(a.len() == rows * k && out.len() == rows * n);
    assert!(t.bias.len() == t.w.blocks * BLOCK && t.mult.len() == t.w.blocks * BLOCK);
    let mut r = 0;
    while r < rows {
        let mr = (rows - r).min(2);
        for b in 0..t.w.blocks {
            let (ap, op) = (a.as_ptr().add(r * k), out.as_mut_ptr().add(r * n));
            match mr {
                2 => avx2_tile::<2>(t, ap, op, b),
                _ => avx2_tile::<1>(t, ap, op, b),
            }
        }
        r += mr;
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn avx2_tile<const M: usize>(t: &Tile, a: *const u8, out: *mut u8, b: usize) {
    let (k, n, groups) = (t.w.k, t.w.n, t.w.groups);
    let full = k / GROUP;
    // Per row, four accumulators of 8 `i32`: columns 0-3, 4-7, 8-11, 12-15, two pair sums each.
    let mut acc = [[_mm256_setzero_si256(); 4]; M];
    for g in 0..groups {
        let p = t.w.data.as_ptr().add((b * groups + g) * BLOCK * GROUP);
        let mut wv = [_mm256_setzero_si256(); 4];
        for (q, v) in wv.iter_mut().enumerate() {
            *v = _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(16 * q).cast()));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let at = a.add(r * k + g * GROUP);
            // The group's four codes widened to `u16` and repeated in every 64-bit lane.
            let av = if g < full {
                let four = at.cast::<i32>().read_unaligned();
                _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(four)))
            } else {
                let mut bytes = [0u8; GROUP];
                std::ptr::copy_nonoverlapping(at, bytes.as_mut_ptr(), k - g * GROUP);
                let wide = bytes.iter().rev().fold(0i64, |s, &v| (s << 16) | v as i64);
                _mm256_set1_epi64x(wide)
            };
            for (s, &v) in row.iter_mut().zip(&wv) {
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(av, v));
            }
        }
    }
    let (lo, hi) = t.rq.bounds();
    let (lo, hi, zp) = (
        _mm256_set1_ps(lo),
        _mm256_set1_ps(hi),
        _mm256_set1_epi32(t.rq.zero_point),
    );
    let col = b * BLOCK;
    let valid = (n - col).min(BLOCK);
    for (r, row) in acc.iter().enumerate() {
        let mut codes = [0i32; BLOCK];
        for h in 0..2 {
            // hadd gives columns [0 1 4 5 | 2 3 6 7] of the half; the permute puts them in order.
            let s = _mm256_hadd_epi32(row[2 * h], row[2 * h + 1]);
            let s = _mm256_permute4x64_epi64::<0b11_01_10_00>(s);
            // `requantize`, eight columns at once: the bias added in integers, then the same
            // float operations (`cvtps` rounds half to even, as `round_ties_even`).
            let c = col + 8 * h;
            let s = _mm256_add_epi32(s, _mm256_loadu_si256(t.bias.as_ptr().add(c).cast()));
            let y = _mm256_mul_ps(
                _mm256_cvtepi32_ps(s),
                _mm256_loadu_ps(t.mult.as_ptr().add(c)),
            );
            let y = _mm256_min_ps(_mm256_max_ps(y, lo), hi);
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(y), zp);
            _mm256_storeu_si256(codes.as_mut_ptr().add(8 * h).cast(), q);
        }
        for (lane, &q) in codes.iter().enumerate().take(valid) {
            *out.add(r * n + col + lane) = q as u8;
        }
    }
}

/// [`AddParams::apply`] 16 codes at a time, the same operations in the same order.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI must be present (the tier's features).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn add_avx512(a: &[u8], b: &[u8], p: &AddParams, out: &mut [u8]) {
    assert!(a.len() == out.len() && b.len() == out.len());
    let (am, bm) = (_mm512_set1_ps(p.a_mult), _mm512_set1_ps(p.b_mult));
    let (az, bz, oz) = (
        _mm512_set1_epi32(p.a_zp),
        _mm512_set1_epi32(p.b_zp),
        _mm512_set1_epi32(p.out_zp),
    );
    let lo = _mm512_set1_ps(-p.out_zp as f32);
    let hi = _mm512_set1_ps((255 - p.out_zp) as f32);
    for i in (0..out.len()).step_by(16) {
        let mask = first_lanes(out.len() - i);
        let load = |s: &[u8], z| {
            let v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, s.as_ptr().add(i).cast()));
            _mm512_cvtepi32_ps(_mm512_sub_epi32(v, z))
        };
        let y = _mm512_add_ps(
            _mm512_mul_ps(load(a, az), am),
            _mm512_mul_ps(load(b, bz), bm),
        );
        let y = _mm512_min_ps(_mm512_max_ps(y, lo), hi);
        let q = _mm512_add_epi32(_mm512_cvtps_epi32(y), oz);
        _mm512_mask_cvtusepi32_storeu_epi8(out.as_mut_ptr().add(i).cast(), mask, q);
    }
}

/// [`QParams::quantize`] 16 values at a time, the same operations in the same order.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI must be present (the tier's features).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn quantize_avx512(x: &[f32], q: QParams, out: &mut [u8]) {
    assert!(x.len() == out.len());
    let (scale, zp) = (_mm512_set1_ps(q.scale), _mm512_set1_ps(q.zero_point as f32));
    let (zero, top) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
    for i in (0..out.len()).step_by(16) {
        let mask = first_lanes(out.len() - i);
        let v = _mm512_maskz_loadu_ps(mask, x.as_ptr().add(i));
        let y = _mm512_add_ps(_mm512_div_ps(v, scale), zp);
        let y = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y);
        // max(y, 0) gives 0 for NaN, as `clamp` + `as u8` do.
        let y = _mm512_min_ps(_mm512_max_ps(y, zero), top);
        _mm512_mask_cvtusepi32_storeu_epi8(
            out.as_mut_ptr().add(i).cast(),
            mask,
            _mm512_cvtps_epi32(y),
        );
    }
}
