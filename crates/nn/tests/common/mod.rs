//! Small nets shared by the tests.
#![allow(dead_code)]

use nn::layers::{batch_norm::BnConfig, *};
use nn::{Graph, Tensor};
use tensor_core::{Activation, Padding};

pub fn rand_tensor(shape: &[usize], seed: u64, scale: f32) -> Tensor {
    let mut s = seed
        .wrapping_mul(2862933555777941757)
        .wrapping_add(3037000493);
    Tensor::from_shape_fn(shape.to_vec(), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
    })
}

/// conv 3x3 -> BN (training) -> depthwise 3x3 -> add(residual) -> GAP -> dense -> dense (logits).
pub fn residual_net(cin: usize, classes: usize, seed: u64) -> Graph {
    let mut g = Graph::new();
    let c = 4;
    g.push(Conv2D::new(
        "conv",
        rand_tensor(&[3, 3, cin, c], seed, 0.5),
        None,
        1,
        Padding::Same,
    ));
    let bn = g.push(
        BatchNormalization::new(
            "bn",
            rand_tensor(&[c], seed + 1, 0.5) + 1.0,
            rand_tensor(&[c], seed + 2, 0.2),
            Tensor::zeros(vec![c]),
            Tensor::ones(vec![c]),
            BnConfig::default(),
        )
        .unwrap(),
    );
    let dw = g.push(DepthwiseConv2D::new(
        "dw",
        rand_tensor(&[3, 3, c, 1], seed + 3, 0.5),
        1,
        Padding::Same,
    ));
    g.add(Add::new("add"), &[bn, dw]);
    g.push(GlobalAveragePooling2D::new("gap"));
    g.push(Dense::new("dense", c, 6, Activation::Linear, seed + 4));
    g.push(Dense::new(
        "dense_1",
        6,
        classes,
        Activation::Linear,
        seed + 5,
    ));
    g
}
