//! The 1x1 convolution on Intel AMX (`tdpbusd`): tiles of 16 rows x 64 bytes, one instruction
//! multiplying a 16 x 64 block of `u8` codes by a 64 x 16 block of `i8` weights into 16 x 16
//! exact `i32` sums (oneDNN's brgemm and XNNPACK's AMX kernels work the same way).
//!
//! The packed weights ([`super::pack`]) are already in the layout AMX reads: within a block of 16
//! columns, each group of four input channels is one 64-byte row, so 16 consecutive groups are one
//! weight tile read with a 64-byte stride. The `k` input channels are cut into as few tile columns
//! as fit, of equal width ([`Cut`]: 96 channels are two of 48, not 64 and 32 of padding), and rows
//! of codes are copied into a panel of 32 rows, each chunk in a 64-byte slot padded with zeros; a
//! zero code adds nothing whatever weight it meets, so weight rows past `k` (the next block's, or
//! the packing's tail) do not change a sum. The sums leave the tiles through a small buffer and are
//! requantized by the AVX-512 epilogue the VNNI kernel uses, so every output equals
//! [`super::reference`] bit for bit.
//!
//! Tile registers are not known to the compiler: each `asm!` block below zeroes, fills and stores
//! the tiles it uses, so no tile data lives from one block to the next; only the configuration
//! (loaded once per call, released at its end) does, and no other code on the thread touches it.

use super::pack::{BLOCK, GROUP, TAIL_BYTES};
use super::pointwise::Tile;
use crate::aligned::Aligned;
use std::arch::asm;
use std::arch::x86_64::{
    _mm512_add_epi32, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_maskz_loadu_epi8,
    _mm512_storeu_si512,
};

/// Rows of one tile, and bytes of one tile row.
const ROWS: usize = 16;
const ROW_BYTES: usize = 64;
/// Groups of four channels in one tile row.
const GROUPS_PER_TILE: usize = ROW_BYTES / GROUP;

// The weights' zero tail covers a whole weight tile past the last group.
const _: () = assert!(TAIL_BYTES >= GROUPS_PER_TILE * BLOCK * GROUP);

/// Whether this CPU has AMX with `tdpbusd` and the kernel lets this process use its tile data
/// (Linux: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); asked once by the caller.
pub(super) fn enable() -> bool {
    // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 25 AMX-INT8.
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    let max_leaf = std::arch::x86_64::__cpuid(0).eax;
    let cpu = max_leaf >= 7 && (leaf7.edx >> 24) & 1 == 1 && (leaf7.edx >> 25) & 1 == 1;
    cpu && request_tile_data()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn request_tile_data() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: `arch_prctl` with these arguments only changes this process's permission to use the
    // AMX state; it reads and writes no memory of ours. It fails (returns -1) where unsupported.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn request_tile_data() -> bool {
    false
}

/// How a call cuts the `k` input channels into tile columns: `chunks` of `width` bytes each (a
/// multiple of 4, at most 64), as even as possible, so that a tile multiplies little padding.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cut {
    chunks: usize,
    width: usize,
}

impl Cut {
    fn of(k: usize) -> Cut {
        let chunks = k.div_ceil(ROW_BYTES).max(1);
        Cut {
            chunks,
            width: k.div_ceil(chunks).next_multiple_of(GROUP),
        }
    }

    /// Bytes of a panel row: `k` and its padding.
    fn padded(&self) -> usize {
        self.chunks * self.width
    }
}

/// The tile configuration (palette 1): the sums (tiles 0-3) 16 rows of 16 `i32`; the codes
/// (4, 5) 16 rows of `width` bytes; the weights (6, 7) `width / 4` rows of 16 x 4 bytes.
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Config {
    fn for_cut(cut: Cut) -> Config {
        let mut c = [0u8; 64];
        c[0] = 1;
        let shapes = [(ROWS, ROW_BYTES); 4]
            .into_iter()
            .chain([(ROWS, cut.width); 2])
            .chain([(cut.width / GROUP, ROW_BYTES); 2]);
        for (t, (rows, bytes)) in shapes.enumerate() {
            c[16 + 2 * t] = bytes as u8; // colsb, a little-endian u16 (at most 64)
            c[48 + t] = rows as u8;
        }
        Config(c)
    }
}

