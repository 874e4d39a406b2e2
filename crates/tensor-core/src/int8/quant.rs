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

    pub fn quantize(&self, x: f32) -> u8 {
        (x / self.scale + self.zero_point as f32)
            .round_ties_even()
            .clamp(0.0, 255.0) as u8
    }

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

/// The rule itself, shared by the reference and the portable kernels (the vector ones do the same
/// operations in the same order).
#[inline(always)]
pub fn requantize(acc: i32, multiplier: f32, lo: f32, hi: f32, zero_point: i32) -> u8 {
    let y = (acc as f32 * multiplier).max(lo).min(hi);
    (y.round_ties_even() as i32 + zero_point) as u8
}
