//! Convolutions, NHWC activations and HWIO kernels.
//!
//! One strategy a file: `reference` (plain loops, the truth), `im2col` (general KxK: patches + GEMM),
//! `pointwise` (1x1 stride 1: one GEMM over the `[N*H*W, C]` view) and `depthwise` (per-channel KxK,
//! vectorised over channels). [`ConvStrategy::choose`] picks once from the shapes.

pub mod depthwise;
#[cfg(target_arch = "x86_64")]
mod depthwise_x86;
pub mod direct;
#[cfg(target_arch = "x86_64")]
mod direct_x86;
pub mod im2col;
pub mod pointwise;
pub mod reference;

use crate::{Activation, Error, PadDim, Padding, Result};
use ndarray::{Array4, ArrayView4};
use std::mem::MaybeUninit;

/// The resolved geometry of a convolution (regular or depthwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub rows: PadDim,
    pub cols: PadDim,
}

impl ConvGeom {
    /// Geometry of a regular convolution: `x` is `[N, H, W, Cin]`, `w` is HWIO `[kh, kw, Cin, Cout]`.
    pub fn new(
        op: &'static str,
        x: &[usize],
        w: &[usize],
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let (x, w) = (dims4(op, "input", x)?, dims4(op, "kernel", w)?);
        if w[2] != x[3] {
            return Err(Error::Shape {
                op,
                expected: vec![w[0], w[1], x[3], w[3]],
                got: w.to_vec(),
            });
        }
        let (rows, cols) = padding
            .resolve(x[1], x[2], w[0], w[1], stride)
            .map_err(|e| with_op(op, e))?;
        Ok(ConvGeom {
            n: x[0],
            cin: x[3],
            cout: w[3],
            kh: w[0],
            kw: w[1],
            stride,
            rows,
            cols,
        })
    }

    /// Geometry of a depthwise convolution: `w` is `[kh, kw, C, 1]` (Keras's depthwise layout).
    pub fn depthwise(
        op: &'static str,
        x: &[usize],
        w: &[usize],
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let (x, w) = (dims4(op, "input", x)?, dims4(op, "kernel", w)?);
        if w[2] != x[3] || w[3] != 1 {
            return Err(Error::Shape {
                op,
                expected: vec![w[0], w[1], x[3], 1],
                got: w.to_vec(),
            });
        }
        let (rows, cols) = padding
            .resolve(x[1], x[2], w[0], w[1], stride)
            .map_err(|e| with_op(op, e))?;
        Ok(ConvGeom {
            n: x[0],
            cin: x[3],
            cout: x[3],
            kh: w[0],
            kw: w[1],
            stride,
            rows,
            cols,
        })
    }

    /// Panics unless the slices have the lengths this geometry gives (`x` the input, `w` the
    /// kernel, `bias` one value per output channel, `y` the output): every public kernel entry
    /// point checks this first, so no kernel reads or writes outside a slice whatever it is given.
    pub fn check_slices(
        &self,
        op: &str,
        depthwise: bool,
        x: usize,
        w: usize,
        bias: Option<&[f32]>,
        y: usize,
    ) {
        let want_w = if depthwise {
            self.kh * self.kw * self.cin
        } else {
            self.kh * self.kw * self.cin * self.cout
        };
        let want = (
            self.in_shape().iter().product::<usize>(),
            want_w,
            self.out_shape().iter().product::<usize>(),
        );
        assert!(
            (x, w, y) == want && bias.is_none_or(|b| b.len() == self.cout),
            "{op}: slices of {x}, {w}, {y} elements (bias {:?}) for a geometry that needs {}, {}, {} (bias {})",
            bias.map(<[f32]>::len),
            want.0,
            want.1,
            want.2,
            self.cout
        );
        assert!(
            self.stride >= 1
                && self.rows.out <= self.rows.input + self.rows.before + self.rows.after
                && self.cols.out <= self.cols.input + self.cols.before + self.cols.after,
            "{op}: inconsistent geometry {self:?}"
        );
    }

