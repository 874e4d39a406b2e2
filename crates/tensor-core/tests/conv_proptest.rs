//! The fast convolutions held to the plain reference over random shapes, strides and paddings.
//! Inputs are small integers stored as f32, so every sum is exact and results must match exactly.

use ndarray::{Array4, ArrayView4};
use proptest::prelude::*;
use tensor_core::conv::{self, reference, ConvGeom};
use tensor_core::{Activation, Padding};

#[derive(Clone, Debug)]
struct ConvProblem {
    x: Array4<f32>,
    w: Array4<f32>,
    dy_seed: u64,
    bias: Option<Vec<f32>>,
    stride: usize,
    padding: Padding,
    act: Activation,
    depthwise: bool,
}

fn ints(len: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec((-3i32..=3).prop_map(|v| v as f32), len)
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        (0..3usize, 0..3usize, 0..3usize, 0..3usize).prop_map(|(top, bottom, left, right)| {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        }),
    ]
}

fn act() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Linear),
        Just(Activation::Relu),
        Just(Activation::Relu6)
    ]
}

/// Small channel counts, and the multiples of 8 and 16 that the vector kernels take.
fn channels() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 1..6usize, 1 => prop::sample::select(vec![8usize, 16, 24, 32])]
}

prop_compose! {
    fn problem(depthwise: bool)(
        n in 1..3usize, h in 1..9usize, w in 1..9usize, cin in channels(), cout in channels(),
        kh in 1..4usize, kw in 1..4usize, stride in 1..4usize, padding in padding(), act in act(),
        with_bias in any::<bool>(), dy_seed in any::<u64>(),
    )(
        xs in ints(n * h * w * cin),
        ws in ints(kh * kw * cin * if depthwise { 1 } else { cout }),
        bs in ints(if depthwise { cin } else { cout }),
        n in Just(n), h in Just(h), w in Just(w), cin in Just(cin), cout in Just(cout),
        kh in Just(kh), kw in Just(kw), stride in Just(stride), padding in Just(padding), act in Just(act),
        with_bias in Just(with_bias), dy_seed in Just(dy_seed),
    ) -> ConvProblem {
        let wshape = if depthwise { (kh, kw, cin, 1) } else { (kh, kw, cin, cout) };
        ConvProblem {
            x: Array4::from_shape_vec((n, h, w, cin), xs).unwrap(),
            w: Array4::from_shape_vec(wshape, ws).unwrap(),
            dy_seed,
            bias: with_bias.then_some(bs),
            stride, padding, act, depthwise,
        }
    }
}

impl ConvProblem {
    fn geom(&self) -> Option<ConvGeom> {
        let f = if self.depthwise {
            ConvGeom::depthwise
        } else {
            ConvGeom::new
        };
        f(
            "test",
            self.x.shape(),
            self.w.shape(),
            self.stride,
            self.padding,
        )
        .ok()
    }

    fn reference(&self, g: &ConvGeom) -> Vec<f32> {
        let mut y = vec![0.0; g.out_shape().iter().product()];
        let (x, w) = (self.x.as_slice().unwrap(), self.w.as_slice().unwrap());
        if self.depthwise {
            reference::depthwise_forward(g, x, w, self.bias.as_deref(), self.act, &mut y);
        } else {
            reference::forward(g, x, w, self.bias.as_deref(), self.act, &mut y);
        }
        y
    }

    fn fast(&self) -> Vec<f32> {
        let f = if self.depthwise {
            conv::depthwise_conv2d
        } else {
            conv::conv2d
        };
        f(
            self.x.view(),
            self.w.view(),
            self.bias.as_deref(),
            self.stride,
            self.padding,
            self.act,
        )
        .unwrap()
        .into_raw_vec_and_offset()
        .0
    }

    fn dy(&self, g: &ConvGeom) -> Array4<f32> {
        let mut s = self.dy_seed;
        Array4::from_shape_fn(g.out_shape(), |_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 7) as f32 - 3.0
        })
    }

    fn check_backward(&self, g: &ConvGeom) {
        let dy = self.dy(g);
        let (x, w, dys) = (
            self.x.as_slice().unwrap(),
            self.w.as_slice().unwrap(),
            dy.as_slice().unwrap(),
        );
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        let back = if self.depthwise {
            conv::depthwise_conv2d_backward
        } else {
            conv::conv2d_backward
        };
        let (fdx, fdw) = back(
            self.x.view(),
            self.w.view(),
            dy.view(),
            self.stride,
            self.padding,
            true,
        )
        .unwrap();
        if self.depthwise {
            reference::depthwise_backward_input(g, dys, w, &mut dx);
            reference::depthwise_backward_weights(g, x, dys, &mut dw);
        } else {
            reference::backward_input(g, dys, w, &mut dx);
            reference::backward_weights(g, x, dys, &mut dw);
        }
        assert_eq!(fdx.unwrap().as_slice().unwrap(), &dx[..], "dx differs");
        assert_eq!(fdw.as_slice().unwrap(), &dw[..], "dw differs");
    }
}