/// Rows of codes for two tiles: each chunk of a row (the cut's width) in its own 64-byte slot,
/// padded with zeros, from a cache line, so that no tile row straddles two lines.
struct Panel {
    /// 32 rows of `stride` bytes.
    bytes: Aligned<u8>,
    /// Bytes from one row to the next: a slot for each chunk.
    stride: usize,
}

impl Panel {
    fn new(cut: Cut) -> Panel {
        let stride = cut.chunks * ROW_BYTES;
        Panel {
            bytes: Aligned::zeroed(2 * ROWS * stride),
            stride,
        }
    }

    /// Copies `rows` (whole rows of `k` codes, at most 32 of them) in, each chunk of `cut.width`
    /// codes by one masked load into its slot: the bytes past the chunk (or past `k`) load as
    /// zeros. Rows past the last are zero.
    ///
    /// # Safety
    /// AVX-512 F and BW must be present; the panel made for `cut`, and `cut` [`Cut::of`] `k`.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn fill(&mut self, rows: &[u8], k: usize, cut: Cut) {
        let n = rows.len() / k;
        let stride = self.stride;
        assert!(n <= 2 * ROWS && rows.len() == n * k && k <= cut.padded());
        assert!(stride == cut.chunks * ROW_BYTES && self.bytes.len() == 2 * ROWS * stride);
        assert!(
            (cut.chunks - 1) * cut.width < k,
            "every chunk starts inside the row"
        );
        for r in 0..n {
            let (src, dst) = (
                rows.as_ptr().add(r * k),
                self.bytes.as_mut_ptr().add(r * stride),
            );
            for c in 0..cut.chunks {
                // `c * width < k` (asserted above), so `src + c * width` is inside the row; lanes
                // past the chunk or the row are masked off (never read).
                let left = (k - c * cut.width).min(cut.width);
                let mask = match left {
                    64.. => u64::MAX,
                    _ => (1u64 << left) - 1,
                };
                let v = _mm512_maskz_loadu_epi8(mask, src.add(c * cut.width).cast());
                _mm512_storeu_si512(dst.add(c * ROW_BYTES).cast(), v);
            }
        }
        self.bytes[n * stride..].fill(0);
    }
}

