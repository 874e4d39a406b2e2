//! A graph that is not MobileNetV2 (a biased 3x3 stem, a batch-norm epsilon other than Keras's
//! 1e-3, an explicit asymmetric `ZeroPadding2D`, plain ReLU, a residual block, a dense layer with
//! its own activation, dropout) compiled by the one compiler: its steps fuse what the rule says,
//! the folded plan (blocks fused) equals the layer-by-layer graph, and the ONNX export written from
//! the same steps, run by tract, equals the plan, with batch-norms folded and kept.

use mobilenet::folded::{compile_steps, Options as PlanOptions};
use mobilenet::FoldedPlan;
use nn::layers::batch_norm::BnConfig;
use nn::layers::*;
use nn::{Graph, Mode, Tensor};
use onnx::{Options, Preprocessing};
use tensor_core::{Activation, Padding};
use tract_onnx::prelude::*;

/// Deterministic values in `[lo, hi)`.
fn values(shape: &[usize], seed: u64, lo: f32, hi: f32) -> Tensor {
    let mut state = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    Tensor::from_shape_fn(ndarray::IxDyn(shape), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
    })
}

fn bn(name: &str, c: usize, seed: u64) -> BatchNormalization {
    let cfg = BnConfig {
        eps: 1e-5,
        ..BnConfig::default()
    };
    BatchNormalization::new(
        name,
        values(&[c], seed, 0.5, 1.5),
        values(&[c], seed + 1, -0.5, 0.5),
        values(&[c], seed + 2, -0.2, 0.2),
        values(&[c], seed + 3, 0.3, 2.0),
        cfg,
    )
    .unwrap()
}

/// 17 nodes: stem (3 -> 8), expand 8 -> 16, padded depthwise, project 16 -> 8 + residual, head.
fn graph() -> Graph {
    let mut g = Graph::new();
    let stem = values(&[3, 3, 3, 8], 1, -0.4, 0.4);
    let bias = values(&[8], 2, -0.1, 0.1);
    g.push(Conv2D::new("stem", stem, Some(bias), 2, Padding::Same));
    g.push(bn("stem_bn", 8, 10));
    let u = g.push(ReLU::relu6("stem_relu"));
    let expand = values(&[1, 1, 8, 16], 3, -0.4, 0.4);
    g.push(Conv2D::new("expand", expand, None, 1, Padding::Same));
    g.push(bn("expand_bn", 16, 20));
    g.push(ReLU::relu6("expand_relu"));
    g.push(ZeroPadding2D::new("pad", ((0, 2), (1, 1))));
    let dw = values(&[3, 3, 16, 1], 4, -0.5, 0.5);
    g.push(DepthwiseConv2D::new("dw", dw, 1, Padding::Valid));
    g.push(bn("dw_bn", 16, 30));
    g.push(ReLU::new("dw_relu"));
    let project = values(&[1, 1, 16, 8], 5, -0.4, 0.4);
    g.push(Conv2D::new("project", project, None, 1, Padding::Same));
    let p = g.push(bn("project_bn", 8, 40));
    g.add(Add::new("add"), &[u, p]);
    g.push(GlobalAveragePooling2D::new("gap"));
    let (k1, b1) = (values(&[8, 6], 6, -0.5, 0.5), values(&[6], 7, -0.1, 0.1));
    g.push(Dense::from_values("hidden", k1, b1, Activation::Relu).unwrap());
    g.push(Dropout::new("dropout", 0.3, 1).unwrap());
    let (k2, b2) = (values(&[6, 4], 8, -0.5, 0.5), values(&[4], 9, -0.1, 0.1));
    g.push(Dense::from_values("logits", k2, b2, Activation::Linear).unwrap());
    g
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn steps_fuse_what_the_rule_pairs() {
    let g = graph();
    let names = |fold| -> Vec<String> {
        let opts = PlanOptions {
            fold_batch_norm: fold,
        };
        let steps = compile_steps(&g, g.len(), &[], opts).unwrap();
        steps.iter().map(|s| s.name.clone()).collect()
    };
    assert_eq!(
        names(true),
        [
            "stem..stem_relu",
            "expand..expand_relu",
            "pad..dw_relu",
            "project..project_bn",
            "add",
            "gap",
            "hidden",
            "dropout",
            "logits"
        ]
    );
    assert_eq!(
        names(false),
        [
            "stem",
            "stem_bn..stem_relu",
            "expand",
            "expand_bn..expand_relu",
            "pad..dw",
            "dw_bn..dw_relu",
            "project",
            "project_bn",
            "add",
            "gap",
            "hidden",
            "dropout",
            "logits"
        ]
    );
    // A kept output is never fused away: `stem_bn` wanted on its own ends the stem's step.
    let kept = compile_steps(&g, g.len(), &[1], PlanOptions::default()).unwrap();
    assert_eq!(kept[0].name, "stem..stem_bn");
    assert_eq!(kept[1].name, "stem_relu");
}

#[test]
fn plan_graph_and_export_agree() {
    let mut g = graph();
    let (h, w) = (15, 12);
    let x = values(&[2, h, w, 3], 99, -1.0, 1.0);
    let last = g.len() - 1;
    let want = g.forward(&x, Mode::Infer).unwrap();
    let plan = FoldedPlan::compile(&g, g.len(), &[last]).unwrap();
    assert_eq!(
        plan.len(),
        6,
        "stem, one inverted-residual block, gap, two dense, dropout"
    );
    let got = plan.run(&x).unwrap().remove(&last).unwrap();
    let d = max_diff(&got, &want);
    assert!(d < 1e-5, "folded plan vs graph: {d}");
    assert!(want.iter().any(|v| v.abs() > 0.05), "a degenerate graph");

    let probs = softmax(&got);
    for keep_batch_norm in [false, true] {
        let o = options(h, w, keep_batch_norm);
        let model = onnx::export(&g, &o).unwrap();
        let ops = |op: &str| {
            let nodes = &model.graph.as_ref().unwrap().node;
            nodes.iter().filter(|n| n.op_type == op).count()
        };
        assert_eq!(ops("Conv"), 4);
        assert_eq!(
            ops("BatchNormalization"),
            if keep_batch_norm { 4 } else { 0 }
        );
        let bytes = onnx::to_bytes(&model);
        let runnable = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .unwrap()
            .with_input_fact(0, f32::fact([2, h, w, 3]).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let input: tract_onnx::prelude::Tensor =
            tract_ndarray::Array4::from_shape_vec((2, h, w, 3), x.iter().copied().collect())
                .unwrap()
                .into();
        let out = runnable.run(tvec!(input.into())).unwrap();
        let onnx_probs = out[0].to_plain_array_view::<f32>().unwrap();
        let d = onnx_probs
            .iter()
            .zip(probs.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            d < 1e-5,
            "keep_batch_norm {keep_batch_norm}: tract vs plan {d}"
        );
    }
}

fn softmax(logits: &Tensor) -> Vec<f32> {
    let mut out = Vec::new();
    for row in logits.outer_iter() {
        let m = row.iter().copied().fold(f32::MIN, f32::max);
        let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

fn options(height: usize, width: usize, keep_batch_norm: bool) -> Options {
    Options {
        include_preprocessing: false,
        keep_batch_norm,
        preprocessing: Preprocessing {
            name: "none".into(),
            scale: 1.0,
            offset: 0.0,
        },
        classes: (0..4).map(|i| i.to_string()).collect(),
        interpolation: "bilinear".into(),
        height,
        width,
        name: "any graph".into(),
        extra_metadata: vec![],
    }
}
