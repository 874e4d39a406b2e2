//! The tiled inverted-residual block (row tiles and channel groups) against its reference: the three layers run one after
//! another with the public kernels. Integer-valued data, so every sum is exact and the results
//! must be identical, whatever the split. On real values the splits agree bit for bit too.

use ndarray::{Array1, Array4};
use proptest::prelude::*;
use tensor_core::inverted_residual::{forward_split, Depthwise, Pointwise, Split};
use tensor_core::panels::PackedB;
use tensor_core::{add, conv, Activation, Padding};

fn ints(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 5) as f32 - 2.0
        })
        .collect()
}

fn act(i: u8) -> Activation {
    [Activation::Linear, Activation::Relu, Activation::Relu6][i as usize % 3]
}

#[derive(Debug, Clone)]
struct Block {
    n: usize,
    h: usize,
    w: usize,
    cin: usize,
    cexp: Option<usize>,
    cout: usize,
    stride: usize,
    padding: Padding,
    acts: [u8; 3],
    split: Split,
    seed: u64,
}

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Same),
        Just(Padding::Valid),
        (0..2usize, 0..2usize, 0..2usize, 0..2usize).prop_map(|(top, bottom, left, right)| {
            Padding::Explicit {
                top,
                bottom,
                left,
                right,
            }
        }),
    ]
}

fn channels() -> impl Strategy<Value = usize> {
    prop_oneof![1..6usize, prop::sample::select(vec![8usize, 16, 24, 32])]
}

fn split() -> impl Strategy<Value = Split> {
    prop_oneof![
        (1..6usize).prop_map(Split::Rows),
        (1..4usize).prop_map(Split::Channels)
    ]
}

prop_compose! {
    fn block()(
        n in 1..3usize, h in 3..12usize, w in 3..12usize, cin in channels(),
        cexp in prop::option::of(channels()), cout in channels(), stride in 1..3usize,
        padding in padding(), acts in any::<[u8; 3]>(), split in split(), seed in any::<u64>(),
    ) -> Block {
        Block { n, h, w, cin, cexp, cout, stride, padding, acts, split, seed }
    }
}

fn check(b: &Block, residual: bool) -> Result<(), TestCaseError> {
    let x = Array4::from_shape_vec(
        (b.n, b.h, b.w, b.cin),
        ints(b.n * b.h * b.w * b.cin, b.seed),
    )
    .unwrap();
    let cexp = b.cexp.unwrap_or(b.cin);
    let cout = if residual { b.cin } else { b.cout };
    let ew = ints(b.cin * cexp, b.seed ^ 1);
    let eb = ints(cexp, b.seed ^ 2);
    let dww = ints(9 * cexp, b.seed ^ 3);
    let dwb = ints(cexp, b.seed ^ 4);
    let pw = ints(cexp * cout, b.seed ^ 5);
    let pb = ints(cout, b.seed ^ 6);
    let (ewp, pwp) = (
        PackedB::pack(&ew, b.cin, cexp).unwrap(),
        PackedB::pack(&pw, cexp, cout).unwrap(),
    );
    let expand = b.cexp.map(|_| Pointwise {
        w: ewp.view(),
        bias: &eb,
        act: act(b.acts[0]),
    });
    let dw = Depthwise {
        w: &dww,
        kh: 3,
        kw: 3,
        bias: &dwb,
        act: act(b.acts[1]),
        stride: b.stride,
        padding: b.padding,
    };
    let project = Pointwise {
        w: pwp.view(),
        bias: &pb,
        act: Activation::Linear,
    };
    // The reference: the layers one after another.
    let e = match expand {
        Some(e) => {
            let k = Array4::from_shape_vec((1, 1, b.cin, cexp), ew.clone()).unwrap();
            conv::conv2d(x.view(), k.view(), Some(e.bias), 1, Padding::Valid, e.act).unwrap()
        }
        None => x.clone(),
    };
    let k = Array4::from_shape_vec((3, 3, cexp, 1), dww.clone()).unwrap();
    let d = conv::depthwise_conv2d(e.view(), k.view(), Some(&dwb), b.stride, b.padding, dw.act);
    // A kernel larger than the padded input, or a residual whose shapes differ: rejected cases
    // (proptest draws others), not passes.
    prop_assume!(d.is_ok(), "kernel larger than the padded input");
    let d = d.expect("assumed above");
    prop_assume!(
        !residual || d.dim() == (b.n, b.h, b.w, cexp),
        "residual shapes differ"
    );
    let k = Array4::from_shape_vec((1, 1, cexp, cout), pw.clone()).unwrap();
    let mut want = conv::conv2d(
        d.view(),
        k.view(),
        Some(&pb),
        1,
        Padding::Valid,
        Activation::Linear,
    )
    .unwrap()
    .into_dyn();
    if residual {
        want = add::forward(x.view().into_dyn(), want.view()).unwrap();
    }
    let got = forward_split(x.view(), expand, dw, project, residual, b.split).unwrap();
    prop_assert_eq!(got.into_dyn(), want);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn tiled_block_equals_the_layers_in_sequence(b in block()) {
        check(&b, false)?;
    }

    #[test]
    fn tiled_block_with_residual_equals_the_layers_in_sequence(b in block()) {
        let b = Block { stride: 1, padding: Padding::Same, ..b };
        check(&b, true)?;
    }
}

