//! The 1x1 convolution (a GEMM over pixels) in integers: `u8` codes times packed `i8` weights,
//! exact `i32` sums, requantized once with bias and activation into `u8` codes.

use super::pack::{PackedWeights, BLOCK, GROUP, TAIL_BYTES};
use super::{Isa, Requant};
use crate::aligned::Aligned;
use crate::{Error, Result};
use rayon::prelude::*;

/// Whether a product over `k` channels runs faster on AMX tiles than on the VNNI kernel: over
/// few whole groups of four a tile multiplies so little per instruction that the sums' trip
/// through memory costs as much as it saves; over a partial last group the VNNI kernel broadcasts
/// bytes past `k` (or, in the last row, copies the group) and AMX wins. Alone, on data from memory
/// (`cargo bench -p tensor-core --bench int8 -- pw_`, AMX / VNNI time): 16 -> 96 0.96x, 32 -> 16
/// 0.96x, 24 -> 144 0.96x, 32 -> 192 1.00x, 27 -> 32 0.87x, 64 -> 384 0.71x, 144 -> 24 0.73x,
/// 320 -> 1280 0.37x; in the network, with the codes in cache, AMX for every `k` made
/// `e2e infer --int8` 0.97x as fast, so the VNNI kernel keeps the short whole-group products.
fn amx_pays(k: usize) -> bool {
    k > 32 || !k.is_multiple_of(GROUP)
}

/// Fewest rows one task takes: a few microkernel tiles.
const MIN_ROWS_PER_TASK: usize = 64;

/// `out[r, c] = requant(bias[c] + sum_k (a[r, k] - zp_a) * w[k, c])`: `a` is `[rows, w.k]` codes,
/// `out` is `[rows, w.n]`. Every extent is checked here; rows are split over the thread pool.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    a: &[u8],
    rows: usize,
    zp_a: i32,
    w: &PackedWeights,
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) -> Result<()> {
    check(a, rows, zp_a, w, bias, rq, out)?;
    // Raw codes are summed; the zero point's share is one term per column.
    // Both padded to whole blocks with zeros, and on cache lines (a block's 16 values are one).
    let mut padded_bias = Aligned::zeroed(w.blocks * BLOCK);
    let mut mult = Aligned::zeroed(w.blocks * BLOCK);
    for c in 0..w.n {
        padded_bias[c] = bias[c] - zp_a * w.col_sums[c];
        mult[c] = rq.multiplier[c];
    }
    let bias = padded_bias;
    let tile = Tile {
        w,
        bias: &bias,
        mult: &mult,
        rq,
    };
    if rows == 0 {
        return Ok(());
    }
    // About four tasks a thread: enough to balance, few enough that scheduling costs nothing.
    // Whole panels of 32 rows (the AMX kernel's; 16 rows of the VNNI kernel's 6-row tiles too).
    let per_task = rows
        .div_ceil(4 * rayon::current_num_threads())
        .max(MIN_ROWS_PER_TASK)
        .next_multiple_of(32);
    out.par_chunks_mut(per_task * w.n)
        .zip(a.par_chunks(per_task * w.k))
        .for_each(|(o, a)| tile.rows(isa, a, o));
    Ok(())
}

fn check(
    a: &[u8],
    rows: usize,
    zp_a: i32,
    w: &PackedWeights,
    bias: &[i32],
    rq: &Requant,
    out: &mut [u8],
) -> Result<()> {
    let op = "int8 pointwise";
    rq.check(op)?;
    super::quant::check_sums(op, bias, w.k)?;
    if a.len() != rows * w.k || out.len() != rows * w.n {
        return Err(Error::Shape {
            op,
            expected: vec![rows * w.k, rows * w.n],
            got: vec![a.len(), out.len()],
        });
    }
    if bias.len() != w.n || rq.channels() != w.n || w.col_sums.len() != w.n {
        return Err(Error::Shape {
            op,
            expected: vec![w.n, w.n, w.n],
            got: vec![bias.len(), rq.channels(), w.col_sums.len()],
        });
    }
    if w.data.len() != w.blocks * w.groups * BLOCK * GROUP + TAIL_BYTES
        || w.groups != w.k.div_ceil(GROUP)
        || w.blocks != w.n.div_ceil(BLOCK)
        || w.col_sums
            .iter()
            .any(|s| s.unsigned_abs() as usize > 128 * w.k)
    {
        return Err(Error::Invalid {
            op,
            msg: format!(
                "packed weights of {} bytes do not hold [{}, {}]",
                w.data.len(),
                w.k,
                w.n
            ),
        });
    }
    if !(0..=255).contains(&zp_a) {
        return Err(Error::Invalid {
            op,
            msg: format!("input zero point {zp_a} is not a u8 code"),
        });
    }
    Ok(())
}

/// What every row of one call shares: weights, the zero-point-corrected bias and the multipliers,
/// both padded to whole blocks.
pub(super) struct Tile<'a> {
    pub w: &'a PackedWeights,
    pub bias: &'a [i32],
    pub mult: &'a [f32],
    pub rq: &'a Requant,
}

impl Tile<'_> {
    /// All rows of `a` (whole rows of `w.k` codes) into `out`.
    fn rows(&self, isa: Isa, a: &[u8], out: &mut [u8]) {
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `supported` detected AMX-TILE, AMX-INT8 with the tile data permitted and
            // AVX-512 F, BW, VL, VNNI (`Isa::probe`); `forward` checked every extent the kernel
            // reads (`a` whole rows, `w.data` the blocks and their tail, `bias` and `mult` whole
            // blocks) or writes (`out` the same rows).
            Isa::Amx if Isa::Amx.supported() && amx_pays(self.w.k) => unsafe {
                super::amx::pointwise_amx(self, a, out)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `runs_vnni` detected AVX-512 F, BW, VL and VNNI; `forward` checked every
            // extent the kernel reads or writes (`a`, `out` whole rows; `bias`, `mult` whole blocks).
            _ if isa.runs_vnni() => unsafe { super::x86::pointwise_vnni(self, a, out) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, with AVX2 detected.
            Isa::Avx2 if Isa::Avx2.supported() => unsafe {
                super::x86::pointwise_avx2(self, a, out)
            },
            _ => self.portable(a, out),
        }
    }

    /// Plain Rust over the packed layout.
    fn portable(&self, a: &[u8], out: &mut [u8]) {
        let (k, n, w) = (self.w.k, self.w.n, self.w);
        let (lo, hi) = self.rq.bounds();
        for (row, o) in a.chunks_exact(k).zip(out.chunks_exact_mut(n)) {
            for b in 0..w.blocks {
                let mut acc = [0i32; BLOCK];
                acc.copy_from_slice(&self.bias[b * BLOCK..(b + 1) * BLOCK]);
                for g in 0..w.groups {
                    let p = w.panel(b, g);
                    for j in 0..GROUP.min(k - g * GROUP) {
                        let v = row[g * GROUP + j] as i32;
                        for (lane, s) in acc.iter_mut().enumerate() {
                            *s += v * p[lane * GROUP + j] as i32;
                        }
                    }
                }
                for (lane, &s) in acc.iter().enumerate().take(n - (b * BLOCK).min(n)) {
                    let c = b * BLOCK + lane;
                    o[c] = super::quant::requantize(s, self.mult[c], lo, hi, self.rq.zero_point);
                }
            }
        }
    }
}
