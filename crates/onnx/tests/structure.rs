//! The exported model read back as protobuf: opset and IR declared, names unique, every input of
//! every node defined before it, every initializer used, the Keras layer names kept, metadata
//! present; and, run by tract at an input size other than 224x224, the probabilities of the
//! folded `Predictor` on the same input.

use mobilenet::{Classifier, HeadConfig, MobileNetV2, ModelConfig, Predictor};
use onnx::proto::{type_proto, ModelProto};
use onnx::{Options, Preprocessing};
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use tract_onnx::prelude::*;

fn weights() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/weights/mobilenet_v2_0.35_224_no_top")
}

/// A 0.35 base at `height x width` + a head of `classes` (seeded initialisation).
fn classifier(height: usize, width: usize, classes: usize) -> Classifier {
    let vs = nn::vars::VarStore::from_dir(&weights()).expect("../shared weights load");
    let config = ModelConfig {
        alpha: 0.35,
        height,
        width,
        include_top: false,
    };
    let net = MobileNetV2::load(vs, config).unwrap();
    let head = HeadConfig {
        dense: 32,
        dropout: 0.2,
        classes,
        seed: 3,
    };
    Classifier::new(net, head).unwrap()
}

fn options(c: &Classifier, include_preprocessing: bool, keep_batch_norm: bool) -> Options {
    Options {
        include_preprocessing,
        keep_batch_norm,
        preprocessing: Preprocessing {
            name: "mobilenet".into(),
            scale: 1.0 / 127.5,
            offset: -1.0,
        },
        classes: (0..c.head.classes)
            .map(|i| format!("class \"{i}\""))
            .collect(),
        interpolation: "bilinear".into(),
        height: c.net.config.height,
        width: c.net.config.width,
        name: "test".into(),
        extra_metadata: vec![],
    }
}

/// Exports, serialises and parses back, as a runtime would see the file.
fn round_trip(c: &mut Classifier, o: &Options) -> (Vec<u8>, ModelProto) {
    let model = onnx::export(&c.net.graph, o).expect("exports");
    let bytes = onnx::to_bytes(&model);
    let back = ModelProto::decode(bytes.as_slice()).expect("the bytes parse as an ONNX ModelProto");
    assert_eq!(back, model, "what is written is what was built");
    (bytes, back)
}

fn dims(m: &ModelProto, input: bool) -> Vec<String> {
    use onnx::proto::tensor_shape_proto::dimension::Value;
    let g = m.graph.as_ref().unwrap();
    let v = if input { &g.input[0] } else { &g.output[0] };
    let Some(type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else {
        panic!("{} is not a tensor", v.name)
    };
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimValue(n)) => n.to_string(),
            Some(Value::DimParam(p)) => p.clone(),
            None => "?".into(),
        })
        .collect()
}

