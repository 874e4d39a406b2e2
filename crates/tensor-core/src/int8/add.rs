//! The residual sum of two `u8` tensors with their own encodings, into a third.

use super::{Isa, QParams};
use crate::{Error, Result};
use rayon::prelude::*;

/// `out = clamp(round((a - zp_a) * a_mult + (b - zp_b) * b_mult)) + zp_out`, with
/// `x_mult = scale_x / scale_out`; a multiply and an add, never fused, so every path rounds alike.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddParams {
    pub a_mult: f32,
    pub a_zp: i32,
    pub b_mult: f32,
    pub b_zp: i32,
    pub out_zp: i32,
}

impl AddParams {
    pub fn new(a: QParams, b: QParams, out: QParams) -> AddParams {
        AddParams {
            a_mult: a.scale / out.scale,
            a_zp: a.zero_point,
            b_mult: b.scale / out.scale,
            b_zp: b.zero_point,
            out_zp: out.zero_point,
        }
    }

    #[inline(always)]
    pub fn apply(&self, a: u8, b: u8) -> u8 {
        let y = (a as i32 - self.a_zp) as f32 * self.a_mult
            + (b as i32 - self.b_zp) as f32 * self.b_mult;
        let lo = -self.out_zp as f32;
        let hi = (255 - self.out_zp) as f32;
        (y.max(lo).min(hi).round_ties_even() as i32 + self.out_zp) as u8
    }
}

/// The sum, in parallel chunks.
pub fn forward(isa: Isa, a: &[u8], b: &[u8], p: &AddParams, out: &mut [u8]) -> Result<()> {
    if a.len() != b.len() || a.len() != out.len() {
        return Err(Error::Shape {
            op: "int8 add",
            expected: vec![a.len(), a.len(), a.len()],
            got: vec![a.len(), b.len(), out.len()],
        });
    }
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(o, (a, b))| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `runs_vnni` detected AVX-512 F, BW, VL and VNNI; the chunks have equal lengths.
            _ if isa.runs_vnni() => unsafe { super::x86::add_avx512(a, b, p, o) },
            _ => crate::simd::vectorised(|| {
                for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
                    *o = p.apply(a, b);
                }
            }),
        });
    Ok(())
}
