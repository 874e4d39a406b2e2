//! The 3-row depthwise convolution on AVX-512 VNNI, four taps a `vpdpbusd`.
//!
//! `vpdpbusd` multiplies four `u8 x i8` pairs in each `i32` lane and adds them to the lane: for a
//! depthwise sum, the four pairs must be one channel's taps. So one output row is computed in two
//! passes over each block of 64 channels:
//! 1. each (padded) input column of the kernel's three rows is interleaved once, byte by byte,
//!    with a zero fourth row: `[row0, row1, row2, 0]` per channel (eight in-lane unpacks for 64
//!    channels), into a scratch row;
//! 2. each output sums its `KW` interleaved columns against weights interleaved the same way:
//!    `KW` instructions per 16 channels instead of `3 * KW` widen-and-multiply pairs, and each
//!    interleaved column serves every output whose window covers it.
//!
//! The unpacks leave the channels of a block in a fixed order (`lane_channel`); bias, multiplier
//! and weights are stored in that order, and two in-lane saturating packs (exact: requantized
//! codes are in `0..=255`) put the output codes back in channel order.
//!
//! At stride 1 with three kernel rows, two output rows are computed together: output row `oy + 1`
//! reads input rows `oy..oy + 3`, `oy` reads `oy - 1..oy + 2`, so one interleave of the four rows
//! `[oy - 1, oy, oy + 1, oy + 2]` serves both, with the taps `[w0, w1, w2, 0]` for the first and
//! `[0, w0, w1, w2]` for the second (the interleave is done once for two rows).
//!
//! A layer narrower than a block at stride 1 (`C` dividing 64: MobileNetV2's first depthwise has
//! 32 channels, 16 at alpha 0.35) fills a block with `64 / C` neighbouring pixels instead: their
//! taps are neighbouring columns too, so the same two passes compute that many outputs at once.

use super::depthwise::Rows;
use super::x86::{first_bytes, Epilogue};
use crate::aligned::Aligned;
use std::arch::x86_64::*;

/// Channels a block (one 64-byte vector of codes).
const BLOCK: usize = 64;
/// Kernel rows a sum holds (the fourth tap of each lane is a zero).
pub(super) const MAX_KH: usize = 3;

/// The channel (within its block) of position `p` of the block's four `i32` vectors after the
/// unpacks: vector `j = p / 16`, lane `4L + t` holds channel `16L + 4j + t`.
fn lane_channel(p: usize) -> usize {
    let (j, lane) = (p / 16, p % 16);
    16 * (lane / 4) + 4 * j + lane % 4
}

/// Weights, bias and multipliers in the kernel's order, made once a call.
pub(super) struct Interleaved {
    blocks: usize,
    /// Neighbouring pixels a block holds: 1, or `64 / C` for a narrow layer at stride 1 (`C`
    /// dividing 64), whose pixels then fill the vector instead of leaving lanes empty.
    pixels: usize,
    /// `[KW][blocks][64][4]`: the taps `(0..3, kx)` of a channel and a zero, in lane order.
    w: Aligned<i8>,
    /// The same taps one byte later (`[0, w0, w1, w2]`): the next output row's, over the four
    /// input rows interleaved for a pair of rows.
    w_next: Aligned<i8>,
    /// `[blocks][64]` in lane order (zero past the last channel).
    bias: Aligned<i32>,
    mult: Aligned<f32>,
}