fn run(p: &ConvProblem) -> Result<(), TestCaseError> {
    let g = p.geom();
    // An invalid geometry (kernel larger than the padded input) is a rejected case, not a pass.
    prop_assume!(g.is_some(), "no valid geometry");
    let g = g.expect("assumed above");
    let want = p.reference(&g);
    prop_assert_eq!(&p.fast(), &want);
    if !p.depthwise {
        // Every strategy, not only the one the dispatcher picks, is held to the reference.
        let (x, w) = (p.x.as_slice().unwrap(), p.w.as_slice().unwrap());
        let mut y = vec![0.0; want.len()];
        conv::im2col::forward(&g, x, w, p.bias.as_deref(), p.act, &mut y);
        prop_assert_eq!(&y, &want, "im2col");
        y.fill(f32::NAN);
        let slots = tensor_core::buffer::as_uninit(&mut y);
        if conv::direct::forward(&g, x, w, p.bias.as_deref(), p.act, slots) {
            prop_assert_eq!(&y, &want, "direct");
        }
    }
    p.check_backward(&g);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conv2d_matches_reference(p in problem(false)) { run(&p)?; }

    #[test]
    fn depthwise_matches_reference(p in problem(true)) { run(&p)?; }
}

fn fixed(
    depthwise: bool,
    x: (usize, usize, usize, usize),
    k: (usize, usize),
    cout: usize,
    stride: usize,
    padding: Padding,
) -> ConvProblem {
    let xs = Array4::from_shape_fn(x, |(n, y, xx, c)| {
        ((n * 7 + y * 5 + xx * 3 + c) % 7) as f32 - 3.0
    });
    let wshape = (k.0, k.1, x.3, if depthwise { 1 } else { cout });
    let ws = Array4::from_shape_fn(wshape, |(a, b, c, d)| {
        ((a * 3 + b * 5 + c + d * 2) % 5) as f32 - 2.0
    });
    ConvProblem {
        x: xs,
        w: ws,
        dy_seed: 1,
        bias: Some(vec![1.0; if depthwise { x.3 } else { cout }]),
        stride,
        padding,
        act: Activation::Relu6,
        depthwise,
    }
}

/// MobileNetV2's own cases, pinned: the stride-2 stem with Keras's ((0,1),(0,1)) padding,
/// a stride-2 depthwise after `correct_pad`, and a pointwise expansion.
#[test]
fn mobilenet_shapes_pinned() {
    let pad = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    for p in [
        fixed(false, (2, 16, 16, 3), (3, 3), 8, 2, pad),
        fixed(true, (2, 14, 14, 6), (3, 3), 6, 2, pad),
        fixed(true, (1, 7, 7, 5), (3, 3), 5, 1, Padding::Same),
        fixed(false, (2, 5, 5, 6), (1, 1), 12, 1, Padding::Valid),
        // Large enough for the parallel GEMM path with its fused bias + ReLU6 epilogue per row block.
        fixed(false, (2, 24, 24, 8), (1, 1), 16, 1, Padding::Valid),
        fixed(false, (1, 30, 30, 4), (3, 3), 8, 1, Padding::Same),
        // The vector kernels: the stem's 3 -> 32 (direct), depthwise at 16, 24 and 32 channels.
        fixed(false, (2, 17, 18, 3), (3, 3), 32, 2, pad),
        fixed(false, (1, 9, 11, 3), (3, 3), 24, 1, Padding::Same),
        fixed(true, (2, 12, 13, 32), (3, 3), 32, 1, Padding::Same),
        fixed(true, (1, 12, 12, 16), (3, 3), 16, 2, pad),
        fixed(true, (1, 9, 10, 24), (3, 3), 24, 1, Padding::Same),
    ] {
        run(&p).unwrap();
    }
}

#[test]
fn same_padding_output_shape_is_ceil() {
    let x = Array4::<f32>::zeros((1, 7, 8, 2));
    let w = Array4::<f32>::zeros((3, 3, 2, 1));
    let y = conv::conv2d(
        x.view(),
        w.view(),
        None,
        2,
        Padding::Same,
        Activation::Linear,
    )
    .unwrap();
    assert_eq!(y.shape(), &[1, 4, 4, 1]);
    let v: ArrayView4<f32> = y.view();
    assert!(v.iter().all(|&e| e == 0.0));
}