    pub fn in_shape(&self) -> [usize; 4] {
        [self.n, self.rows.input, self.cols.input, self.cin]
    }
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.rows.out, self.cols.out, self.cout]
    }
    /// Multiply-adds of the forward pass (regular convolution).
    pub fn macs(&self) -> usize {
        self.n * self.rows.out * self.cols.out * self.cout * self.kh * self.kw * self.cin
    }
    /// Input pixel for output pixel `o` and kernel tap `k` along one axis, or `None` when in padding.
    #[inline(always)]
    pub fn tap(d: &PadDim, stride: usize, o: usize, k: usize) -> Option<usize> {
        let i = (o * stride + k) as isize - d.before as isize;
        (i >= 0 && (i as usize) < d.input).then_some(i as usize)
    }
    /// Output pixel that input pixel `i` reaches through tap `k` along one axis, if any (the
    /// inverse of [`tap`](Self::tap), for gradients gathered per input pixel).
    #[inline(always)]
    pub fn out_of(d: &PadDim, stride: usize, i: usize, k: usize) -> Option<usize> {
        let t = (i + d.before) as isize - k as isize;
        if t < 0 || !(t as usize).is_multiple_of(stride) {
            return None;
        }
        let o = t as usize / stride;
        (o < d.out).then_some(o)
    }
}

/// Kernel heights and widths the vector kernels take: their tap lists are fixed arrays.
pub const MAX_TAPS: usize = 16;

/// The taps of one axis that land inside the data, each with the index it lands on, in tap order.
pub struct Taps {
    list: [(usize, usize); MAX_TAPS],
    len: usize,
}

impl Taps {
    /// Taps `k < kernel` with `f(k)` inside; `kernel <= MAX_TAPS` (the callers dispatch on it).
    #[inline(always)]
    pub fn new(kernel: usize, f: impl Fn(usize) -> Option<usize>) -> Self {
        assert!(kernel <= MAX_TAPS, "{kernel} taps, at most {MAX_TAPS}");
        let mut t = Taps {
            list: [(0, 0); MAX_TAPS],
            len: 0,
        };
        for k in 0..kernel {
            if let Some(i) = f(k) {
                t.list[t.len] = (k, i);
                t.len += 1;
            }
        }
        t
    }
    #[inline(always)]
    pub fn as_slice(&self) -> &[(usize, usize)] {
        &self.list[..self.len]
    }
}

fn dims4(op: &'static str, what: &str, s: &[usize]) -> Result<[usize; 4]> {
    s.try_into().map_err(|_| Error::Invalid {
        op,
        msg: format!("{what} must be 4-D, got shape {s:?}"),
    })
}

fn with_op(op: &'static str, e: Error) -> Error {
    match e {
        Error::Invalid { msg, .. } => Error::Invalid { op, msg },
        other => other,
    }
}

/// Which implementation a regular convolution runs, chosen once from its geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvStrategy {
    Pointwise,
    /// Few input channels (the stem), forward only: [`direct`]; backward as im2col.
    Direct,
    Im2col,
}

impl ConvStrategy {
    pub fn choose(g: &ConvGeom) -> Self {
        let unpadded = g.rows.before + g.rows.after + g.cols.before + g.cols.after == 0;
        if g.kh == 1 && g.kw == 1 && g.stride == 1 && unpadded {
            ConvStrategy::Pointwise
        } else if direct::applies(g) {
            ConvStrategy::Direct
        } else {
            ConvStrategy::Im2col
        }
    }
}

/// The data of `a` as one slice: borrowed when it is already contiguous, copied otherwise.
pub fn contiguous<'a>(a: &ArrayView4<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match a.to_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

fn check_bias(op: &'static str, bias: Option<&[f32]>, c: usize) -> Result<()> {
    match bias {
        Some(b) if b.len() != c => Err(Error::Shape {
            op,
            expected: vec![c],
            got: vec![b.len()],
        }),
        _ => Ok(()),
    }
}

/// Regular convolution `y = act(conv(x, w) + bias)`; `x` NHWC, `w` HWIO.
pub fn conv2d(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
) -> Result<Array4<f32>> {
    let g = ConvGeom::new("conv2d", x.shape(), w.shape(), stride, padding)?;
    // SAFETY: `conv2d_slots` writes every slot when it returns `Ok`.
    unsafe {
        written(g.out_shape(), |y| {
            conv2d_slots(x, w, bias, stride, padding, act, y)
        })
    }
}

