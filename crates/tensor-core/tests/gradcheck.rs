//! Finite differences hold every backward pass: for a random projection `L = sum(y * r)`,
//! the analytic `dL/dx` must match `(L(x + e) - L(x - e)) / 2e` at every coordinate.

use ndarray::{Array1, Array2, Array4};
use tensor_core::fold::BnView;
use tensor_core::{batch_norm, conv, dense, pool, Activation, Padding};

fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n).map(|_| lcg(&mut s)).collect()
}

/// Central differences of `f` at every coordinate of `x`, compared with `analytic`.
fn fd_check(name: &str, x: &[f32], analytic: &[f32], f: impl Fn(&[f32]) -> f64) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let e = 1e-2f32;
    let mut worst = 0.0f64;
    for i in 0..x.len() {
        let mut p = x.to_vec();
        p[i] += e;
        let mut m = x.to_vec();
        m[i] -= e;
        let fd = (f(&p) - f(&m)) / (2.0 * e as f64);
        let err = (fd - analytic[i] as f64).abs() / (1.0 + fd.abs());
        worst = worst.max(err);
        assert!(
            err < 5e-3,
            "{name}[{i}]: finite difference {fd} vs analytic {}",
            analytic[i]
        );
    }
    eprintln!("{name}: worst relative error {worst:.2e}");
}

