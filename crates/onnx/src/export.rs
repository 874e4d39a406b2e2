//! A MobileNetV2 graph (base + ImageNet top or trained head) as an ONNX inference model.
//!
//! The model takes NHWC float32 `image` `[batch, H, W, 3]` (as the rest of this project and Keras
//! do) and transposes once to NCHW, the layout of ONNX's convolution operators. Each Keras layer
//! becomes the ONNX node of the same name: `Conv` (depthwise ones with `group` = channels, weights
//! HWIO -> OIHW), a frozen batch-norm folded into the convolution before it (or kept as
//! `BatchNormalization`), `ZeroPadding2D` merged into the padding of the convolution it feeds,
//! ReLU6 as `Clip(0, 6)`, `Add`, `GlobalAveragePool` + `Flatten`, `Gemm` for Dense layers, and
//! `Softmax` giving `probabilities`. Dropout is the identity at inference and leaves no node.

use crate::builder::{float_value, Attr, GraphBuilder};
use crate::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::{Error, Result};
use mobilenet::Kind;
use nn::graph::INPUT;
use nn::{Graph, NodeId, Tensor};
use std::collections::HashMap;
use tensor_core::fold::{fold_batch_norm, BnView};
use tensor_core::{Activation, Padding};

/// The ONNX operator set the exported model declares (all operators used exist unchanged in it).
pub const OPSET: i64 = 17;
/// ONNX IR version written (IR 8 goes with opset 17).
pub const IR_VERSION: i64 = 8;
/// MobileNetV2 builds every batch-norm with Keras's epsilon.
const BN_EPS: f32 = 1e-3;

/// Pixel scaling `x * scale + offset` applied to 0..255 RGB values, and its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocessing {
    pub name: String,
    pub scale: f32,
    pub offset: f32,
}

/// What to export and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Bake the preprocessing into the graph (input: decoded RGB as float 0..255).
    pub include_preprocessing: bool,
    /// Keep `BatchNormalization` nodes instead of folding them into the convolutions.
    pub keep_batch_norm: bool,
    pub preprocessing: Preprocessing,
    /// Class names, in output order (stored in the metadata as a JSON list).
    pub classes: Vec<String>,
    /// Resize interpolation the model was trained with (metadata only).
    pub interpolation: String,
    /// Input height and width the model was built for.
    pub height: usize,
    pub width: usize,
    /// The graph's name (for example the run folder).
    pub name: String,
    /// Extra metadata entries (key, value).
    pub extra_metadata: Vec<(String, String)>,
}

/// The variables of one node by short name (`kernel`, `gamma`, ...).
fn values(g: &mut Graph, id: NodeId) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    g.layer_mut(id).visit_params(&mut |p| {
        let short = p.name.rsplit('/').next().unwrap_or(&p.name).to_string();
        out.insert(short, p.value.clone());
    });
    out
}

fn var<'a>(v: &'a HashMap<String, Tensor>, layer: &str, name: &str) -> Result<&'a Tensor> {
    v.get(name)
        .ok_or_else(|| Error::Model(format!("{layer}: no variable {name}")))
}

fn slice<'a>(t: &'a Tensor, layer: &str) -> Result<&'a [f32]> {
    t.as_slice()
        .ok_or_else(|| Error::Model(format!("{layer}: a variable is not contiguous")))
}

/// Readers of each node's output.
fn consumers(g: &Graph) -> Vec<usize> {
    let mut c = vec![0usize; g.len()];
    for i in 0..g.len() {
        for &j in g.inputs(i) {
            if j != INPUT {
                c[j] += 1;
            }
        }
    }
    c
}

/// Walks the graph and emits nodes.
struct Exporter<'a> {
    g: &'a mut Graph,
    kinds: &'a [Kind],
    opts: &'a Options,
    b: GraphBuilder,
    /// ONNX tensor name of each graph node's output.
    out: Vec<String>,
    /// Spatial size `(h, w)` of each node's output (4-D nodes only).
    hw: Vec<(usize, usize)>,
    readers: Vec<usize>,
    /// Explicit padding `(top, bottom, left, right)` a `ZeroPadding2D` hands to the conv after it.
    pending_pad: HashMap<NodeId, (usize, usize, usize, usize)>,
}

