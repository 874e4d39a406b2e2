//! Checkpoints round-trip bit for bit, and a model that does not fit gets one error naming every problem.

mod common;

use nn::checkpoint::{graph_tensors, load_npz, restore, save_npz};
use nn::layers::{Dense, GlobalAveragePooling2D};
use nn::optim::{Adam, AdamParams, Optimizer};
use nn::{Graph, Mode};
use tensor_core::Activation;

#[test]
fn round_trip_is_bit_identical_with_optimizer_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.npz");
    let mut g = common::residual_net(2, 3, 1);
    let x = common::rand_tensor(&[2, 5, 5, 2], 4, 1.0);
    g.forward(&x, Mode::Train).unwrap(); // moves the BN statistics
    let mut opt = Adam::new(AdamParams::default());
    g.visit_params(&mut |p| p.grad.fill(0.1));
    opt.begin_step();
    g.visit_params(&mut |p| {
        if p.trainable {
            opt.update(p)
        }
    });
    let mut tensors = graph_tensors(&mut g);
    tensors.extend(opt.state());
    save_npz(&path, &tensors).unwrap();

    let loaded = load_npz(&path).unwrap();
    let mut fresh = common::residual_net(2, 3, 77);
    restore(&mut fresh, &loaded, &path, &["optimizer/"]).unwrap();
    assert_eq!(graph_tensors(&mut fresh), graph_tensors(&mut g));
    let mut opt2 = Adam::new(AdamParams::default());
    opt2.load_state(&loaded).unwrap();
    assert_eq!(opt2.state(), opt.state());
    assert_eq!(
        fresh.forward(&x, Mode::Infer).unwrap(),
        g.forward(&x, Mode::Infer).unwrap()
    );
    assert!(loaded.contains_key("bn/moving_mean") && loaded.contains_key("dense/kernel"));
}

#[test]
fn mismatched_model_lists_every_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.npz");
    let mut g = common::residual_net(2, 3, 1);
    save_npz(&path, &graph_tensors(&mut g)).unwrap();
    let mut other = Graph::new();
    other.push(GlobalAveragePooling2D::new("gap"));
    other.push(Dense::new("dense", 5, 6, Activation::Linear, 0));
    other.push(Dense::new("head", 6, 3, Activation::Linear, 0));
    let err = restore(&mut other, &load_npz(&path).unwrap(), &path, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("wrong shape: dense/kernel: expected [5, 6], found [4, 6]"),
        "{err}"
    );
    assert!(err.contains("missing: head/kernel"), "{err}");
    assert!(err.contains("unexpected: conv/kernel"), "{err}");
    assert!(err.contains("unexpected: bn/moving_variance"), "{err}");
}

#[test]
fn interrupted_write_leaves_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.npz");
    std::fs::write(&path, b"old").unwrap();
    let r = nn::checkpoint::write_atomic(&path, |_| Err(nn::Error::Invalid("disk full".into())));
    assert!(r.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"old");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
}

#[test]
fn optimizer_state_that_does_not_fit_the_weights_is_an_error() {
    let mut g = common::residual_net(2, 3, 1);
    let mut opt = Adam::new(AdamParams::default());
    g.visit_params(&mut |p| p.grad.fill(0.1));
    opt.begin_step();
    g.visit_params(&mut |p| {
        if p.trainable {
            opt.update(p)
        }
    });
    let mut tensors: std::collections::HashMap<String, nn::Tensor> = graph_tensors(&mut g)
        .into_iter()
        .chain(opt.state())
        .collect();
    // A moment one value short of its variable (as from another model's last.npz).
    let m = tensors["optimizer/m/dense/kernel"].clone();
    let short =
        nn::Tensor::from_shape_vec(vec![m.len() - 1], m.iter().skip(1).copied().collect()).unwrap();
    tensors.insert("optimizer/m/dense/kernel".into(), short.clone());
    let mut again = Adam::new(AdamParams::default());
    let err = again.load_state(&tensors).unwrap_err().to_string();
    assert!(err.contains("optimizer/m/dense/kernel has"), "{err}");
    tensors.insert("optimizer/v/dense/kernel".into(), short);
    let err = again.load_state(&tensors).unwrap_err().to_string();
    assert!(
        err.contains("does not belong to these weights") && err.contains("dense/kernel"),
        "{err}"
    );
    let mut sgd = nn::optim::Sgd::new(nn::optim::SgdParams {
        lr: 0.1,
        momentum: 0.9,
    });
    let mut with_velocity = tensors.clone();
    with_velocity.insert(
        "optimizer/velocity/dense/kernel".into(),
        nn::Tensor::zeros(vec![3]),
    );
    assert!(sgd.load_state(&with_velocity).is_err());
}