impl Interleaved {
    /// From the widened weights `[kh, kw, C]` and the bias (zero point's share included) of `d`.
    pub(super) fn new(d: &Rows) -> Interleaved {
        let (c, kh, kw) = (d.g.cin, d.g.kh, d.g.kw);
        assert!(
            kh <= MAX_KH,
            "the interleaved kernel sums at most {MAX_KH} rows"
        );
        let pixels = match d.g.stride == 1 && c < BLOCK && BLOCK.is_multiple_of(c) {
            true => BLOCK / c,
            false => 1,
        };
        let blocks = c.div_ceil(BLOCK);
        let mut w = Aligned::zeroed(kw * blocks * BLOCK * 4);
        let mut w_next = Aligned::zeroed(kw * blocks * BLOCK * 4);
        let mut bias = Aligned::zeroed(blocks * BLOCK);
        let mut mult = Aligned::zeroed(blocks * BLOCK);
        for b in 0..blocks {
            for p in 0..BLOCK {
                // With several pixels a block, each pixel's lanes repeat the channels.
                let ch = match pixels {
                    1 => b * BLOCK + lane_channel(p),
                    _ => lane_channel(p) % c,
                };
                if ch >= c {
                    continue;
                }
                bias[b * BLOCK + p] = d.bias[ch];
                mult[b * BLOCK + p] = d.rq.multiplier[ch];
                for kx in 0..kw {
                    for ky in 0..kh {
                        // The widened weights came from `i8`, so this narrowing is exact.
                        let v = d.w[(ky * kw + kx) * c + ch] as i8;
                        let at = ((kx * blocks + b) * BLOCK + p) * 4;
                        w[at + ky] = v;
                        if ky + 1 < 4 {
                            w_next[at + ky + 1] = v;
                        }
                    }
                }
            }
        }
        Interleaved {
            blocks,
            pixels,
            w,
            w_next,
            bias,
            mult,
        }
    }
}

/// Whether rows `row` and `row + 1` can be computed as a pair: stride 1, three kernel rows, and
/// both in one image.
pub(super) fn pairs(d: &Rows, row: usize) -> bool {
    let g = d.g;
    g.stride == 1 && g.kh == MAX_KH && (row % g.rows.out) + 1 < g.rows.out
}

/// One output row of a depthwise convolution with `KW` kernel columns and at most three rows, or
/// with `PAIR` the two rows `row`, `row + 1` (where [`pairs`]); `out` holds that many rows.
/// `scratch` is the caller's, reused between rows.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI must be present (the tier's features); the extents of `d` must be as
/// `depthwise::forward` checked them, and `p` made from `d` (both asserted again here).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn row<const KW: usize, const PAIR: bool>(
    d: &Rows,
    p: &Interleaved,
    row: usize,
    out: &mut [u8],
    scratch: &mut Aligned<u8>,
) {
    let g = d.g;
    let (c, s, iw, ow) = (g.cin, g.stride, g.cols.input, g.cols.out);
    let (n, oy) = (row / g.rows.out, row % g.rows.out);
    let count = if PAIR { 2 } else { 1 };
    assert!(KW == g.kw && g.kh <= MAX_KH && n < g.n && ow > 0 && out.len() == count * ow * c);
    assert!(!PAIR || pairs(d, row));
    assert!(p.blocks == c.div_ceil(BLOCK) && p.w.len() == KW * p.blocks * BLOCK * 4);
    assert!(p.w_next.len() == p.w.len());
    assert!(p.bias.len() == p.blocks * BLOCK && p.mult.len() == p.blocks * BLOCK);
    assert!(d.x.len() == g.n * g.rows.input * iw * c && d.zp_row.len() >= c);
    // Padded input columns the outputs read: `(ow - 1) * s + KW`.
    let pw = (ow - 1) * s + KW;
    if scratch.len() < pw * BLOCK * 4 {
        *scratch = Aligned::zeroed(pw * BLOCK * 4);
    }
    let img = d.x.as_ptr().add(n * g.rows.input * iw * c);
    // Per kernel row, where its input row starts; a row in the padding (or past the kernel's
    // rows) has none. A pair reads a fourth row: the next output row's last.
    let mut rows = [None; 4];
    for (ky, r) in rows.iter_mut().enumerate().take(g.kh) {
        *r = d.in_row(oy, ky).map(|iy| img.add(iy * iw * c));
    }
    if PAIR {
        rows[3] = d.in_row(oy + 1, g.kh - 1).map(|iy| img.add(iy * iw * c));
    }
    assert!(p.pixels == 1 || (s == 1 && p.blocks == 1 && p.pixels * c == BLOCK));
    for b in 0..p.blocks {
        interleave_columns::<PAIR>(d, p, &rows, b, pw, scratch);
        sum_outputs::<KW, PAIR>(d, p, b, scratch, out);
    }
}