fn close<D: ndarray::Dimension>(
    a: &ndarray::Array<f32, D>,
    b: &ndarray::Array<f32, D>,
    tol: f32,
) -> bool {
    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

#[test]
fn conv2d_backward_matches_finite_differences() {
    for (stride, padding) in [
        (1, Padding::Same),
        (
            2,
            Padding::Explicit {
                top: 0,
                bottom: 1,
                left: 0,
                right: 1,
            },
        ),
        (2, Padding::Valid),
    ] {
        let xs = (2, 6, 5, 3);
        let ws = (3, 3, 3, 4);
        let x = Array4::from_shape_vec(xs, rand_vec(2 * 6 * 5 * 3, 1)).unwrap();
        let w = Array4::from_shape_vec(ws, rand_vec(108, 2)).unwrap();
        let y = conv::conv2d(
            x.view(),
            w.view(),
            None,
            stride,
            padding,
            Activation::Linear,
        )
        .unwrap();
        let r = rand_vec(y.len(), 3);
        let dy = Array4::from_shape_vec(y.raw_dim(), r.clone()).unwrap();
        let (dx, dw) =
            conv::conv2d_backward(x.view(), w.view(), dy.view(), stride, padding, true).unwrap();
        let loss_x = |v: &[f32]| {
            let xv = Array4::from_shape_vec(xs, v.to_vec()).unwrap();
            dot(
                conv::conv2d(
                    xv.view(),
                    w.view(),
                    None,
                    stride,
                    padding,
                    Activation::Linear,
                )
                .unwrap()
                .as_slice()
                .unwrap(),
                &r,
            )
        };
        fd_check(
            "conv2d dx",
            x.as_slice().unwrap(),
            dx.unwrap().as_slice().unwrap(),
            loss_x,
        );
        let loss_w = |v: &[f32]| {
            let wv = Array4::from_shape_vec(ws, v.to_vec()).unwrap();
            dot(
                conv::conv2d(
                    x.view(),
                    wv.view(),
                    None,
                    stride,
                    padding,
                    Activation::Linear,
                )
                .unwrap()
                .as_slice()
                .unwrap(),
                &r,
            )
        };
        fd_check(
            "conv2d dw",
            w.as_slice().unwrap(),
            dw.as_slice().unwrap(),
            loss_w,
        );
    }
}

#[test]
fn pointwise_backward_matches_finite_differences() {
    let x = Array4::from_shape_vec((2, 3, 3, 4), rand_vec(72, 4)).unwrap();
    let w = Array4::from_shape_vec((1, 1, 4, 5), rand_vec(20, 5)).unwrap();
    let r = rand_vec(2 * 3 * 3 * 5, 6);
    let dy = Array4::from_shape_vec((2, 3, 3, 5), r.clone()).unwrap();
    let (dx, dw) =
        conv::conv2d_backward(x.view(), w.view(), dy.view(), 1, Padding::Valid, true).unwrap();
    let loss = |xv: &Array4<f32>, wv: &Array4<f32>| {
        dot(
            conv::conv2d(
                xv.view(),
                wv.view(),
                None,
                1,
                Padding::Valid,
                Activation::Linear,
            )
            .unwrap()
            .as_slice()
            .unwrap(),
            &r,
        )
    };
    fd_check(
        "pointwise dx",
        x.as_slice().unwrap(),
        dx.unwrap().as_slice().unwrap(),
        |v| {
            loss(
                &Array4::from_shape_vec(x.raw_dim(), v.to_vec()).unwrap(),
                &w,
            )
        },
    );
    fd_check(
        "pointwise dw",
        w.as_slice().unwrap(),
        dw.as_slice().unwrap(),
        |v| {
            loss(
                &x,
                &Array4::from_shape_vec(w.raw_dim(), v.to_vec()).unwrap(),
            )
        },
    );
}

#[test]
fn depthwise_backward_matches_finite_differences() {
    for (stride, padding) in [
        (1, Padding::Same),
        (
            2,
            Padding::Explicit {
                top: 1,
                bottom: 1,
                left: 0,
                right: 1,
            },
        ),
    ] {
        let x = Array4::from_shape_vec((2, 5, 6, 3), rand_vec(180, 7)).unwrap();
        let w = Array4::from_shape_vec((3, 3, 3, 1), rand_vec(27, 8)).unwrap();
        let y = conv::depthwise_conv2d(
            x.view(),
            w.view(),
            None,
            stride,
            padding,
            Activation::Linear,
        )
        .unwrap();
        let r = rand_vec(y.len(), 9);
        let dy = Array4::from_shape_vec(y.raw_dim(), r.clone()).unwrap();
        let (dx, dw) =
            conv::depthwise_conv2d_backward(x.view(), w.view(), dy.view(), stride, padding, true)
                .unwrap();
        let loss = |xv: &Array4<f32>, wv: &Array4<f32>| {
            dot(
                conv::depthwise_conv2d(
                    xv.view(),
                    wv.view(),
                    None,
                    stride,
                    padding,
                    Activation::Linear,
                )
                .unwrap()
                .as_slice()
                .unwrap(),
                &r,
            )
        };
        fd_check(
            "depthwise dx",
            x.as_slice().unwrap(),
            dx.unwrap().as_slice().unwrap(),
            |v| {
                loss(
                    &Array4::from_shape_vec(x.raw_dim(), v.to_vec()).unwrap(),
                    &w,
                )
            },
        );
        fd_check(
            "depthwise dw",
            w.as_slice().unwrap(),
            dw.as_slice().unwrap(),
            |v| {
                loss(
                    &x,
                    &Array4::from_shape_vec(w.raw_dim(), v.to_vec()).unwrap(),
                )
            },
        );
    }
}

#[test]
fn dense_backward_matches_finite_differences() {
    let x = Array2::from_shape_vec((3, 4), rand_vec(12, 10)).unwrap();
    let w = Array2::from_shape_vec((4, 2), rand_vec(8, 11)).unwrap();
    let b = Array1::from(rand_vec(2, 12));
    let r = rand_vec(6, 13);
    let dy = Array2::from_shape_vec((3, 2), r.clone()).unwrap();
    let g = dense::backward(x.view(), w.view(), dy.view(), true).unwrap();
    let y = dense::forward(x.view(), w.view(), b.view()).unwrap();
    assert!(close(
        &y,
        &dense::reference::forward(x.view(), w.view(), b.view()),
        1e-6
    ));
    let loss = |xv: &Array2<f32>, wv: &Array2<f32>, bv: &Array1<f32>| {
        dot(
            dense::forward(xv.view(), wv.view(), bv.view())
                .unwrap()
                .as_slice()
                .unwrap(),
            &r,
        )
    };
    fd_check(
        "dense dx",
        x.as_slice().unwrap(),
        g.dx.unwrap().as_slice().unwrap(),
        |v| loss(&Array2::from_shape_vec((3, 4), v.to_vec()).unwrap(), &w, &b),
    );
    fd_check(
        "dense dw",
        w.as_slice().unwrap(),
        g.dw.as_slice().unwrap(),
        |v| loss(&x, &Array2::from_shape_vec((4, 2), v.to_vec()).unwrap(), &b),
    );
    fd_check(
        "dense db",
        b.as_slice().unwrap(),
        g.db.as_slice().unwrap(),
        |v| loss(&x, &w, &Array1::from(v.to_vec())),
    );
}

fn bn_train_loss(x: &[f32], gamma: &[f32], beta: &[f32], r: &[f32]) -> f64 {
    let mut y = vec![0.0; x.len()];
    batch_norm::training_forward(x, gamma, beta, 1e-3, Activation::Linear, &mut y).unwrap();
    dot(&y, r)
}

#[test]
fn batch_norm_training_backward_matches_finite_differences_and_reference() {
    // 3 channels, and 70: more than the 64-channel blocks backward recomputes x_hat in.
    for (c, rows, seed) in [(3usize, 8usize, 14u64), (70, 5, 16)] {
        let x: Vec<f32> = rand_vec(rows * c, seed)
            .iter()
            .map(|v| v * 2.0 + 0.5)
            .collect();
        let gamma: Vec<f32> = rand_vec(c, seed + 10).iter().map(|v| v + 0.2).collect();
        let beta = rand_vec(c, seed + 20);
        let r = rand_vec(x.len(), seed + 1);
        let mut y = vec![0.0; x.len()];
        let cache =
            batch_norm::training_forward(&x, &gamma, &beta, 1e-3, Activation::Linear, &mut y)
                .unwrap();
        let mut y_ref = vec![0.0; x.len()];
        let (cache_ref, x_hat) =
            batch_norm::reference::training_forward(&x, &gamma, &beta, 1e-3, &mut y_ref);
        for (a, b) in y.iter().zip(&y_ref) {
            assert!((a - b).abs() < 1e-5);
        }
        for (a, b) in cache.var.iter().zip(&cache_ref.var) {
            assert!((a - b).abs() < 1e-6);
        }
        let g = batch_norm::training_backward(
            &r,
            &x,
            &cache,
            (&gamma, &beta),
            Activation::Linear,
            true,
        )
        .unwrap();
        let (dx_ref, dg_ref, db_ref) =
            batch_norm::reference::training_backward(&r, &x_hat, &cache_ref, &gamma);
        let dx = g.dx.unwrap();
        for (a, b) in dx
            .iter()
            .zip(&dx_ref)
            .chain(g.dgamma.iter().zip(&dg_ref))
            .chain(g.dbeta.iter().zip(&db_ref))
        {
            assert!((a - b).abs() < 1e-4, "{a} vs reference {b} (c = {c})");
        }
        fd_check("bn dx", &x, &dx, |v| bn_train_loss(v, &gamma, &beta, &r));
        fd_check("bn dgamma", &gamma, &g.dgamma, |v| {
            bn_train_loss(&x, v, &beta, &r)
        });
        fd_check("bn dbeta", &beta, &g.dbeta, |v| {
            bn_train_loss(&x, &gamma, v, &r)
        });
    }
}

/// Batch-norm with its activation fused in equals batch-norm, then the activation (forward), and the
/// activation's backward, then batch-norm's (backward): bit for bit, as the graph relies on.
#[test]
fn batch_norm_with_fused_activation_equals_the_two_in_sequence() {
    for (act, c, rows, seed) in [
        (Activation::Relu6, 3usize, 40usize, 30u64),
        (Activation::Relu6, 70, 9, 31),
        (Activation::Relu, 16, 20, 32),
    ] {
        // Wide enough that some values land below 0 and some above 6.
        let x: Vec<f32> = rand_vec(rows * c, seed).iter().map(|v| v * 9.0).collect();
        let gamma: Vec<f32> = rand_vec(c, seed + 10).iter().map(|v| v * 8.0).collect();
        let beta: Vec<f32> = rand_vec(c, seed + 20).iter().map(|v| v * 6.0).collect();
        let dy = rand_vec(x.len(), seed + 1);
        // Training mode.
        let (mut pre, mut fused) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let cache =
            batch_norm::training_forward(&x, &gamma, &beta, 1e-3, Activation::Linear, &mut pre)
                .unwrap();
        batch_norm::training_forward(&x, &gamma, &beta, 1e-3, act, &mut fused).unwrap();
        let mut post = vec![0.0; x.len()];
        tensor_core::activation::forward(act, &pre, &mut post);
        assert_eq!(fused, post, "{act:?} forward, c = {c}");
        let clipped = post.iter().filter(|&&v| v == 0.0 || v == 6.0).count();
        assert!(clipped > 0 && clipped < post.len(), "the mask is exercised");
        let mut dpre = vec![0.0; x.len()];
        tensor_core::activation::backward(act, &post, &dy, &mut dpre);
        let seq = batch_norm::training_backward(
            &dpre,
            &x,
            &cache,
            (&gamma, &beta),
            Activation::Linear,
            true,
        )
        .unwrap();
        let one =
            batch_norm::training_backward(&dy, &x, &cache, (&gamma, &beta), act, true).unwrap();
        assert_eq!(one.dx, seq.dx, "{act:?} dx, c = {c}");
        assert_eq!(one.dgamma, seq.dgamma);
        assert_eq!(one.dbeta, seq.dbeta);
        // Inference mode (moving statistics).
        let mean = rand_vec(c, seed + 40);
        let var: Vec<f32> = rand_vec(c, seed + 50)
            .iter()
            .map(|v| v.abs() + 0.1)
            .collect();
        let bn = BnView {
            gamma: &gamma,
            beta: &beta,
            moving_mean: &mean,
            moving_variance: &var,
            eps: 1e-3,
        };
        let (s, b) = batch_norm::scale_shift(&gamma, &beta, &mean, &var, 1e-3);
        let mut y = vec![0.0; x.len()];
        batch_norm::inference_forward(&x, &s, &b, act, &mut y).unwrap();
        tensor_core::activation::backward(act, &y, &dy, &mut dpre);
        let seq = batch_norm::inference_backward(&x, &dpre, bn, Activation::Linear, true).unwrap();
        let one = batch_norm::inference_backward(&x, &dy, bn, act, true).unwrap();
        assert_eq!(one.dx, seq.dx, "{act:?} inference dx, c = {c}");
        assert_eq!(one.dgamma, seq.dgamma);
        assert_eq!(one.dbeta, seq.dbeta);
    }
}

#[test]
fn batch_norm_inference_backward_matches_finite_differences() {
    let c = 2;
    let x = rand_vec(5 * c, 16);
    let (gamma, beta, mean, var) = (
        vec![1.2, 0.8],
        vec![0.0, 0.5],
        vec![0.1, -0.2],
        vec![0.5, 2.0],
    );
    let r = rand_vec(x.len(), 17);
    let bn = BnView {
        gamma: &gamma,
        beta: &beta,
        moving_mean: &mean,
        moving_variance: &var,
        eps: 1e-3,
    };
    let g = batch_norm::inference_backward(&x, &r, bn, Activation::Linear, true).unwrap();
    let loss = |x: &[f32], gamma: &[f32], beta: &[f32]| {
        let (s, b) = batch_norm::scale_shift(gamma, beta, &mean, &var, 1e-3);
        let mut y = vec![0.0; x.len()];
        batch_norm::inference_forward(x, &s, &b, Activation::Linear, &mut y).unwrap();
        dot(&y, &r)
    };
    fd_check("bn-inf dx", &x, &g.dx.unwrap(), |v| loss(v, &gamma, &beta));
    fd_check("bn-inf dgamma", &gamma, &g.dgamma, |v| loss(&x, v, &beta));
    fd_check("bn-inf dbeta", &beta, &g.dbeta, |v| loss(&x, &gamma, v));
}

#[test]
fn global_avg_pool_backward_matches_finite_differences() {
    let x = Array4::from_shape_vec((2, 3, 2, 2), rand_vec(24, 18)).unwrap();
    let r = rand_vec(4, 19);
    let dx = pool::global_avg_pool_backward(
        Array2::from_shape_vec((2, 2), r.clone()).unwrap().view(),
        3,
        2,
    )
    .unwrap();
    fd_check(
        "gap dx",
        x.as_slice().unwrap(),
        dx.as_slice().unwrap(),
        |v| {
            let xv = Array4::from_shape_vec((2, 3, 2, 2), v.to_vec()).unwrap();
            dot(pool::global_avg_pool(xv.view()).as_slice().unwrap(), &r)
        },
    );
}

#[test]
fn fused_relu6_epilogue_equals_separate_ops() {
    let x = Array4::from_shape_vec(
        (1, 4, 4, 2),
        rand_vec(32, 20).iter().map(|v| v * 8.0).collect(),
    )
    .unwrap();
    let w = Array4::from_shape_vec((3, 3, 2, 3), rand_vec(54, 21)).unwrap();
    let b = vec![0.5, -0.5, 3.0];
    let fused = conv::conv2d(
        x.view(),
        w.view(),
        Some(&b),
        1,
        Padding::Same,
        Activation::Relu6,
    )
    .unwrap();
    let mut plain = conv::conv2d(
        x.view(),
        w.view(),
        None,
        1,
        Padding::Same,
        Activation::Linear,
    )
    .unwrap();
    for (i, v) in plain.iter_mut().enumerate() {
        *v = (*v + b[i % 3]).clamp(0.0, 6.0);
    }
    assert!(close(&fused, &plain, 1e-5));
}

#[test]
fn folded_batch_norm_equals_conv_then_bn() {
    use tensor_core::fold::fold_batch_norm;
    let x = Array4::from_shape_vec((2, 5, 5, 3), rand_vec(150, 22)).unwrap();
    let w = Array4::from_shape_vec((3, 3, 3, 4), rand_vec(108, 23)).unwrap();
    let (gamma, beta) = (rand_vec(4, 24), rand_vec(4, 25));
    let mean = rand_vec(4, 26);
    let var: Vec<f32> = rand_vec(4, 27).iter().map(|v| v.abs() + 0.1).collect();
    let bn = BnView {
        gamma: &gamma,
        beta: &beta,
        moving_mean: &mean,
        moving_variance: &var,
        eps: 1e-3,
    };
    let (wf, bias) = fold_batch_norm(w.view(), bn, false).unwrap();
    let folded = conv::conv2d(
        x.view(),
        wf.view(),
        Some(&bias),
        1,
        Padding::Same,
        Activation::Relu6,
    )
    .unwrap();
    let y = conv::conv2d(
        x.view(),
        w.view(),
        None,
        1,
        Padding::Same,
        Activation::Linear,
    )
    .unwrap();
    let (s, sh) = batch_norm::scale_shift(&gamma, &beta, &mean, &var, 1e-3);
    let mut z = vec![0.0; y.len()];
    batch_norm::inference_forward(y.as_slice().unwrap(), &s, &sh, Activation::Relu6, &mut z)
        .unwrap();
    for (a, b) in folded.iter().zip(&z) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}