fn check_structure(m: &ModelProto, o: &Options) {
    assert_eq!(m.ir_version, onnx::IR_VERSION);
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(
        (m.opset_import[0].domain.as_str(), m.opset_import[0].version),
        ("", 17)
    );
    let g = m.graph.as_ref().unwrap();

    // Node names unique, and apart from initializer names (tract keeps both in one namespace).
    let inits: HashSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(inits.len(), g.initializer.len(), "initializer names unique");
    let mut names = HashSet::new();
    for n in &g.node {
        assert!(!n.name.is_empty(), "{} node without a name", n.op_type);
        assert!(names.insert(n.name.as_str()), "node name {} twice", n.name);
        assert!(
            !inits.contains(n.name.as_str()),
            "node {} named as an initializer",
            n.name
        );
    }

    // Every value defined once, before it is read; every initializer read.
    let mut defined: HashSet<&str> = inits.clone();
    defined.insert(onnx::INPUT_NAME);
    let mut read = HashSet::new();
    for n in &g.node {
        for i in &n.input {
            assert!(
                defined.contains(i.as_str()),
                "{} reads {i} before it is defined",
                n.name
            );
            read.insert(i.as_str());
        }
        for out in &n.output {
            assert!(defined.insert(out.as_str()), "{out} defined twice");
        }
    }
    for i in &inits {
        assert!(read.contains(i), "initializer {i} is never used");
    }
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, onnx::OUTPUT_NAME);
    assert!(defined.contains(onnx::OUTPUT_NAME));
    let (h, w) = (o.height.to_string(), o.width.to_string());
    let input = dims(m, true);
    assert_eq!(
        input[1..],
        [h.as_str(), w.as_str(), "3"],
        "NHWC input of the model's size"
    );
    assert!(
        input[0].parse::<i64>().is_err(),
        "dynamic batch, got {}",
        input[0]
    );
    assert_eq!(dims(m, false)[1], o.classes.len().to_string());

    // Keras names a user looks for in Netron.
    for keras in [
        "Conv1",
        "block_16_project",
        "expanded_conv_depthwise",
        "Conv_1",
        "dense",
        "dense_1",
    ] {
        assert!(names.contains(keras), "no node named {keras}");
    }
    let count = |op: &str| g.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(count("Conv"), 52);
    assert_eq!(
        count("BatchNormalization"),
        if o.keep_batch_norm { 52 } else { 0 }
    );
    assert_eq!(count("Mul"), usize::from(o.include_preprocessing));
    assert_eq!(count("Softmax"), 1);

    let meta: HashMap<&str, &str> = m
        .metadata_props
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    let classes: Vec<String> =
        serde_json::from_str(meta["classes"]).expect("classes are a JSON list");
    assert_eq!(classes, o.classes);
    assert_eq!(meta["input_size"], format!("{}x{}", o.height, o.width));
    assert_eq!(meta["preprocessing"], "mobilenet");
    assert_eq!(
        meta["preprocessing_in_graph"],
        o.include_preprocessing.to_string()
    );
    assert_eq!(meta["interpolation"], "bilinear");
}

#[test]
fn every_variant_is_a_well_formed_model() {
    let mut c = classifier(160, 192, 7);
    for (pre, keep) in [(false, false), (true, false), (false, true), (true, true)] {
        let o = options(&c, pre, keep);
        let (_, m) = round_trip(&mut c, &o);
        check_structure(&m, &o);
    }
}

/// A deterministic input in [-1, 1] (already preprocessed), `[n, h, w, 3]`.
fn input(n: usize, h: usize, w: usize) -> ndarray::Array4<f32> {
    let mut state = 0x2545F4914F6CDD1Du64;
    ndarray::Array4::from_shape_fn((n, h, w, 3), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    })
}

#[test]
fn tract_runs_a_non_square_export_as_the_folded_predictor() {
    let (h, w) = (160, 192);
    let mut c = classifier(h, w, 5);
    let x = input(3, h, w);
    let expected = Predictor::from_classifier(&mut c)
        .unwrap()
        .predict(&x.clone().into_dyn().into_shared())
        .unwrap();
    for keep in [false, true] {
        let o = options(&c, false, keep);
        let (bytes, _) = round_trip(&mut c, &o);
        let plan = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap_or_else(|e| panic!("tract reads the model: {e:?}"))
            .with_input_fact(0, f32::fact([3, h, w, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap_or_else(|e| panic!("tract optimises the model: {e:?}"))
            .into_runnable()
            .unwrap();
        let t: Tensor =
            tract_ndarray::Array4::from_shape_vec((3, h, w, 3), x.iter().copied().collect())
                .unwrap()
                .into();
        let out = plan.run(tvec!(t.into())).unwrap();
        let got = out[0].to_plain_array_view::<f32>().unwrap();
        assert_eq!(got.shape(), expected.shape());
        let worst = got
            .iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "keep_batch_norm {keep}: max |tract - predictor| = {worst}"
        );
        // Not a degenerate model: the photos are told apart.
        assert!(expected.row(0) != expected.row(1));
    }
}
