//! Three Adam steps against the Keras update worked out independently in f64.

use nn::optim::{Adam, AdamParams, Optimizer};
use nn::{Param, Tensor};

#[test]
fn three_steps_equal_keras_formula() {
    let p0 = [1.0f64, -2.0, 0.5];
    let grads = [[0.5f64, -0.1, 0.0], [0.25, 0.3, -1.0], [-0.5, 0.2, 2.0]];
    let (lr, b1, b2, eps) = (1e-2f64, 0.9f64, 0.999f64, 1e-7f64);

    let mut w = p0;
    let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        let a = lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        for i in 0..3 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= a * m[i] / (v[i].sqrt() + eps);
        }
    }

    let mut opt = Adam::new(AdamParams {
        lr: 1e-2,
        ..Default::default()
    });
    let mut p = Param::new(
        "x/kernel",
        Tensor::from_shape_vec(vec![3], p0.iter().map(|&v| v as f32).collect()).unwrap(),
        true,
    );
    for g in &grads {
        p.grad.assign(
            &Tensor::from_shape_vec(vec![3], g.iter().map(|&v| v as f32).collect()).unwrap(),
        );
        opt.begin_step();
        opt.update(&mut p);
    }
    assert_eq!(opt.iterations(), 3);
    for i in 0..3 {
        assert!(
            (p.value[i] as f64 - w[i]).abs() < 1e-6,
            "{i}: {} vs {}",
            p.value[i],
            w[i]
        );
    }
    // The first step of Adam moves every weight with a non-zero gradient by about lr.
    assert!((p.value[0] as f64 - p0[0]).abs() > 1e-3);
}

#[test]
fn state_round_trips() {
    let mut opt = Adam::new(AdamParams::default());
    let mut p = Param::new("w", Tensor::ones(vec![2]), true);
    p.grad.fill(0.3);
    opt.begin_step();
    opt.update(&mut p);
    let state: std::collections::HashMap<_, _> = opt.state().into_iter().collect();
    let mut again = Adam::new(AdamParams::default());
    again.load_state(&state).unwrap();
    assert_eq!(again.iterations(), 1);
    let (mut a, mut b) = (p.clone(), p.clone());
    opt.begin_step();
    opt.update(&mut a);
    again.begin_step();
    again.update(&mut b);
    assert_eq!(a.value, b.value);
}