#[test]
fn mobilenet_block_shapes_pinned() {
    // block_1 (expand 16 -> 96, stride 2 with Keras's correct_pad) and block_2 (residual, 24).
    let pad = Padding::Explicit {
        top: 0,
        bottom: 1,
        left: 0,
        right: 1,
    };
    let cases = [
        Block {
            n: 2,
            h: 14,
            w: 13,
            cin: 16,
            cexp: Some(96),
            cout: 24,
            stride: 2,
            padding: pad,
            acts: [2, 2, 0],
            split: Split::Rows(3),
            seed: 7,
        },
        Block {
            n: 1,
            h: 10,
            w: 9,
            cin: 24,
            cexp: Some(144),
            cout: 24,
            stride: 1,
            padding: Padding::Same,
            acts: [2, 2, 0],
            split: Split::Rows(4),
            seed: 8,
        },
        Block {
            n: 1,
            h: 8,
            w: 8,
            cin: 32,
            cexp: None,
            cout: 16,
            stride: 1,
            padding: Padding::Same,
            acts: [0, 2, 0],
            split: Split::Rows(100),
            seed: 9,
        },
    ];
    for (i, b) in cases.iter().enumerate() {
        for split in [b.split, Split::Channels(2), Split::Channels(3)] {
            check(&Block { split, ..b.clone() }, i == 1).unwrap();
        }
    }
}

#[test]
fn mis_sized_weights_are_an_error_naming_what() {
    let x = Array4::<f32>::zeros((1, 4, 4, 3));
    let b = Array1::<f32>::zeros(6);
    // A 5 x 6 expand kernel for 3 input channels.
    let (w, pw) = (
        PackedB::pack(&[0.0; 30], 5, 6).unwrap(),
        PackedB::pack(&[0.0; 12], 6, 2).unwrap(),
    );
    let dww = vec![0.0; 54];
    let err = tensor_core::inverted_residual::forward(
        x.view(),
        Some(Pointwise {
            w: w.view(),
            bias: b.as_slice().unwrap(),
            act: Activation::Relu6,
        }),
        Depthwise {
            w: &dww,
            kh: 3,
            kw: 3,
            bias: b.as_slice().unwrap(),
            act: Activation::Relu6,
            stride: 1,
            padding: Padding::Same,
        },
        Pointwise {
            w: pw.view(),
            bias: &[0.0; 2],
            act: Activation::Linear,
        },
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "inverted_residual: expand kernel is 5 x 6, expected 3 x 6"
    );
}

#[test]
fn splits_agree_bit_for_bit_on_real_values() {
    // A late MobileNetV2 block at batch 1 (7x7, expand 32 -> 192, residual), random floats: the
    // channel groups compute each element with the same products in the same order as row tiles.
    let (h, w, cin, cexp) = (7, 7, 32, 192);
    let floats = |len: usize, seed: u64| -> Vec<f32> {
        ints(len, seed).iter().map(|v| v * 0.173 + 0.011).collect()
    };
    let x = Array4::from_shape_vec((1, h, w, cin), floats(h * w * cin, 1)).unwrap();
    let (ew, eb) = (floats(cin * cexp, 2), floats(cexp, 3));
    let (dww, dwb) = (floats(9 * cexp, 4), floats(cexp, 5));
    let (pw, pb) = (floats(cexp * cin, 6), floats(cin, 7));
    let (ewp, pwp) = (
        PackedB::pack(&ew, cin, cexp).unwrap(),
        PackedB::pack(&pw, cexp, cin).unwrap(),
    );
    let expand = Pointwise {
        w: ewp.view(),
        bias: &eb,
        act: Activation::Relu6,
    };
    let dw = Depthwise {
        w: &dww,
        kh: 3,
        kw: 3,
        bias: &dwb,
        act: Activation::Relu6,
        stride: 1,
        padding: Padding::Same,
    };
    let project = Pointwise {
        w: pwp.view(),
        bias: &pb,
        act: Activation::Linear,
    };
    let run = |split| forward_split(x.view(), Some(expand), dw, project, true, split).unwrap();
    let rows = run(Split::Rows(7));
    assert!(
        rows.iter().any(|v| v.fract() != 0.0),
        "real values, not integers"
    );
    for split in [Split::Rows(2), Split::Channels(2), Split::Channels(3)] {
        assert_eq!(run(split), rows, "{split:?}");
    }
}

#[test]
fn small_batches_split_so_every_core_works() {
    // Batch 32: row tiles of about 256 KiB of expanded values (7x7x960: the whole image).
    assert_eq!(Split::choose(32, 7, 7, 7, 1, 960, 2), Split::Rows(7));
    assert_eq!(Split::choose(32, 56, 56, 56, 1, 144, 2), Split::Rows(8));
    // Batch 1 on 2 cores: rows where they part into even runs of 7 or more...
    assert_eq!(Split::choose(1, 14, 14, 14, 1, 384, 2), Split::Rows(7));
    // ...else channel groups where one image's expanded values fit two budgets...
    assert_eq!(Split::choose(1, 7, 7, 7, 1, 960, 2), Split::Channels(2));
    assert_eq!(Split::choose(1, 14, 14, 7, 2, 576, 2), Split::Channels(2));
    // ...else row tiles, as many for each core: 28 rows by 11 would be 3 tiles, so 4 of 7.
    assert_eq!(Split::choose(1, 28, 28, 28, 1, 192, 2), Split::Rows(7));
    assert_eq!(Split::choose(1, 112, 112, 56, 2, 96, 2), Split::Rows(3));
    // One core: the batch-32 rule.
    assert_eq!(Split::choose(1, 7, 7, 7, 1, 960, 1), Split::Rows(7));
}
