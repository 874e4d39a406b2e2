//! Loading by name, alpha/top inference, and the folded path against the plain graph.

use mobilenet::{Classifier, HeadConfig, MobileNetV2, ModelConfig};
use nn::vars::VarStore;
use nn::{Mode, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn weights(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/weights")
        .join(name)
}

fn input(n: usize, seed: u64) -> Tensor {
    let mut s = seed;
    Tensor::from_shape_fn(vec![n, 224, 224, 3], |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    })
}

#[test]
fn infers_alpha_and_top_from_shapes() {
    let vs = VarStore::open(&weights("mobilenet_v2_0.35_224_no_top")).unwrap();
    assert_eq!(
        ModelConfig::infer(&vs).unwrap(),
        ModelConfig {
            alpha: 0.35,
            height: 224,
            width: 224,
            include_top: false
        }
    );
    let vs = VarStore::open(&weights("mobilenet_v2_1.0_224")).unwrap();
    assert_eq!(
        ModelConfig::infer(&vs).unwrap(),
        ModelConfig {
            alpha: 1.0,
            height: 224,
            width: 224,
            include_top: true
        }
    );
}

#[test]
fn layer_list_is_keras_order() {
    let m = MobileNetV2::from_path(&weights("mobilenet_v2_0.35_224_no_top"), None).unwrap();
    let names = m.graph.names();
    // keras.applications.MobileNetV2(include_top=False).layers has 154 entries, the InputLayer first.
    assert_eq!(names.len(), 153);
    assert_eq!(
        &names[..4],
        ["Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["Conv_1", "Conv_1_bn", "out_relu"]
    );
    for want in [
        "block_1_pad",
        "block_2_add",
        "block_13_pad",
        "block_16_project_BN",
        "block_15_add",
    ] {
        assert!(names.iter().any(|n| n == want), "{want}");
    }
    assert!(
        !names.iter().any(|n| n == "block_16_add"),
        "block 16 changes width: no residual"
    );
}

#[test]
fn every_problem_with_the_weights_in_one_error() {
    let vs = VarStore::open(&weights("mobilenet_v2_0.35_224_no_top")).unwrap();
    let mut map: BTreeMap<String, Tensor> = BTreeMap::new();
    for n in vs.names() {
        map.insert(n.clone(), vs.get(n, vs.shape(n).unwrap()));
    }
    map.remove("block_3_expand_BN/gamma");
    map.insert("Conv_1/kernel".into(), Tensor::zeros(vec![1, 1, 112, 7]));
    map.insert("extra/kernel".into(), Tensor::zeros(vec![2]));
    let cfg = ModelConfig {
        alpha: 0.35,
        height: 224,
        width: 224,
        include_top: false,
    };
    let err = match MobileNetV2::load(VarStore::from_map("bad-weights", map), cfg) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("bad weights loaded"),
    };
    assert!(
        err.starts_with("weights in bad-weights do not fit the model"),
        "{err}"
    );
    assert!(
        err.contains("missing: block_3_expand_BN/gamma (expected shape [48])"),
        "{err}"
    );
    assert!(
        err.contains(
            "wrong shape: Conv_1/kernel: expected [1, 1, 112, 1280], found [1, 1, 112, 7]"
        ),
        "{err}"
    );
    assert!(err.contains("unexpected: extra/kernel [2]"), "{err}");
}

#[test]
fn asking_for_a_top_that_is_absent_is_an_error() {
    let err = MobileNetV2::from_path(&weights("mobilenet_v2_0.35_224_no_top"), Some(true))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no ImageNet top"), "{err}");
}

#[test]
fn wrong_input_size_is_an_error_naming_both_shapes() {
    let mut m = MobileNetV2::from_path(&weights("mobilenet_v2_0.35_224_no_top"), None).unwrap();
    let err = m
        .forward(&Tensor::zeros(vec![1, 100, 100, 3]), Mode::Infer)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "input has shape [1, 100, 100, 3], the model was built for [N, 224, 224, 3]"
    );
}

