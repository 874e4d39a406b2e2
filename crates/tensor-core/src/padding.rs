//! Padding as a value, resolved once per axis into `{out, before, after}`.

use crate::{Error, Result};

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Padding {
    /// No padding; windows that do not fit are dropped.
    #[default]
    Valid,
    /// TensorFlow's `same`: `out = ceil(in / stride)`, the odd extra pixel goes after.
    Same,
    /// Explicit zero padding `((top, bottom), (left, right))`, as Keras's `ZeroPadding2D`.
    Explicit {
        top: usize,
        bottom: usize,
        left: usize,
        right: usize,
    },
}

/// One axis of a resolved padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PadDim {
    pub input: usize,
    pub out: usize,
    pub before: usize,
    pub after: usize,
}

impl PadDim {
    /// Resolves one axis for a kernel of size `k` and the given stride.
    pub fn resolve(
        input: usize,
        k: usize,
        stride: usize,
        before: usize,
        after: usize,
    ) -> Result<Self> {
        if stride == 0 || k == 0 {
            return Err(Error::Invalid {
                op: "padding",
                msg: format!("kernel {k} and stride {stride} must be positive"),
            });
        }
        let padded = input + before + after;
        if padded < k {
            return Err(Error::Invalid {
                op: "padding",
                msg: format!("input of {input} (padded {padded}) is smaller than the kernel {k}"),
            });
        }
        Ok(PadDim {
            input,
            out: (padded - k) / stride + 1,
            before,
            after,
        })
    }

    /// TensorFlow's `same` rule.
    pub fn same(input: usize, k: usize, stride: usize) -> Result<Self> {
        if stride == 0 {
            return Err(Error::Invalid {
                op: "padding",
                msg: "stride must be positive".into(),
            });
        }
        let out = input.div_ceil(stride);
        let total = ((out.saturating_sub(1)) * stride + k).saturating_sub(input);
        let before = total / 2;
        Self::resolve(input, k, stride, before, total - before)
    }
}

impl Padding {
    /// Resolves `(rows, cols)` for a `kh x kw` kernel with the given stride.
    pub fn resolve(
        self,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
    ) -> Result<(PadDim, PadDim)> {
        match self {
            Padding::Valid => Ok((
                PadDim::resolve(h, kh, stride, 0, 0)?,
                PadDim::resolve(w, kw, stride, 0, 0)?,
            )),
            Padding::Same => Ok((PadDim::same(h, kh, stride)?, PadDim::same(w, kw, stride)?)),
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            } => Ok((
                PadDim::resolve(h, kh, stride, top, bottom)?,
                PadDim::resolve(w, kw, stride, left, right)?,
            )),
        }
    }
}

/// Keras's `correct_pad` for a stride-2 3x3 layer: `((k/2 - adjust_h, k/2), (k/2 - adjust_w, k/2))`
/// where `adjust = 1` for an even size and `0` for an odd one. Returns `((top, bottom), (left, right))`.
pub fn keras_correct_pad(h: usize, w: usize, k: usize) -> ((usize, usize), (usize, usize)) {
    let correct = k / 2;
    let adj = |n: usize| usize::from(n.is_multiple_of(2));
    ((correct - adj(h), correct), (correct - adj(w), correct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_stride2_even_puts_extra_after() {
        // 224 -> 112 with a 3x3 kernel: pad (0, 1).
        let d = PadDim::same(224, 3, 2).unwrap();
        assert_eq!((d.out, d.before, d.after), (112, 0, 1));
    }

    #[test]
    fn same_stride2_odd_pads_both_sides() {
        let d = PadDim::same(7, 3, 2).unwrap();
        assert_eq!((d.out, d.before, d.after), (4, 1, 1));
    }

    #[test]
    fn same_stride1_3x3() {
        let d = PadDim::same(5, 3, 1).unwrap();
        assert_eq!((d.out, d.before, d.after), (5, 1, 1));
    }

    #[test]
    fn valid_drops_partial_windows() {
        let d = PadDim::resolve(8, 3, 2, 0, 0).unwrap();
        assert_eq!(d.out, 3);
    }

    #[test]
    fn keras_correct_pad_even_and_odd() {
        assert_eq!(keras_correct_pad(224, 224, 3), ((0, 1), (0, 1)));
        assert_eq!(keras_correct_pad(7, 8, 3), ((1, 1), (0, 1)));
    }

    #[test]
    fn kernel_larger_than_input_is_an_error() {
        assert!(PadDim::resolve(2, 3, 1, 0, 0).is_err());
    }
}
