//! 1x1 convolution weights packed once for the integer GEMM (XNNPACK's and oneDNN's VNNI layout):
//! columns in blocks of 16, and within a block, for each group of 4 input channels, 16 lanes of
//! 4 bytes, so one 64-byte load feeds one `vpdpbusd` (16 columns x 4 channels).

use crate::aligned::Aligned;
use crate::{Error, Result};

/// Output columns per block (one 512-bit register of `i32` sums).
pub const BLOCK: usize = 16;
/// Input channels per group (the bytes one `vpdpbusd` lane sums).
pub const GROUP: usize = 4;
/// Zero bytes after the last block: an AMX weight tile (16 groups) may start at any group of a
/// block and so reach 15 groups past the last one.
pub const TAIL_BYTES: usize = 16 * BLOCK * GROUP;

/// `[k, n]` `i8` weights in blocks; missing channels and columns are zero.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedWeights {
    pub k: usize,
    pub n: usize,
    /// `ceil(k / 4)`.
    pub groups: usize,
    /// `ceil(n / 16)`.
    pub blocks: usize,
    /// `data[((block * groups + group) * 16 + lane) * 4 + j] = w[4 * group + j, 16 * block + lane]`,
    /// then [`TAIL_BYTES`] zeros; from a cache line, so every block's 64-byte group is one line.
    pub data: Aligned<i8>,
    /// `sum_k w[k, c]`: with it a kernel sums raw codes and subtracts `zp * col_sums[c]` once.
    pub col_sums: Vec<i32>,
}

impl PackedWeights {
    /// Packs row-major `[k, n]` weights.
    pub fn pack(w: &[i8], k: usize, n: usize) -> Result<PackedWeights> {
        if w.len() != k * n || k == 0 || n == 0 || k > super::quant::MAX_K {
            return Err(Error::Shape {
                op: "int8 pack",
                expected: vec![k, n],
                got: vec![w.len()],
            });
        }
        let (groups, blocks) = (k.div_ceil(GROUP), n.div_ceil(BLOCK));
        let mut data = Aligned::zeroed(blocks * groups * BLOCK * GROUP + TAIL_BYTES);
        for i in 0..k {
            let (g, j) = (i / GROUP, i % GROUP);
            for c in 0..n {
                let (b, lane) = (c / BLOCK, c % BLOCK);
                data[((b * groups + g) * BLOCK + lane) * GROUP + j] = w[i * n + c];
            }
        }
        let col_sums = (0..n)
            .map(|c| (0..k).map(|i| w[i * n + c] as i32).sum())
            .collect();
        Ok(PackedWeights {
            k,
            n,
            groups,
            blocks,
            data,
            col_sums,
        })
    }

    /// The row-major `[k, n]` weights back.
    pub fn unpack(&self) -> Vec<i8> {
        let mut w = vec![0i8; self.k * self.n];
        for i in 0..self.k {
            for c in 0..self.n {
                let (b, lane) = (c / BLOCK, c % BLOCK);
                w[i * self.n + c] =
                    self.data[((b * self.groups + i / GROUP) * BLOCK + lane) * GROUP + i % GROUP];
            }
        }
        w
    }

    /// The 64 bytes of `block` for input-channel group `group`.
    #[inline(always)]
    pub fn panel(&self, block: usize, group: usize) -> &[i8] {
        let at = (block * self.groups + group) * BLOCK * GROUP;
        &self.data[at..at + BLOCK * GROUP]
    }
}
