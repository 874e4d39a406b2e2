//! The folded whole-network plan that `predict` runs against the plain graph forward, on real photos
//! (the golden fixtures' input batch), within the golden tolerances for inference probabilities
//! (`probs_inference`: |ours - plain| <= 1e-5 + 1e-4 |plain|).

use mobilenet::{Classifier, HeadConfig, MobileNetV2, Predictor};
use ndarray_npy::ReadNpyExt;
use nn::{Mode, Tensor};
use std::path::{Path, PathBuf};

fn shared(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared")
        .join(p)
}

/// Four real test photos, preprocessed x/127.5-1 (the forward fixture's input).
fn photos() -> Tensor {
    let f = std::fs::File::open(shared("golden/forward_a035_224/input.npy")).unwrap();
    ndarray::ArrayD::<f32>::read_npy(f).unwrap().into_shared()
}

fn assert_close(ours: &ndarray::Array2<f32>, plain: &ndarray::Array2<f32>, what: &str) {
    assert_eq!(ours.shape(), plain.shape(), "{what}");
    let mut worst = (0.0f32, 0, 0.0, 0.0);
    for (i, (a, b)) in ours.iter().zip(plain.iter()).enumerate() {
        let excess = (a - b).abs() - (1e-5 + 1e-4 * b.abs());
        if excess > worst.0 {
            worst = (excess, i, *a, *b);
        }
    }
    assert!(
        worst.0 <= 0.0,
        "{what}: element {} is {} folded vs {} plain",
        worst.1,
        worst.2,
        worst.3
    );
    for row in ours.rows() {
        assert!(
            (row.sum() - 1.0).abs() < 1e-4,
            "{what}: a row sums to {}",
            row.sum()
        );
    }
}

#[test]
fn imagenet_top_matches_the_plain_graph() {
    let w = shared("weights/mobilenet_v2_1.0_224");
    let mut net = MobileNetV2::from_path(&w, Some(true)).unwrap();
    let x = photos();
    let logits = net.forward(&x, Mode::Infer).unwrap();
    let plain = tensor_core::softmax::forward(logits.view().into_dimensionality().unwrap());
    let p = Predictor::from_model(&mut net).unwrap();
    assert_eq!(p.classes, 1000);
    let ours = p.predict(&x).unwrap();
    assert_close(&ours, &plain, "ImageNet top");
    // The photos are confidently classified: the comparison is not between two flat vectors.
    assert!(plain
        .rows()
        .into_iter()
        .any(|r| r.iter().cloned().fold(0.0, f32::max) > 0.3));
}

#[test]
fn trained_head_with_dropout_and_unfrozen_layers_matches_the_plain_graph() {
    let w = shared("weights/mobilenet_v2_0.35_224_no_top");
    let mut clf = Classifier::new(
        MobileNetV2::from_path(&w, None).unwrap(),
        HeadConfig {
            dense: 16,
            dropout: 0.3,
            classes: 5,
            seed: 3,
        },
    )
    .unwrap();
    // Trainable layers and dropout must not change what inference computes.
    clf.unfreeze_last(5);
    let x = photos();
    let plain_logits = clf.net.graph.forward(&x, Mode::Infer).unwrap();
    let plain = tensor_core::softmax::forward(plain_logits.view().into_dimensionality().unwrap());
    let p = Predictor::from_classifier(&mut clf).unwrap();
    assert_eq!(p.classes, 5);
    assert_close(&p.predict(&x).unwrap(), &plain, "trained head");
    assert_close(
        &clf.predict(&x).unwrap(),
        &plain,
        "classifier's own predict",
    );
}

#[test]
fn a_wrong_input_shape_and_an_empty_batch() {
    let w = shared("weights/mobilenet_v2_0.35_224_no_top");
    let mut clf = Classifier::new(
        MobileNetV2::from_path(&w, None).unwrap(),
        HeadConfig {
            dense: 0,
            dropout: 0.0,
            classes: 2,
            seed: 0,
        },
    )
    .unwrap();
    let p = Predictor::from_classifier(&mut clf).unwrap();
    let err = p.predict(&Tensor::zeros(vec![1, 100, 224, 3])).unwrap_err();
    assert!(err.to_string().contains("[1, 100, 224, 3]"), "{err}");
    assert_eq!(
        p.predict(&Tensor::zeros(vec![0, 224, 224, 3]))
            .unwrap()
            .shape(),
        [0, 2]
    );
    let mut no_top = MobileNetV2::from_path(&w, None).unwrap();
    assert!(Predictor::from_model(&mut no_top).is_err());
}