/// A fresh `shape` array whose values `write` puts into never-filled slots
/// ([`crate::buffer::uninit`]); `write`'s error, if any, is returned instead.
///
/// # Safety
/// `write` must write every slot of its argument whenever it returns `Ok`.
unsafe fn written(
    shape: [usize; 4],
    write: impl FnOnce(&mut [MaybeUninit<f32>]) -> Result<()>,
) -> Result<Array4<f32>> {
    let mut y = crate::buffer::uninit(shape.iter().product());
    write(&mut y)?;
    // SAFETY: `write` returned `Ok`, so it wrote every slot (the caller's guarantee).
    let y = unsafe { crate::buffer::assume_init(y) };
    Ok(Array4::from_shape_vec(shape, y).expect("length is the shape's size"))
}

/// [`conv2d`] into a caller's buffer `y` (`[N, OH, OW, Cout]`, every element overwritten): no allocation.
pub fn conv2d_into(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    conv2d_slots(
        x,
        w,
        bias,
        stride,
        padding,
        act,
        crate::buffer::as_uninit(y),
    )
}

/// [`conv2d`] into slots not yet written: on `Ok`, every one is. The 1x1 GEMM and the direct
/// kernel write them directly; im2col gets them filled first.
fn conv2d_slots(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) -> Result<()> {
    let g = ConvGeom::new("conv2d", x.shape(), w.shape(), stride, padding)?;
    check_bias("conv2d", bias, g.cout)?;
    check_out("conv2d", &g, y.len())?;
    let (xs, ws) = (contiguous(&x), contiguous(&w));
    let strategy = ConvStrategy::choose(&g);
    if strategy == ConvStrategy::Pointwise {
        pointwise::forward(&g, &xs, &ws, bias, act, y);
        return Ok(());
    }
    if strategy == ConvStrategy::Direct && direct::forward(&g, &xs, &ws, bias, act, y) {
        return Ok(());
    }
    im2col::forward(&g, &xs, &ws, bias, act, crate::buffer::filled(y));
    Ok(())
}

fn check_out(op: &'static str, g: &ConvGeom, len: usize) -> Result<()> {
    let want: usize = g.out_shape().iter().product();
    if len != want {
        return Err(Error::Shape {
            op,
            expected: g.out_shape().to_vec(),
            got: vec![len],
        });
    }
    Ok(())
}

/// Gradients of a regular convolution (without activation): returns `(dx, dw)`;
/// `dx` only when `need_dx` (a frozen stem needs none).
pub fn conv2d_backward(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    dy: ArrayView4<f32>,
    stride: usize,
    padding: Padding,
    need_dx: bool,
) -> Result<(Option<Array4<f32>>, Array4<f32>)> {
    let g = ConvGeom::new("conv2d_backward", x.shape(), w.shape(), stride, padding)?;
    crate::check_shape("conv2d_backward", &g.out_shape(), dy.shape())?;
    let (xs, ws, dys) = (contiguous(&x), contiguous(&w), contiguous(&dy));
    let mut dw = Array4::zeros(w.raw_dim());
    let dws = dw.as_slice_mut().expect("contiguous");
    let strategy = ConvStrategy::choose(&g);
    match strategy {
        ConvStrategy::Pointwise => pointwise::backward_weights(&g, &xs, &dys, dws),
        ConvStrategy::Direct | ConvStrategy::Im2col => im2col::backward_weights(&g, &xs, &dys, dws),
    }
    let dx = need_dx.then(|| {
        let shape = x.dim().into();
        // SAFETY: both arms write every slot (the 1x1 GEMM directly, col2im after the fill).
        unsafe {
            written(shape, |dx| {
                match strategy {
                    ConvStrategy::Pointwise => pointwise::backward_input(&g, &dys, &ws, dx),
                    ConvStrategy::Direct | ConvStrategy::Im2col => {
                        im2col::backward_input(&g, &dys, &ws, crate::buffer::filled(dx))
                    }
                }
                Ok(())
            })
        }
    });
    Ok((dx.transpose()?, dw))
}