impl Exporter<'_> {
    fn input_of(&self, i: NodeId) -> Result<(String, (usize, usize))> {
        let j = *self
            .g
            .inputs(i)
            .first()
            .ok_or_else(|| Error::Model(format!("node {i} has no input")))?;
        Ok(if j == INPUT {
            (
                "image_nchw".to_string(),
                (self.opts.height, self.opts.width),
            )
        } else {
            (self.out[j].clone(), self.hw[j])
        })
    }

    /// The batch-norm right after `i`, when it can be folded into `i`'s kernel.
    fn foldable_bn(&self, i: NodeId) -> Option<NodeId> {
        let next = i + 1;
        (!self.opts.keep_batch_norm
            && self.kinds.get(next) == Some(&Kind::BatchNorm)
            && self.g.inputs(next) == [i]
            && self.readers[i] == 1)
            .then_some(next)
    }

    fn conv(
        &mut self,
        i: NodeId,
        stride: usize,
        padding: Padding,
        depthwise: bool,
    ) -> Result<NodeId> {
        let name = self.g.layer(i).name().to_string();
        let (x, (h, w)) = self.input_of(i)?;
        let v = values(self.g, i);
        let kernel = var(
            &v,
            &name,
            if depthwise {
                "depthwise_kernel"
            } else {
                "kernel"
            },
        )?;
        let k: ndarray::Array4<f32> = kernel
            .clone()
            .into_dimensionality()
            .map_err(|e| Error::Model(format!("{name}: kernel is not 4-D: {e}")))?
            .into_owned();
        let (kh, kw, cin, cm) = k.dim();
        let cout = if depthwise { cin } else { cm };
        let mut bias = match v.get("bias") {
            Some(b) => slice(b, &name)?.to_vec(),
            None => vec![0.0; cout],
        };
        let mut k = k;
        let mut last = i;
        if let Some(bn) = self.foldable_bn(i) {
            let bv = values(self.g, bn);
            let bn_name = self.g.layer(bn).name().to_string();
            let view = BnView {
                gamma: slice(var(&bv, &bn_name, "gamma")?, &bn_name)?,
                beta: slice(var(&bv, &bn_name, "beta")?, &bn_name)?,
                moving_mean: slice(var(&bv, &bn_name, "moving_mean")?, &bn_name)?,
                moving_variance: slice(var(&bv, &bn_name, "moving_variance")?, &bn_name)?,
                eps: BN_EPS,
            };
            let (folded, shift) = fold_batch_norm(k.view(), view, depthwise)?;
            let (scale, _) = tensor_core::batch_norm::scale_shift(
                view.gamma,
                view.beta,
                view.moving_mean,
                view.moving_variance,
                view.eps,
            );
            for ((b, s), sh) in bias.iter_mut().zip(&scale).zip(&shift) {
                *b = *b * s + sh;
            }
            k = folded;
            last = bn;
        }
        // HWIO -> OIHW (depthwise: HW C 1 -> C 1 H W).
        let oihw: Vec<f32> = if depthwise {
            k.permuted_axes([2, 3, 0, 1]).iter().copied().collect()
        } else {
            k.permuted_axes([3, 2, 0, 1]).iter().copied().collect()
        };
        let wdims = if depthwise {
            [cin, 1, kh, kw]
        } else {
            [cout, cin, kh, kw]
        };
        let (rows, cols) = padding
            .resolve(h, w, kh, kw, stride)
            .map_err(|e| Error::Model(format!("{name}: {e}")))?;
        let (mut t, mut bo, mut l, mut r) = (rows.before, rows.after, cols.before, cols.after);
        if let Some((pt, pb, pl, pr)) = self.pending_pad.remove(&i) {
            (t, bo, l, r) = (t + pt, bo + pb, l + pl, r + pr);
        }
        let wname = format!("{name}/kernel");
        let bname = format!("{name}/bias");
        self.b.weights(&wname, &wdims, &oihw);
        self.b.weights(&bname, &[cout], &bias);
        let out_name = self.g.layer(last).name().to_string();
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
            ("strides", Attr::Ints(vec![stride as i64, stride as i64])),
            (
                "pads",
                Attr::Ints(vec![t as i64, l as i64, bo as i64, r as i64]),
            ),
            ("dilations", Attr::Ints(vec![1, 1])),
        ];
        if depthwise {
            attrs.push(("group", Attr::Int(cin as i64)));
        }
        self.b
            .node("Conv", &name, &[&x, &wname, &bname], &out_name, attrs);
        for n in i..=last {
            self.out[n] = out_name.clone();
            self.hw[n] = (rows.out, cols.out);
        }
        Ok(last)
    }

    fn batch_norm(&mut self, i: NodeId) -> Result<()> {
        let name = self.g.layer(i).name().to_string();
        let (x, hw) = self.input_of(i)?;
        let v = values(self.g, i);
        let mut inputs = vec![x];
        for p in ["gamma", "beta", "moving_mean", "moving_variance"] {
            let t = var(&v, &name, p)?;
            let n = format!("{name}/{p}");
            self.b.weights(&n, &[t.len()], slice(t, &name)?);
            inputs.push(n);
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.b.node(
            "BatchNormalization",
            &name,
            &refs,
            &name,
            vec![("epsilon", Attr::Float(BN_EPS))],
        );
        self.out[i] = name;
        self.hw[i] = hw;
        Ok(())
    }

    fn activation(&mut self, i: NodeId, name: &str, x: &str, act: Activation) {
        match act {
            Activation::Linear => {}
            Activation::Relu => self.b.node("Relu", name, &[x], name, vec![]),
            Activation::Relu6 => {
                for (n, v) in [("relu6/min", 0.0f32), ("relu6/max", 6.0)] {
                    if !self.b.has_initializer(n) {
                        self.b.weights(n, &[], &[v]);
                    }
                }
                self.b
                    .node("Clip", name, &[x, "relu6/min", "relu6/max"], name, vec![]);
            }
        }
        self.out[i] = if act == Activation::Linear {
            x.to_string()
        } else {
            name.to_string()
        };
    }

    fn dense(&mut self, i: NodeId, act: Activation) -> Result<()> {
        let name = self.g.layer(i).name().to_string();
        let (x, _) = self.input_of(i)?;
        let v = values(self.g, i);
        let k = var(&v, &name, "kernel")?;
        let (kin, kout) = match k.shape() {
            [a, b] => (*a, *b),
            s => {
                return Err(Error::Model(format!(
                    "{name}: kernel shape {s:?} is not 2-D"
                )))
            }
        };
        let (wname, bname) = (format!("{name}/kernel"), format!("{name}/bias"));
        self.b.weights(&wname, &[kin, kout], slice(k, &name)?);
        self.b
            .weights(&bname, &[kout], slice(var(&v, &name, "bias")?, &name)?);
        let gemm_out = if act == Activation::Linear {
            name.clone()
        } else {
            format!("{name}/linear")
        };
        self.b
            .node("Gemm", &name, &[&x, &wname, &bname], &gemm_out, vec![]);
        self.out[i] = gemm_out.clone();
        if act != Activation::Linear {
            self.activation(i, &format!("{name}/{act:?}").to_lowercase(), &gemm_out, act);
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.g.len() {
            let name = self.g.layer(i).name().to_string();
            match self.kinds[i] {
                Kind::Conv { stride, padding } => i = self.conv(i, stride, padding, false)?,
                Kind::Depthwise { stride, padding } => i = self.conv(i, stride, padding, true)?,
                Kind::BatchNorm => self.batch_norm(i)?,
                Kind::Relu(a) => {
                    let (x, hw) = self.input_of(i)?;
                    self.activation(i, &name, &x, a);
                    self.hw[i] = hw;
                }
                Kind::Pad(((t, b), (l, r))) => {
                    let next = i + 1;
                    let merges = matches!(
                        self.kinds.get(next),
                        Some(Kind::Depthwise { .. } | Kind::Conv { .. })
                    ) && self.g.inputs(next) == [i]
                        && self.readers[i] == 1;
                    if !merges {
                        return Err(Error::Model(format!(
                            "{name}: a ZeroPadding2D that does not feed a convolution is not exported"
                        )));
                    }
                    let (x, (h, w)) = self.input_of(i)?;
                    self.pending_pad.insert(next, (t, b, l, r));
                    self.out[i] = x;
                    self.hw[i] = (h + t + b, w + l + r);
                    // The convolution resolves its own padding from the padded size.
                }
                Kind::Add => {
                    let ins: Vec<String> = self
                        .g
                        .inputs(i)
                        .iter()
                        .map(|&j| self.out[j].clone())
                        .collect();
                    let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                    self.b.node("Add", &name, &refs, &name, vec![]);
                    let (_, hw) = self.input_of(i)?;
                    self.out[i] = name;
                    self.hw[i] = hw;
                }
                Kind::GlobalPool => {
                    let (x, _) = self.input_of(i)?;
                    let pooled = format!("{name}/nchw11");
                    self.b
                        .node("GlobalAveragePool", &name, &[&x], &pooled, vec![]);
                    self.b.node(
                        "Flatten",
                        &format!("{name}/flatten"),
                        &[&pooled],
                        &name,
                        vec![("axis", Attr::Int(1))],
                    );
                    self.out[i] = name;
                }
                Kind::Dense(act) => self.dense(i, act)?,
                Kind::Dropout => {
                    let (x, _) = self.input_of(i)?;
                    self.out[i] = x;
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// Input name of the exported model.
pub const INPUT_NAME: &str = "image";
/// Output name of the exported model.
pub const OUTPUT_NAME: &str = "probabilities";

/// Exports the whole graph (`kinds` one per node; the last node is the classifier's logits).
pub fn export(g: &mut Graph, kinds: &[Kind], opts: &Options) -> Result<ModelProto> {
    if kinds.len() != g.len() || g.is_empty() {
        return Err(Error::Model(format!(
            "{} kinds for {} graph nodes",
            kinds.len(),
            g.len()
        )));
    }
    let n = g.len();
    let readers = consumers(g);
    let mut e = Exporter {
        g,
        kinds,
        opts,
        b: GraphBuilder::default(),
        out: vec![String::new(); n],
        hw: vec![(0, 0); n],
        readers,
        pending_pad: HashMap::new(),
    };
    let (h, w) = (opts.height, opts.width);
    let mut x = INPUT_NAME.to_string();
    if opts.include_preprocessing {
        let p = &opts.preprocessing;
        // Initializers are named apart from nodes: some runtimes (tract) give both one namespace.
        e.b.weights("preprocess/scale_value", &[], &[p.scale]);
        e.b.weights("preprocess/offset_value", &[], &[p.offset]);
        e.b.node(
            "Mul",
            "preprocess/scale",
            &[&x, "preprocess/scale_value"],
            "preprocess/scaled",
            vec![],
        );
        e.b.node(
            "Add",
            "preprocess/offset",
            &["preprocess/scaled", "preprocess/offset_value"],
            "preprocessed",
            vec![],
        );
        x = "preprocessed".into();
    }
    e.b.node(
        "Transpose",
        "to_nchw",
        &[&x],
        "image_nchw",
        vec![("perm", Attr::Ints(vec![0, 3, 1, 2]))],
    );
    e.run()?;
    let logits = e.out[n - 1].clone();
    e.b.node(
        "Softmax",
        "softmax",
        &[&logits],
        OUTPUT_NAME,
        vec![("axis", Attr::Int(-1))],
    );
    let classes = opts.classes.len();
    let mut graph = e.b.graph;
    graph.name = opts.name.clone();
    graph.input = vec![float_value(INPUT_NAME, &[None, Some(h), Some(w), Some(3)])];
    graph.output = vec![float_value(OUTPUT_NAME, &[None, Some(classes)])];
    graph.doc_string = format!(
        "MobileNetV2 classifier: NHWC float32 {INPUT_NAME} [batch, {h}, {w}, 3] -> {OUTPUT_NAME} [batch, {classes}]"
    );
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "mobilenet-rs".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: metadata(opts),
        ..Default::default()
    })
}

fn metadata(o: &Options) -> Vec<StringStringEntryProto> {
    let p = &o.preprocessing;
    let mut m = vec![
        (
            "classes",
            serde_json::to_string(&o.classes).unwrap_or_default(),
        ),
        ("input_layout", "NHWC".into()),
        ("input_size", format!("{}x{}", o.height, o.width)),
        ("preprocessing", p.name.clone()),
        (
            "preprocessing_formula",
            format!("x * {} + {} on RGB values 0..255", p.scale, p.offset),
        ),
        (
            "preprocessing_in_graph",
            o.include_preprocessing.to_string(),
        ),
        ("interpolation", o.interpolation.clone()),
        (
            "batch_norm",
            if o.keep_batch_norm { "kept" } else { "folded" }.into(),
        ),
    ];
    for (k, v) in &o.extra_metadata {
        m.push((k.as_str(), v.clone()));
    }
    m.into_iter()
        .map(|(k, v)| StringStringEntryProto {
            key: k.to_string(),
            value: v,
        })
        .collect()
}