/// Which bytes of block `b` at padded input column `xp` hold image codes (the rest is padding):
/// the block's channels of that pixel, or with several pixels a block, those of its pixels that
/// lie inside the row.
fn inside(d: &Rows, p: &Interleaved, b: usize, xp: usize) -> __mmask64 {
    let (c, before, iw) = (d.g.cin, d.g.cols.before, d.g.cols.input);
    let ix = xp as isize - before as isize;
    let first = (-ix).clamp(0, p.pixels as isize) as usize;
    let end = (iw as isize - ix).clamp(0, p.pixels as isize) as usize;
    match (p.pixels, first < end) {
        (_, false) => 0,
        (1, true) => first_bytes(c - b * BLOCK),
        (_, true) => first_bytes(end * c) & !first_bytes(first * c),
    }
}

/// The padded input columns `0..pw` of block `b`, interleaved into `scratch` (`[pw][4 vectors]
/// [16 lanes][4 taps]`); padding reads the zero point, the fourth tap is `rows[3]` with `FOURTH`,
/// else zero.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn interleave_columns<const FOURTH: bool>(
    d: &Rows,
    p: &Interleaved,
    rows: &[Option<*const u8>; 4],
    b: usize,
    pw: usize,
    scratch: &mut [u8],
) {
    let (c, before) = (d.g.cin, d.g.cols.before as isize);
    assert!(scratch.len() >= pw * BLOCK * 4);
    let zp = _mm512_set1_epi8(d.zp_row[0] as i8);
    let zero = _mm512_setzero_si512();
    let dst = scratch.as_mut_ptr();
    for xp in 0..pw {
        let mask = inside(d, p, b, xp);
        // The block's first byte: pixel `xp - before`, channel `64 b` (left of the row when the
        // pixel is in the padding: only the bytes `mask` selects, inside the row, are read).
        let offset = (xp as isize - before) * c as isize + (b * BLOCK) as isize;
        let load = |r: Option<*const u8>| match (r, mask) {
            (Some(r), 1..) => _mm512_mask_loadu_epi8(zp, mask, r.wrapping_offset(offset).cast()),
            // Padding reads the zero point; a row past the kernel's is multiplied by 0.
            _ => zp,
        };
        let (r0, r1, r2) = (load(rows[0]), load(rows[1]), load(rows[2]));
        let lo01 = _mm512_unpacklo_epi8(r0, r1);
        let hi01 = _mm512_unpackhi_epi8(r0, r1);
        let r3 = if FOURTH { load(rows[3]) } else { zero };
        let lo2z = _mm512_unpacklo_epi8(r2, r3);
        let hi2z = _mm512_unpackhi_epi8(r2, r3);
        let at = dst.add(xp * BLOCK * 4);
        _mm512_storeu_si512(at.cast(), _mm512_unpacklo_epi16(lo01, lo2z));
        _mm512_storeu_si512(at.add(64).cast(), _mm512_unpackhi_epi16(lo01, lo2z));
        _mm512_storeu_si512(at.add(128).cast(), _mm512_unpacklo_epi16(hi01, hi2z));
        _mm512_storeu_si512(at.add(192).cast(), _mm512_unpackhi_epi16(hi01, hi2z));
    }
}