#[test]
fn folded_path_agrees_with_plain_graph() {
    for name in ["mobilenet_v2_0.35_224_no_top", "mobilenet_v2_1.0_224"] {
        let x = input(2, 7);
        let mut plain = MobileNetV2::from_path(&weights(name), Some(false)).unwrap();
        let out = plain.forward(&x, Mode::Infer).unwrap();
        let feats = tensor_core::pool::global_avg_pool(out.view().into_dimensionality().unwrap());
        let mut clf = Classifier::new(
            MobileNetV2::from_path(&weights(name), Some(false)).unwrap(),
            HeadConfig {
                dense: 0,
                dropout: 0.0,
                classes: 3,
                seed: 1,
            },
        )
        .unwrap();
        let frozen = clf.frozen(&x).unwrap();
        assert_eq!(frozen.len(), 1);
        let folded = frozen.values().next().unwrap();
        assert_eq!(folded.shape(), feats.shape());
        let worst = folded
            .iter()
            .zip(feats.iter())
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name}: folded and plain differ by {worst}");
    }
}

#[test]
fn partial_unfreeze_feeds_the_residual_input_across_the_cut() {
    // Unfreezing block_15's last 2 layers (project_BN, add) puts the cut inside a residual block:
    // the add still needs the block's input, which the folded part must hand over.
    let mut clf = Classifier::new(
        MobileNetV2::from_path(&weights("mobilenet_v2_0.35_224_no_top"), None).unwrap(),
        HeadConfig {
            dense: 8,
            dropout: 0.0,
            classes: 3,
            seed: 1,
        },
    )
    .unwrap();
    let names = clf.net.graph.names();
    let add = names.iter().position(|n| n == "block_15_add").unwrap();
    clf.unfreeze_last(clf.net.base_len() - add + 1);
    let frozen = clf.frozen(&input(1, 3)).unwrap();
    assert_eq!(
        frozen.len(),
        2,
        "the project conv's output and the residual input"
    );
    let probs = clf.predict_frozen(&frozen).unwrap();
    assert!((probs.sum() - 1.0).abs() < 1e-5);
}

#[test]
fn rectangular_input_and_npz_weights() {
    // The same weights serve any input of at least 32x32; correct_pad follows the odd/even sizes.
    let dir = weights("mobilenet_v2_0.35_224_no_top");
    let vs = VarStore::open(&dir).unwrap();
    let tensors: Vec<(String, Tensor)> = vs
        .names()
        .map(|n| (n.clone(), vs.get(n, vs.shape(n).unwrap())))
        .collect();
    let tmp = std::env::temp_dir().join(format!("mnv2_{}.npz", std::process::id()));
    nn::checkpoint::save_npz(&tmp, &tensors).unwrap();
    let cfg = ModelConfig {
        alpha: 0.35,
        height: 97,
        width: 130,
        include_top: false,
    };
    let mut m = MobileNetV2::load(VarStore::open(&tmp).unwrap(), cfg).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    let x = Tensor::from_elem(vec![1, 97, 130, 3], 0.25);
    let y = m.forward(&x, Mode::Infer).unwrap();
    // 97 -> 49 -> 25 -> 13 -> 7 -> 4 ; 130 -> 65 -> 33 -> 17 -> 9 -> 5
    assert_eq!(y.shape(), &[1, 4, 5, 1280]);
    assert!(y.iter().all(|v| v.is_finite() && (0.0..=6.0).contains(v)));
    let pads: Vec<String> = m
        .graph
        .names()
        .into_iter()
        .filter(|n| n.ends_with("_pad"))
        .collect();
    assert_eq!(
        pads,
        ["block_1_pad", "block_3_pad", "block_6_pad", "block_13_pad"]
    );
    let too_small = ModelConfig {
        alpha: 0.35,
        height: 31,
        width: 64,
        include_top: false,
    };
    let err = MobileNetV2::load(VarStore::open(&dir).unwrap(), too_small)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("below MobileNetV2's minimum of 32x32"),
        "{err}"
    );
}