/// Depthwise convolution `y = act(dwconv(x, w) + bias)`; `w` is `[kh, kw, C, 1]`.
pub fn depthwise_conv2d(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
) -> Result<Array4<f32>> {
    let g = ConvGeom::depthwise("depthwise_conv2d", x.shape(), w.shape(), stride, padding)?;
    // SAFETY: `depthwise_slots` writes every slot when it returns `Ok`.
    unsafe {
        written(g.out_shape(), |y| {
            depthwise_slots(x, w, bias, stride, padding, act, y)
        })
    }
}

/// [`depthwise_conv2d`] into a caller's buffer `y` (every element overwritten): no allocation.
pub fn depthwise_conv2d_into(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
    y: &mut [f32],
) -> Result<()> {
    depthwise_slots(
        x,
        w,
        bias,
        stride,
        padding,
        act,
        crate::buffer::as_uninit(y),
    )
}

/// [`depthwise_conv2d`] into slots not yet written: on `Ok`, every one is.
fn depthwise_slots(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    bias: Option<&[f32]>,
    stride: usize,
    padding: Padding,
    act: Activation,
    y: &mut [MaybeUninit<f32>],
) -> Result<()> {
    let g = ConvGeom::depthwise("depthwise_conv2d", x.shape(), w.shape(), stride, padding)?;
    check_bias("depthwise_conv2d", bias, g.cout)?;
    check_out("depthwise_conv2d", &g, y.len())?;
    let (xs, ws) = (contiguous(&x), contiguous(&w));
    depthwise::forward(&g, &xs, &ws, bias, act, y);
    Ok(())
}

/// Gradients of a depthwise convolution (without activation): `(dx, dw)`.
pub fn depthwise_conv2d_backward(
    x: ArrayView4<f32>,
    w: ArrayView4<f32>,
    dy: ArrayView4<f32>,
    stride: usize,
    padding: Padding,
    need_dx: bool,
) -> Result<(Option<Array4<f32>>, Array4<f32>)> {
    let g = ConvGeom::depthwise(
        "depthwise_conv2d_backward",
        x.shape(),
        w.shape(),
        stride,
        padding,
    )?;
    crate::check_shape("depthwise_conv2d_backward", &g.out_shape(), dy.shape())?;
    let (xs, ws, dys) = (contiguous(&x), contiguous(&w), contiguous(&dy));
    let mut dw = Array4::zeros(w.raw_dim());
    depthwise::backward_weights(&g, &xs, &dys, dw.as_slice_mut().expect("contiguous"));
    let dx = need_dx.then(|| {
        let shape = x.dim().into();
        // SAFETY: `backward_input` writes every slot.
        unsafe {
            written(shape, |dx| {
                depthwise::backward_input(&g, &dys, &ws, dx);
                Ok(())
            })
        }
    });
    Ok((dx.transpose()?, dw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mismatch_names_both_shapes() {
        let x = Array4::<f32>::zeros((1, 5, 5, 3));
        let w = Array4::<f32>::zeros((3, 3, 4, 8));
        let e = conv2d(
            x.view(),
            w.view(),
            None,
            1,
            Padding::Same,
            Activation::Linear,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "conv2d: shape mismatch: expected [3, 3, 3, 8], got [3, 3, 4, 8]"
        );
    }

    #[test]
    fn kernel_larger_than_input_is_an_error_not_a_panic() {
        let x = Array4::<f32>::zeros((1, 2, 2, 1));
        let w = Array4::<f32>::zeros((3, 3, 1, 1));
        let e = conv2d(
            x.view(),
            w.view(),
            None,
            1,
            Padding::Valid,
            Activation::Linear,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("conv2d: input of 2"), "{e}");
    }

    #[test]
    fn strategy_choice() {
        let g = ConvGeom::new("t", &[1, 4, 4, 3], &[1, 1, 3, 5], 1, Padding::Valid).unwrap();
        assert_eq!(ConvStrategy::choose(&g), ConvStrategy::Pointwise);
        let g = ConvGeom::new("t", &[1, 4, 4, 3], &[1, 1, 3, 5], 2, Padding::Valid).unwrap();
        assert_eq!(ConvStrategy::choose(&g), ConvStrategy::Im2col);
    }
}
