//! Global average pooling of `u8` codes into reals: each channel's codes summed exactly as
//! integers, then one multiply, [`mean`], shared with the reference. Dequantizing every code
//! first (as the f32 pooling would need) writes and reads four bytes a code and rounds once a
//! code.

use super::QParams;
use crate::{Error, Result};

/// The mean real value of `pixels` codes of one channel that sum to `sum`:
/// `(sum - zp * pixels) * (scale / pixels)`.
#[inline(always)]
pub fn mean(sum: u64, pixels: usize, q: QParams) -> f32 {
    let centred = sum as i64 - q.zero_point as i64 * pixels as i64;
    centred as f32 * (q.scale / pixels as f32)
}

/// `out[i, c]`: the mean real value of channel `c` over the `pixels` pixels of image `i`, for `x`
/// `[n, pixels, c]` codes encoded by `q`. Every extent is checked.
pub fn global_avg_pool(
    x: &[u8],
    n: usize,
    pixels: usize,
    c: usize,
    q: QParams,
    out: &mut [f32],
) -> Result<()> {
    if x.len() != n * pixels * c || out.len() != n * c || pixels == 0 {
        return Err(Error::Shape {
            op: "int8 global average pool",
            expected: vec![n * pixels * c, n * c],
            got: vec![x.len(), out.len()],
        });
    }
    // `u32` sums hold 2^24 codes of 255.
    if pixels > (u32::MAX / 255) as usize {
        return Err(Error::Invalid {
            op: "int8 global average pool",
            msg: format!(
                "{pixels} pixels an image: at most {} sum exactly",
                u32::MAX / 255
            ),
        });
    }
    let mut sums = vec![0u32; c];
    for (img, o) in x.chunks_exact(pixels * c).zip(out.chunks_exact_mut(c)) {
        sum_pixels(img, &mut sums);
        for (o, &s) in o.iter_mut().zip(&sums) {
            *o = mean(s as u64, pixels, q);
        }
    }
    Ok(())
}

/// `sums[c]` = the sum of channel `c` over the pixels of `img` (`[pixels, C]`): a whole pixel
/// added to the sums at a time, which vectorises over the channels.
#[inline(always)]
fn sum_pixels_body(img: &[u8], sums: &mut [u32]) {
    sums.fill(0);
    for px in img.chunks_exact(sums.len()) {
        for (s, &v) in sums.iter_mut().zip(px) {
            *s += v as u32;
        }
    }
}

crate::multiversion!(fn sum_pixels(img: &[u8], sums: &mut [u32]) => sum_pixels_body);