/// `out = requant(a x w)` on AMX tiles: 32 rows by 32 columns (four sum tiles) at a time.
///
/// # Safety
/// AMX-TILE and AMX-INT8 must be present with the tile data permitted ([`enable`]), and AVX-512
/// F, BW, VL and VNNI (the epilogue). `a` must hold whole rows of `t.w.k` codes and `out` the same
/// number of rows of `t.w.n`; `t.bias` and `t.mult` must hold `t.w.blocks * 16` values; `t.w.data`
/// must be the packed layout followed by its [`TAIL_BYTES`] tail (any values).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn pointwise_amx(t: &Tile, a: &[u8], out: &mut [u8]) {
    let (k, n, groups, blocks) = (t.w.k, t.w.n, t.w.groups, t.w.blocks);
    let rows = a.len() / k;
    assert!(a.len() == rows * k && out.len() == rows * n);
    assert!(t.bias.len() == blocks * BLOCK && t.mult.len() == blocks * BLOCK);
    assert!(t.w.data.len() == blocks * groups * BLOCK * GROUP + TAIL_BYTES);
    let cut = Cut::of(k);
    // Each block's weight tiles read `cut.padded() / 4` groups from its start: at most 15 past
    // its last, inside the next block or the tail.
    assert!(cut.padded() / GROUP < groups + GROUPS_PER_TILE);
    let mut panel = Panel::new(cut);
    // Two sets of sums: the tiles fill one while the previous unit's are requantized from the
    // other (the tile instructions and the vector epilogue then overlap in the core).
    let mut sums = [
        Sums([0; 2 * ROWS * 2 * BLOCK]),
        Sums([0; 2 * ROWS * 2 * BLOCK]),
    ];
    let mut pending: Option<(Unit, usize)> = None;
    let mut cur = 0;
    let config = Config::for_cut(cut);
    // SAFETY: `config` is a valid palette-1 configuration (no tile over 16 rows or 64 bytes), 64-byte
    // aligned.
    asm!("ldtilecfg [{}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
    for (a, out) in a.chunks(2 * ROWS * k).zip(out.chunks_mut(2 * ROWS * n)) {
        panel.fill(a, k, cut);
        let mut b = 0;
        while b < blocks {
            // An odd last block is multiplied twice; its second copy is not stored.
            let b1 = (b + 1).min(blocks - 1);
            let w = |block: usize| t.w.data.as_ptr().add(block * groups * BLOCK * GROUP);
            // SAFETY: the panel holds 32 rows of a 64-byte slot per chunk; each block's weights
            // start at `w(block)` and the loop reads `cut.padded() / 4` groups of 64 bytes from
            // there, at most 15 past the block's last, which lie in the next block or the tail
            // (the assertions above).
            multiply(&panel, cut, w(b), w(b1), &mut sums[cur]);
            if let Some((unit, which)) = pending.take() {
                requantize(t, &sums[which], unit);
            }
            let (rows, cols) = (out.len() / n, if b1 > b { 2 } else { 1 });
            let out = out.as_mut_ptr();
            pending = Some((Unit { out, rows, b, cols }, cur));
            cur ^= 1;
            b += 2;
        }
    }
    if let Some((unit, which)) = pending {
        requantize(t, &sums[which], unit);
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// Where one 32 x 32 unit of sums goes: `rows` rows of `out` (`n` codes each), the `cols` column
/// blocks from block `b` on.
struct Unit {
    out: *mut u8,
    rows: usize,
    b: usize,
    cols: usize,
}

/// The sums of 32 rows x 32 columns: tile `(i, j)` at row `16 i`, column `16 j`.
#[repr(C, align(64))]
struct Sums([i32; 2 * ROWS * 2 * BLOCK]);

/// Both 16-row halves of `panel` times the weight blocks at `w0` and `w1`, over the cut's
/// chunks, into `sums`.
///
/// # Safety
/// The tile configuration must be [`Config::for_cut`] of `cut`; `panel` made for `cut`; `w0` and
/// `w1` readable for `cut.padded() * 16` bytes.
#[inline]
unsafe fn multiply(panel: &Panel, cut: Cut, w0: *const i8, w1: *const i8, sums: &mut Sums) {
    let a0 = panel.bytes.as_ptr();
    let a1 = a0.add(ROWS * panel.stride);
    let c = sums.0.as_mut_ptr();
    let row = 2 * BLOCK * 4; // bytes from one row of sums to the next
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        "2:",
        "tileloadd tmm4, [{a0} + {sa}*1]",
        "tileloadd tmm5, [{a1} + {sa}*1]",
        "tileloadd tmm6, [{w0} + {sw}*1]",
        "tileloadd tmm7, [{w1} + {sw}*1]",
        "tdpbusd tmm0, tmm4, tmm6",
        "tdpbusd tmm1, tmm4, tmm7",
        "tdpbusd tmm2, tmm5, tmm6",
        "tdpbusd tmm3, tmm5, tmm7",
        "add {a0}, {da}",
        "add {a1}, {da}",
        "add {w0}, {dw}",
        "add {w1}, {dw}",
        "dec {n}",
        "jnz 2b",
        "tilestored [{c} + {sc}*1], tmm0",
        "tilestored [{c1} + {sc}*1], tmm1",
        "tilestored [{c2} + {sc}*1], tmm2",
        "tilestored [{c3} + {sc}*1], tmm3",
        a0 = inout(reg) a0 => _,
        a1 = inout(reg) a1 => _,
        w0 = inout(reg) w0 => _,
        w1 = inout(reg) w1 => _,
        n = inout(reg) cut.chunks => _,
        sa = in(reg) panel.stride,
        sw = in(reg) BLOCK * GROUP,
        // A chunk is a 64-byte slot of each row of codes, `width / 4` groups of the weights.
        da = in(reg) ROW_BYTES,
        dw = in(reg) cut.width / GROUP * BLOCK * GROUP,
        c = in(reg) c,
        c1 = in(reg) c.byte_add(BLOCK * 4),
        c2 = in(reg) c.byte_add(ROWS * row),
        c3 = in(reg) c.byte_add(ROWS * row + BLOCK * 4),
        sc = in(reg) row,
        options(nostack),
    );
}

/// The unit's rows and column blocks of `sums` requantized into its place in `out`.
///
/// # Safety
/// AVX-512 F, BW must be present; `unit.out` writable for `unit.rows` rows of `t.w.n` codes, and
/// its blocks within `t.w.blocks` (so `t.bias` and `t.mult` hold their 16 values each).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn requantize(t: &Tile, sums: &Sums, unit: Unit) {
    let n = t.w.n;
    let e = super::x86::Epilogue::new(t.rq);
    if unit.cols == 2 {
        return requantize_pairs(t, sums, unit, &e);
    }
    for j in 0..unit.cols {
        let col = (unit.b + j) * BLOCK;
        let bias = _mm512_loadu_si512(t.bias.as_ptr().add(col).cast());
        let m = _mm512_loadu_ps(t.mult.as_ptr().add(col));
        for r in 0..unit.rows {
            let s = _mm512_loadu_si512(sums.0.as_ptr().add(r * 2 * BLOCK + j * BLOCK).cast());
            e.store(
                _mm512_add_epi32(s, bias),
                m,
                unit.out.add(r * n + col),
                n - col,
            );
        }
    }
}

