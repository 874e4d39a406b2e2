//! Finite differences through a whole small net: conv, batch-norm in training mode, depthwise conv,
//! residual add, pooling, two dense layers and the fused softmax cross-entropy.

mod common;

use ndarray::Ix2;
use nn::loss::softmax_cross_entropy;
use nn::{Graph, Mode, Tensor};

fn loss(g: &mut Graph, x: &Tensor, labels: &[usize]) -> f64 {
    let logits = g.forward(x, Mode::Train).unwrap();
    softmax_cross_entropy(logits.view().into_dimensionality::<Ix2>().unwrap(), labels)
        .unwrap()
        .loss as f64
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let mut g = common::residual_net(2, 3, 11);
    let x = common::rand_tensor(&[3, 5, 5, 2], 99, 1.0);
    let labels = [0, 2, 1];
    let logits = g.forward(&x, Mode::Train).unwrap();
    let out = softmax_cross_entropy(logits.view().into_dimensionality::<Ix2>().unwrap(), &labels)
        .unwrap();
    g.zero_grad();
    g.backward(out.dlogits.into_dyn().into_shared(), 0..g.len())
        .unwrap();

    let mut analytic = Vec::new();
    g.visit_params(&mut |p| {
        if p.trainable {
            analytic.push((p.name.clone(), p.grad.clone()));
        }
    });
    assert_eq!(
        analytic.len(),
        8,
        "conv, gamma, beta, dw, dense k+b, dense_1 k+b"
    );
    let e = 5e-3f32;
    for (name, grad) in analytic {
        let n = grad.len();
        let mut worst = 0.0f64;
        for i in 0..n {
            let nudge = |g: &mut Graph, d: f32| {
                g.visit_params(&mut |p| {
                    if p.name == name {
                        p.value.as_slice_mut().unwrap()[i] += d;
                    }
                })
            };
            nudge(&mut g, e);
            let up = loss(&mut g, &x, &labels);
            nudge(&mut g, -2.0 * e);
            let down = loss(&mut g, &x, &labels);
            nudge(&mut g, e);
            let fd = (up - down) / (2.0 * e as f64);
            let a = grad.as_slice().unwrap()[i] as f64;
            let err = (fd - a).abs() / (1e-2 + fd.abs().max(a.abs()));
            worst = worst.max(err);
            assert!(
                (fd - a).abs() < 2e-3 + 2e-2 * fd.abs(),
                "{name}[{i}]: finite difference {fd}, analytic {a}"
            );
        }
        eprintln!("{name}: worst relative error {worst:.2e}");
    }
}

#[test]
fn backward_stops_below_the_lowest_trainable_layer() {
    let mut g = common::residual_net(2, 3, 5);
    let first_dense = g.find("dense").unwrap();
    g.set_trainable(0..first_dense, false);
    assert_eq!(g.first_trainable(), Some(first_dense));
    let x = common::rand_tensor(&[2, 5, 5, 2], 1, 1.0);
    let logits = g.forward(&x, Mode::Train).unwrap();
    let out = softmax_cross_entropy(logits.view().into_dimensionality::<Ix2>().unwrap(), &[0, 1])
        .unwrap();
    g.zero_grad();
    // Frozen layers recorded nothing; a backward into them would fail with "without a recorded forward".
    g.backward(out.dlogits.into_dyn().into_shared(), 0..g.len())
        .unwrap();
    let mut frozen_grads = 0.0f32;
    let mut dense_grads = 0.0f32;
    g.visit_params(&mut |p| {
        let s: f32 = p.grad.iter().map(|v| v.abs()).sum();
        if p.trainable {
            dense_grads += s
        } else {
            frozen_grads += s
        }
    });
    assert_eq!(frozen_grads, 0.0);
    assert!(dense_grads > 0.0);
}

#[test]
fn frozen_batch_norm_uses_moving_statistics_while_training() {
    let mut g = common::residual_net(2, 3, 5);
    let bn = g.find("bn").unwrap();
    g.set_trainable(bn..bn + 1, false);
    let x = common::rand_tensor(&[2, 5, 5, 2], 3, 1.0);
    let train = g.forward(&x, Mode::Train).unwrap();
    let infer = g.forward(&x, Mode::Infer).unwrap();
    assert_eq!(train, infer, "a frozen BN behaves the same in both modes");
    let mut moving = Vec::new();
    g.visit_params(&mut |p| {
        if p.name.starts_with("bn/moving") {
            moving.extend(p.value.iter().copied())
        }
    });
    assert!(
        moving[..4].iter().all(|&v| v == 0.0) && moving[4..].iter().all(|&v| v == 1.0),
        "not updated"
    );
}
