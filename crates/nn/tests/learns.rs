//! A small CNN learns a synthetic separable task (horizontal vs vertical stripes) to >95% accuracy.

mod common;

use ndarray::{Array4, Ix2};
use nn::layers::{batch_norm::BnConfig, *};
use nn::loss::{accuracy, softmax_cross_entropy};
use nn::optim::{Adam, AdamParams, Optimizer};
use nn::{Graph, Mode, Tensor};
use tensor_core::{Activation, Padding};

fn stripes(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let noise = common::rand_tensor(&[n, 8, 8, 1], seed, 0.3);
    let labels: Vec<usize> = (0..n).map(|i| (i * 7 + seed as usize) % 2).collect();
    let x = Array4::from_shape_fn((n, 8, 8, 1), |(i, y, x, _)| {
        let pos = if labels[i] == 0 { y } else { x };
        let phase = (i / 2) % 2;
        (if (pos + phase) % 2 == 0 { 1.0 } else { 0.0 }) + noise[[i, y, x, 0]]
    });
    (x.into_dyn().into_shared(), labels)
}

#[test]
fn small_cnn_learns_stripes() {
    let mut g = Graph::new();
    g.push(Conv2D::new(
        "conv",
        common::rand_tensor(&[3, 3, 1, 8], 1, 0.4),
        None,
        1,
        Padding::Same,
    ));
    g.push(
        BatchNormalization::new(
            "bn",
            Tensor::ones(vec![8]),
            Tensor::zeros(vec![8]),
            Tensor::zeros(vec![8]),
            Tensor::ones(vec![8]),
            BnConfig::default(),
        )
        .unwrap(),
    );
    g.push(ReLU::relu6("relu"));
    g.push(GlobalAveragePooling2D::new("gap"));
    g.push(Dense::new("dense", 8, 2, Activation::Linear, 2));
    let mut opt = Adam::new(AdamParams {
        lr: 0.03,
        ..Default::default()
    });
    let (test_x, test_y) = stripes(64, 1000);
    let before = accuracy(
        nn::Tensor::view(&g.forward(&test_x, Mode::Infer).unwrap())
            .into_dimensionality::<Ix2>()
            .unwrap(),
        &test_y,
    );
    for step in 0..150 {
        let (x, y) = stripes(32, step);
        let logits = g.forward(&x, Mode::Train).unwrap();
        let out =
            softmax_cross_entropy(logits.view().into_dimensionality::<Ix2>().unwrap(), &y).unwrap();
        g.zero_grad();
        g.backward(out.dlogits.into_dyn().into_shared(), 0..g.len())
            .unwrap();
        opt.begin_step();
        g.visit_params(&mut |p| {
            if p.trainable {
                opt.update(p)
            }
        });
    }
    let logits = g.forward(&test_x, Mode::Infer).unwrap();
    let probs = tensor_core::softmax::forward(logits.view().into_dimensionality::<Ix2>().unwrap());
    let acc = accuracy(probs.view(), &test_y);
    eprintln!("accuracy before {before:.3}, after {acc:.3}");
    assert!(acc > 0.95, "accuracy {acc}");
}