/// [`requantize`] of a unit two blocks wide, two rows at a time.
///
/// # Safety
/// As for [`requantize`], with `unit.cols == 2`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
#[inline]
unsafe fn requantize_pairs(t: &Tile, sums: &Sums, unit: Unit, e: &super::x86::Epilogue) {
    let (n, col) = (t.w.n, unit.b * BLOCK);
    let bias = |j: usize| _mm512_loadu_si512(t.bias.as_ptr().add(col + j * BLOCK).cast());
    let mult = |j: usize| _mm512_loadu_ps(t.mult.as_ptr().add(col + j * BLOCK));
    let (b, m) = ([bias(0), bias(1)], [mult(0), mult(1)]);
    // Row `r`'s sums of block `j`, bias added.
    let sum = |r: usize, j: usize| {
        let s = _mm512_loadu_si512(sums.0.as_ptr().add(r * 2 * BLOCK + j * BLOCK).cast());
        _mm512_add_epi32(s, b[j])
    };
    let mut r = 0;
    while r + 1 < unit.rows {
        let acc = [sum(r, 0), sum(r, 1), sum(r + 1, 0), sum(r + 1, 1)];
        let out = unit.out.add(r * n + col);
        e.store_two_rows(acc, [m[0], m[1], m[0], m[1]], out, out.add(n), n - col);
        r += 2;
    }
    if r < unit.rows {
        for j in 0..2 {
            let at = col + j * BLOCK;
            e.store(sum(r, j), m[j], unit.out.add(r * n + at), n - at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_even_whole_groups_of_at_most_64_bytes_that_cover_k() {
        for (k, chunks, width) in [
            (16, 1, 16),
            (27, 1, 28),
            (96, 2, 48),
            (144, 3, 48),
            (960, 15, 64),
        ] {
            assert_eq!(Cut::of(k), Cut { chunks, width }, "k {k}");
        }
        for k in 1..=super::super::quant::MAX_K {
            let cut = Cut::of(k);
            assert!(cut.width.is_multiple_of(GROUP) && cut.width <= ROW_BYTES && cut.padded() >= k);
            assert!(cut.padded() < k + ROW_BYTES, "k {k}: {cut:?}");
            assert!((cut.chunks - 1) * cut.width < k, "k {k}: an empty chunk");
            assert!(
                cut.padded() / GROUP < k.div_ceil(GROUP) + GROUPS_PER_TILE,
                "k {k}"
            );
        }
    }
}
