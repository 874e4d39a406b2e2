//! MobileNetV2's architecture table and Keras's channel rounding.

/// Keras's `_make_divisible(v, 8)`: round to the nearest multiple of 8, never below 8, never more
/// than 10% down.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut new_v = d.max(((v + d / 2.0) as usize / divisor * divisor) as f64);
    if new_v < 0.9 * v {
        new_v += d;
    }
    new_v as usize
}

/// The widths Keras publishes weights for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Alpha(pub f32);

impl Alpha {
    pub const PUBLISHED: [f32; 6] = [0.35, 0.5, 0.75, 1.0, 1.3, 1.4];

    pub fn first_filters(self) -> usize {
        make_divisible(32.0 * self.0 as f64, 8)
    }

    /// Output channels of an inverted-residual block with nominal `filters`
    /// (`_make_divisible(int(filters * alpha), 8)`).
    pub fn block_filters(self, filters: usize) -> usize {
        make_divisible((filters as f64 * self.0 as f64).floor(), 8)
    }

    /// `Conv_1` channels: 1280, scaled only above alpha 1.0.
    pub fn last_filters(self) -> usize {
        if self.0 > 1.0 {
            make_divisible(1280.0 * self.0 as f64, 8)
        } else {
            1280
        }
    }
}

/// One inverted-residual block: `(filters, stride, expansion)`, block ids 0..=16.
pub const BLOCKS: [(usize, usize, usize); 17] = [
    (16, 1, 1),
    (24, 2, 6),
    (24, 1, 6),
    (32, 2, 6),
    (32, 1, 6),
    (32, 1, 6),
    (64, 2, 6),
    (64, 1, 6),
    (64, 1, 6),
    (64, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (96, 1, 6),
    (160, 2, 6),
    (160, 1, 6),
    (160, 1, 6),
    (320, 1, 6),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keras_channel_counts() {
        assert_eq!(Alpha(0.35).first_filters(), 16);
        assert_eq!(Alpha(1.0).first_filters(), 32);
        assert_eq!(Alpha(1.4).first_filters(), 48);
        assert_eq!(Alpha(1.3).first_filters(), 40);
        assert_eq!(Alpha(0.35).block_filters(16), 8);
        assert_eq!(Alpha(0.35).block_filters(320), 112);
        assert_eq!(Alpha(0.75).block_filters(24), 24);
        assert_eq!(Alpha(0.35).last_filters(), 1280);
        assert_eq!(Alpha(1.4).last_filters(), 1792);
    }
}