/// Every output of the row (of both rows with `PAIR`: the second's taps are `w_next`) for channel
/// block `b`, from the interleaved columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn sum_outputs<const KW: usize, const PAIR: bool>(
    d: &Rows,
    p: &Interleaved,
    b: usize,
    scratch: &[u8],
    out: &mut [u8],
) {
    let (c, s, ow) = (d.g.cin, d.g.stride, d.g.cols.out);
    let count = if PAIR { 2 } else { 1 };
    assert!(scratch.len() >= ((ow - 1) * s + KW) * BLOCK * 4 && out.len() == count * ow * c);
    let taps = |w: &[i8]| {
        let mut t = [[_mm512_setzero_si512(); 4]; KW];
        for (kx, wk) in t.iter_mut().enumerate() {
            for (j, v) in wk.iter_mut().enumerate() {
                let at = ((kx * p.blocks + b) * BLOCK + 16 * j) * 4;
                *v = _mm512_loadu_si512(w.as_ptr().add(at).cast());
            }
        }
        t
    };
    let w = taps(&p.w);
    let w_next = if PAIR { taps(&p.w_next) } else { w };
    let e = Requantize::new(d, p, b);
    let cols = scratch.as_ptr();
    // One output block: a pixel's channels `64 b..`, or `pixels` neighbouring pixels (stride 1:
    // their taps are neighbouring columns too, so one interleaved column serves them all).
    for ox in (0..ow).step_by(p.pixels) {
        let mask = match p.pixels {
            1 => first_bytes(c - b * BLOCK),
            _ => first_bytes((ow - ox).min(p.pixels) * c),
        };
        let (mut acc, mut acc_next) = (e.bias, e.bias);
        for kx in 0..KW {
            let at = cols.add((ox * s + kx) * BLOCK * 4);
            for j in 0..4 {
                let x = _mm512_loadu_si512(at.add(64 * j).cast());
                acc[j] = _mm512_dpbusd_epi32(acc[j], x, w[kx][j]);
                if PAIR {
                    acc_next[j] = _mm512_dpbusd_epi32(acc_next[j], x, w_next[kx][j]);
                }
            }
        }
        let at = ox * c + b * BLOCK;
        _mm512_mask_storeu_epi8(out.as_mut_ptr().add(at).cast(), mask, e.codes(acc));
        if PAIR {
            let at = at + ow * c;
            _mm512_mask_storeu_epi8(out.as_mut_ptr().add(at).cast(), mask, e.codes(acc_next));
        }
    }
}

/// The requantization of one block's 64 sums (in lane order) into codes in channel order: the
/// pointwise kernels' [`Epilogue`] on each of its four vectors, with the block's bias and
/// multipliers.
struct Requantize {
    bias: [__m512i; 4],
    mult: [__m512; 4],
    e: Epilogue,
}

impl Requantize {
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new(d: &Rows, p: &Interleaved, b: usize) -> Requantize {
        let mut bias = [_mm512_setzero_si512(); 4];
        let mut mult = [_mm512_setzero_ps(); 4];
        for j in 0..4 {
            bias[j] = _mm512_loadu_si512(p.bias.as_ptr().add(b * BLOCK + 16 * j).cast());
            mult[j] = _mm512_loadu_ps(p.mult.as_ptr().add(b * BLOCK + 16 * j));
        }
        Requantize {
            bias,
            mult,
            e: Epilogue::new(d.rq),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    #[inline]
    unsafe fn codes(&self, acc: [__m512i; 4]) -> __m512i {
        // Being in-lane, the packs undo the unpacks' order.
        self.e.pack4(acc, self.mult)
    }
}

#[cfg(test)]
mod tests {
    use super::lane_channel;

    #[test]
    fn lane_order_is_a_permutation_of_the_block() {
        let mut seen = [false; 64];
        for p in 0..64 {
            seen[lane_channel(p)] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(lane_channel(4), 16); // vector 0, lane 4: second 128-bit lane, channel 16
        assert_eq!(lane_channel(16), 4); // vector 1, lane 0
    }
}
