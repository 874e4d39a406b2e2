//! Quantization parameters and the one requantization rule every kernel applies.

/// An affine `u8` encoding of real values: `real = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QParams {
    /// The encoding that covers `[min, max]` (widened to hold 0, so that zero padding is exact).
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zero_point = (-min / scale).round().clamp(0.0, 255.0) as i32;
        QParams { scale, zero_point }
    }

    #[inline(always)]
    pub fn quantize(&self, x: f32) -> u8 {
        (x / self.scale + self.zero_point as f32)
            .round_ties_even()
            .clamp(0.0, 255.0) as u8
    }

    #[inline(always)]
    pub fn dequantize(&self, q: u8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }

    /// The codes `[lo, hi]` that hold `[min, max]` (ReLU6: `[0, 6]`), within `0..=255`.
    pub fn clamp_codes(&self, min: f32, max: f32) -> (u8, u8) {
        (self.quantize(min), self.quantize(max))
    }
}

/// From an `i32` sum to the output code: `clamp(round(acc * multiplier[c]), lo - zp, hi - zp) + zp`,
/// the clamp and rounding (to nearest, ties to even) in `f32` as XNNPACK's fp32 requantization.
/// The clamp comes before the rounding so no value can overflow the conversion back to `i32`.
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    /// Per output channel: `input scale * weight scale[c] / output scale`.
    pub multiplier: Vec<f32>,
    pub zero_point: i32,
    /// Lowest and highest code (an activation's range, or `0..=255`).
    pub lo: u8,
    pub hi: u8,
}

impl Requant {
    pub fn channels(&self) -> usize {
        self.multiplier.len()
    }

    /// The clamp bounds relative to the zero point, as the kernels use them.
    #[inline(always)]
    pub fn bounds(&self) -> (f32, f32) {
        (
            (self.lo as i32 - self.zero_point) as f32,
            (self.hi as i32 - self.zero_point) as f32,
        )
    }

    /// The output code of channel `c` for the sum `acc`.
    #[inline(always)]
    pub fn apply(&self, acc: i32, c: usize) -> u8 {
        let (lo, hi) = self.bounds();
        requantize(acc, self.multiplier[c], lo, hi, self.zero_point)
    }

    /// `zero_point` and the bounds must be codes, `lo <= hi`, every multiplier finite and positive.
    pub fn check(&self, op: &'static str) -> crate::Result<()> {
        let bad = |msg: String| Err(crate::Error::Invalid { op, msg });
        if !(0..=255).contains(&self.zero_point) || self.lo > self.hi {
            return bad(format!(
                "zero point {} and codes {}..={} are not a u8 encoding",
                self.zero_point, self.lo, self.hi
            ));
        }
        if let Some(m) = self
            .multiplier
            .iter()
            .find(|m| !m.is_finite() || **m <= 0.0)
        {
            return bad(format!("requantization multiplier {m} is not positive"));
        }
        Ok(())
    }
}

/// Largest `|bias|` the kernels accept, and the most products one sum may hold: with the zero
/// point's share of a sum as large again as the products, every sum stays inside an `i32`
/// (`2^24 + 2 * 255 * 128 * 2^14 < 2^31`), so no kernel can overflow, whatever it is given.
pub const MAX_BIAS: i32 = 1 << 24;
pub const MAX_K: usize = 1 << 14;

/// Refuses biases and sum lengths that could overflow an `i32` sum.
pub fn check_sums(op: &'static str, bias: &[i32], k: usize) -> crate::Result<()> {
    if k > MAX_K {
        return Err(crate::Error::Invalid {
            op,
            msg: format!("{k} products per sum (at most {MAX_K})"),
        });
    }
    match bias.iter().find(|b| b.unsigned_abs() > MAX_BIAS as u32) {
        Some(b) => Err(crate::Error::Invalid {
            op,
            msg: format!("bias {b} out of range (|bias| <= {MAX_BIAS})"),
        }),
        None => Ok(()),
    }
}

/// The rule itself, shared by the reference and the portable kernels (the vector ones do the same
/// operations in the same order).
#[inline(always)]
pub fn requantize(acc: i32, multiplier: f32, lo: f32, hi: f32, zero_point: i32) -> u8 {
    let y = (acc as f32 * multiplier).max(lo).min(hi);
    (y.round_ties_even() as i32 + zero_point) as u8
}

/// Encodes `x` into `out` (`QParams::quantize` per element), in parallel chunks.
pub fn quantize_slice(isa: super::Isa, x: &[f32], q: QParams, out: &mut [u8]) -> crate::Result<()> {
    use rayon::prelude::*;
    if x.len() != out.len() {
        return Err(crate::Error::Shape {
            op: "quantize",
            expected: vec![x.len()],
            got: vec![out.len()],
        });
    }
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(o, x)| match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `runs_vnni` detected AVX-512 F, BW, VL and VNNI; the chunks have equal lengths.
            _ if isa.runs_vnni() => unsafe { super::x86::quantize_avx512(x, q, o) },
            _ => crate::simd::vectorised(|| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = q.quantize(v);
                }
            }),
        });
    Ok(())
}

/// Decodes codes into `out` (`QParams::dequantize` per element).
pub fn dequantize_slice(codes: &[u8], q: QParams, out: &mut [f32]) -> crate::Result<()> {
    use rayon::prelude::*;
    if codes.len() != out.len() {
        return Err(crate::Error::Shape {
            op: "dequantize",
            expected: vec![codes.len()],
            got: vec![out.len()],
        });
    }
    out.par_chunks_mut(CHUNK)
        .zip(codes.par_chunks(CHUNK))
        .for_each(|(o, c)| {
            crate::simd::vectorised(|| {
                for (o, &v) in o.iter_mut().zip(c) {
                    *o = q.dequantize(v);
                }
            })
        });
    Ok(())
}

/// Elements per parallel task of the element-wise conversions.
const CHUNK: usize = 1 << 15;
