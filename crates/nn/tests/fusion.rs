//! The graph fuses an activation into the batch-norm before it (one pass instead of two, forward and
//! backward) and a zero-padding into the depthwise convolution after it (no padded copy); the result
//! must be bit for bit what the layers give one after the other.

mod common;

use common::rand_tensor;
use ndarray::Ix2;
use nn::layers::{batch_norm::BnConfig, *};
use nn::loss::softmax_cross_entropy;
use nn::{Graph, Mode, Tensor};
use tensor_core::Padding;

/// conv -> BN -> ReLU6 -> pad -> depthwise (valid, stride 2) -> BN -> ReLU -> GAP -> dense.
fn net(seed: u64) -> Graph {
    let mut g = Graph::new();
    let c = 8;
    g.push(Conv2D::new(
        "conv",
        rand_tensor(&[3, 3, 3, c], seed, 0.8),
        None,
        1,
        Padding::Same,
    ));
    let bn = |name: &str, s: u64| {
        BatchNormalization::new(
            name,
            rand_tensor(&[c], s, 2.0) + 2.5,
            rand_tensor(&[c], s + 1, 2.0),
            rand_tensor(&[c], s + 2, 0.3),
            rand_tensor(&[c], s + 3, 0.2) + 1.0,
            BnConfig::default(),
        )
        .unwrap()
    };
    g.push(bn("bn", seed + 1));
    g.push(ReLU::relu6("relu6"));
    g.push(ZeroPadding2D::new("pad", ((0, 1), (1, 1))));
    g.push(DepthwiseConv2D::new(
        "dw",
        rand_tensor(&[3, 3, c, 1], seed + 5, 0.8),
        2,
        Padding::Valid,
    ));
    g.push(bn("dw_bn", seed + 6));
    g.push(ReLU::new("relu"));
    g.push(GlobalAveragePooling2D::new("gap"));
    g.push(Dense::new(
        "dense",
        c,
        3,
        tensor_core::Activation::Linear,
        seed + 9,
    ));
    g
}

/// Output, every parameter's gradient and every variable after one training forward and backward;
/// `capture` names nodes whose outputs are kept (which rules out fusing them).
fn step(g: &mut Graph, x: &Tensor, capture: &[usize]) -> (Tensor, Vec<(String, Tensor, Tensor)>) {
    let out = g.run(&[(nn::graph::INPUT, x)], 0..g.len(), Mode::Train, capture);
    let logits = out.unwrap().last;
    let loss = softmax_cross_entropy(
        logits.view().into_dimensionality::<Ix2>().unwrap(),
        &[0, 2, 1, 1],
    )
    .unwrap();
    g.zero_grad();
    g.backward(loss.dlogits.into_dyn().into_shared(), 0..g.len())
        .unwrap();
    let mut params = Vec::new();
    g.visit_params(&mut |p| params.push((p.name.clone(), p.value.clone(), p.grad.clone())));
    (logits, params)
}

#[test]
fn fused_activations_and_paddings_equal_the_layers_in_sequence() {
    let x = rand_tensor(&[4, 9, 9, 3], 7, 2.0);
    let (mut fused, mut plain) = (net(3), net(3));
    let id = |n: &str| fused.find(n).unwrap();
    // Capturing an output rules out fusing the node that produces it with the next.
    let unfused = [id("bn"), id("pad"), id("dw_bn")];
    let passed_through = [id("relu6"), id("pad"), id("relu")];
    let (y_fused, p_fused) = step(&mut fused, &x, &[]);
    assert_eq!(
        fused.fused_nodes(),
        passed_through,
        "both activations and the padding"
    );
    let (y_plain, p_plain) = step(&mut plain, &x, &unfused);
    assert!(
        plain.fused_nodes().is_empty(),
        "a captured output is never fused"
    );
    assert_eq!(y_fused, y_plain);
    for ((name, v, g), (_, v2, g2)) in p_fused.iter().zip(&p_plain) {
        assert_eq!(v, v2, "{name}");
        assert_eq!(g, g2, "gradient of {name}");
    }
    let nonzero = |n: &str| {
        p_fused
            .iter()
            .any(|(name, _, g)| name == n && g.iter().any(|&v| v != 0.0))
    };
    assert!(
        nonzero("conv/kernel") && nonzero("bn/gamma"),
        "gradients reach below"
    );

    // Frozen batch-norms (moving statistics) fuse the same way.
    for g in [&mut fused, &mut plain] {
        g.set_trainable(0..6, false);
        g.set_trainable(0..1, true);
    }
    let (y_fused, p_fused) = step(&mut fused, &x, &[]);
    let (y_plain, p_plain) = step(&mut plain, &x, &unfused);
    assert_eq!(y_fused, y_plain);
    for ((name, _, g), (_, _, g2)) in p_fused.iter().zip(&p_plain) {
        assert_eq!(g, g2, "frozen: gradient of {name}");
    }
    assert_eq!(fused.forward(&x, Mode::Infer).unwrap(), y_plain);
}

#[test]
fn a_layer_run_on_its_own_after_a_fused_graph_is_not_fused() {
    let mut g = net(5);
    let x = rand_tensor(&[2, 6, 6, 3], 8, 2.0);
    let bn = g.find("bn").unwrap();
    let conv_out = g
        .run(&[(nn::graph::INPUT, &x)], 0..1, Mode::Infer, &[])
        .unwrap()
        .last;
    g.forward(&x, Mode::Infer).unwrap();
    let y = g
        .layer_mut(bn)
        .forward(&[&conv_out], nn::Ctx::INFER)
        .unwrap();
    assert!(
        y.iter().any(|&v| !(0.0..=6.0).contains(&v)),
        "batch-norm alone, no ReLU6"
    );
}
