//! A MobileNetV2 graph (base + ImageNet top or trained head) as an ONNX inference model.
//!
//! The model takes NHWC float32 `image` `[batch, H, W, 3]` (as the rest of this project and Keras
//! do) and transposes once to NCHW, the layout of ONNX's convolution operators. It is written from
//! the steps the folded inference plan compiles ([`mobilenet::folded::compile_steps`]), so it fuses
//! exactly what `predict` fuses. Each step becomes ONNX nodes named after its Keras layers: `Conv` (depthwise ones with `group` = channels, weights
//! HWIO -> OIHW), a frozen batch-norm folded into the convolution before it (or kept as
//! `BatchNormalization`), `ZeroPadding2D` merged into the padding of the convolution it feeds,
//! ReLU6 as `Clip(0, 6)`, `Add`, `GlobalAveragePool` + `Flatten`, `Gemm` for Dense layers, and
//! `Softmax` giving `probabilities`. Dropout is the identity at inference and leaves no node.

use crate::builder::{float_value, Attr, GraphBuilder};
use crate::proto::{ModelProto, OperatorSetIdProto, StringStringEntryProto};
use crate::{Error, Result};
use mobilenet::folded::{compile_steps, Op, Options as PlanOptions, Step};
use nn::graph::INPUT;
use nn::{Graph, LayerSpec, NodeId};
use std::collections::HashMap;
use tensor_core::Activation;

/// The ONNX operator set the exported model declares (all operators used exist unchanged in it).
pub const OPSET: i64 = 17;
/// ONNX IR version written (IR 8 goes with opset 17).
pub const IR_VERSION: i64 = 8;

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

/// Walks the compiled steps and emits nodes.
struct Exporter<'a> {
    g: &'a Graph,
    opts: &'a Options,
    b: GraphBuilder,
    /// ONNX tensor name of each graph node's output.
    out: HashMap<NodeId, String>,
    /// Spatial size `(h, w)` of each node's output (4-D nodes only).
    hw: HashMap<NodeId, (usize, usize)>,
}

impl Exporter<'_> {
    fn name(&self, id: NodeId) -> String {
        self.g.layer(id).name().to_string()
    }

    /// The ONNX name and spatial size of the step's `k`-th input.
    fn input(&self, s: &Step, k: usize) -> Result<(String, (usize, usize))> {
        let j = *s
            .inputs
            .get(k)
            .ok_or_else(|| Error::Model(format!("{}: input {k} missing", s.name)))?;
        if j == INPUT {
            return Ok((
                "image_nchw".to_string(),
                (self.opts.height, self.opts.width),
            ));
        }
        let name = self
            .out
            .get(&j)
            .ok_or_else(|| Error::Model(format!("{}: reads node {j} before it", s.name)))?;
        Ok((name.clone(), self.hw.get(&j).copied().unwrap_or((0, 0))))
    }

    /// Where a step's linear result goes and what its activation node is called: a fused
    /// activation layer keeps its Keras name (the linear result takes the name of the node before
    /// it); a layer's own activation is `{name}/{act}` after `{name}/linear`.
    fn act_names(&self, s: &Step, act: Activation) -> (String, String) {
        let out = self.name(s.out);
        if act == Activation::Linear {
            return (out, String::new());
        }
        match self.g.layer(s.out).describe() {
            LayerSpec::Activation(_) if s.out > s.layer => (self.name(s.out - 1), out),
            _ => (
                format!("{out}/linear"),
                format!("{out}/{act:?}").to_lowercase(),
            ),
        }
    }

    /// Emits `act` on `x` (nothing for linear) and records the step's output.
    fn finish(&mut self, s: &Step, x: String, act_name: &str, act: Activation, hw: (usize, usize)) {
        let y = match act {
            Activation::Linear => x,
            Activation::Relu => {
                self.b.node("Relu", act_name, &[&x], act_name, vec![]);
                act_name.to_string()
            }
            Activation::Relu6 => {
                for (n, v) in [("relu6/min", 0.0f32), ("relu6/max", 6.0)] {
                    if !self.b.has_initializer(n) {
                        self.b.weights(n, &[], &[v]);
                    }
                }
                self.b.node(
                    "Clip",
                    act_name,
                    &[&x, "relu6/min", "relu6/max"],
                    act_name,
                    vec![],
                );
                act_name.to_string()
            }
        };
        self.out.insert(s.out, y);
        self.hw.insert(s.out, hw);
    }

    /// A convolution step (`s.op` is an [`Op::Conv`]): weights to OIHW, its padding resolved.
    fn conv(&mut self, s: &Step) -> Result<()> {
        let name = self.name(s.layer);
        let Op::Conv {
            w,
            bias,
            stride,
            padding,
            act,
            depthwise,
        } = &s.op
        else {
            return Err(Error::Model(format!("{name}: not a convolution step")));
        };
        let (stride, padding, act, depthwise) = (*stride, *padding, *act, *depthwise);
        let (x, (h, wd)) = self.input(s, 0)?;
        let (kh, kw, cin, cm) = w.dim();
        let cout = if depthwise { cin } else { cm };
        // HWIO -> OIHW (depthwise: HW C 1 -> C 1 H W).
        let (oihw, wdims): (Vec<f32>, [usize; 4]) = if depthwise {
            let k = w.view().permuted_axes([2, 3, 0, 1]);
            (k.iter().copied().collect(), [cin, 1, kh, kw])
        } else {
            let k = w.view().permuted_axes([3, 2, 0, 1]);
            (k.iter().copied().collect(), [cout, cin, kh, kw])
        };
        let (rows, cols) = padding
            .resolve(h, wd, kh, kw, stride)
            .map_err(|e| Error::Model(format!("{name}: {e}")))?;
        let (wname, bname) = (format!("{name}/kernel"), format!("{name}/bias"));
        self.b.weights(&wname, &wdims, &oihw);
        self.b.weights(&bname, &[cout], bias);
        let (linear, act_name) = self.act_names(s, act);
        let pads = [rows.before, cols.before, rows.after, cols.after];
        let mut attrs = vec![
            ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
            ("strides", Attr::Ints(vec![stride as i64, stride as i64])),
            ("pads", Attr::Ints(pads.iter().map(|&p| p as i64).collect())),
            ("dilations", Attr::Ints(vec![1, 1])),
        ];
        if depthwise {
            attrs.push(("group", Attr::Int(cin as i64)));
        }
        self.b
            .node("Conv", &name, &[&x, &wname, &bname], &linear, attrs);
        self.finish(s, linear, &act_name, act, (rows.out, cols.out));
        Ok(())
    }

    /// A batch-norm kept as one: its own variables, read from the layer.
    fn batch_norm(&mut self, s: &Step, act: Activation) -> Result<()> {
        let name = self.name(s.layer);
        let LayerSpec::BatchNormalization {
            gamma,
            beta,
            moving_mean,
            moving_variance,
            eps,
        } = self.g.layer(s.layer).describe()
        else {
            return Err(Error::Model(format!(
                "{name}: a scale step not from a batch-norm"
            )));
        };
        let (x, hw) = self.input(s, 0)?;
        let mut inputs = vec![x];
        for (p, t) in [
            ("gamma", gamma),
            ("beta", beta),
            ("moving_mean", moving_mean),
            ("moving_variance", moving_variance),
        ] {
            let n = format!("{name}/{p}");
            let v: Vec<f32> = t.iter().copied().collect();
            self.b.weights(&n, &[v.len()], &v);
            inputs.push(n);
        }
        let (linear, act_name) = self.act_names(s, act);
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        self.b.node(
            "BatchNormalization",
            &name,
            &refs,
            &linear,
            vec![("epsilon", Attr::Float(eps))],
        );
        self.finish(s, linear, &act_name, act, hw);
        Ok(())
    }

    fn dense(
        &mut self,
        s: &Step,
        w: &ndarray::Array2<f32>,
        b: &ndarray::Array1<f32>,
        act: Activation,
    ) -> Result<()> {
        let name = self.name(s.layer);
        let (x, hw) = self.input(s, 0)?;
        let (kin, kout) = w.dim();
        let (wname, bname) = (format!("{name}/kernel"), format!("{name}/bias"));
        let wv: Vec<f32> = w.iter().copied().collect();
        let bv: Vec<f32> = b.iter().copied().collect();
        self.b.weights(&wname, &[kin, kout], &wv);
        self.b.weights(&bname, &[kout], &bv);
        let (linear, act_name) = self.act_names(s, act);
        self.b
            .node("Gemm", &name, &[&x, &wname, &bname], &linear, vec![]);
        self.finish(s, linear, &act_name, act, hw);
        Ok(())
    }

    fn step(&mut self, s: &Step) -> Result<()> {
        let name = self.name(s.layer);
        match &s.op {
            Op::Conv { .. } => self.conv(s)?,
            Op::Scale { act, .. } => self.batch_norm(s, *act)?,
            Op::Act(a) => {
                let (x, hw) = self.input(s, 0)?;
                self.finish(s, x, &name, *a, hw);
            }
            Op::Pad(_) => {
                return Err(Error::Model(format!(
                    "{name}: a ZeroPadding2D that does not feed a valid convolution is not exported"
                )))
            }
            Op::Add => {
                let ((a, hw), (b, _)) = (self.input(s, 0)?, self.input(s, 1)?);
                self.b.node("Add", &name, &[&a, &b], &name, vec![]);
                self.finish(s, name, "", Activation::Linear, hw);
            }
            Op::Gap => {
                let (x, _) = self.input(s, 0)?;
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
                self.finish(s, name, "", Activation::Linear, (1, 1));
            }
            Op::Dense { w, b, act } => self.dense(s, w, b, *act)?,
            Op::Identity => {
                let (x, hw) = self.input(s, 0)?;
                self.finish(s, x, "", Activation::Linear, hw);
            }
            Op::Block(_) | Op::Packed(_) => {
                return Err(Error::Model(format!(
                    "{name}: fused blocks and packed products are not exported (compile without \
                     block fusion)"
                )))
            }
        }
        Ok(())
    }
}

/// Input name of the exported model.
pub const INPUT_NAME: &str = "image";
/// Output name of the exported model.
pub const OUTPUT_NAME: &str = "probabilities";

/// Exports the whole graph (its last node is the classifier's logits) from the same compiled steps
/// the folded inference plan runs ([`compile_steps`]), batch-norms folded unless
/// `opts.keep_batch_norm`.
pub fn export(g: &Graph, opts: &Options) -> Result<ModelProto> {
    if g.is_empty() {
        return Err(Error::Model("an empty graph has nothing to export".into()));
    }
    let last = g.len() - 1;
    let plan = compile_steps(
        g,
        g.len(),
        &[],
        PlanOptions {
            fold_batch_norm: !opts.keep_batch_norm,
        },
    )
    .map_err(|e| Error::Model(e.to_string()))?;
    let mut e = Exporter {
        g,
        opts,
        b: GraphBuilder::default(),
        out: HashMap::new(),
        hw: HashMap::new(),
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
    for step in &plan {
        e.step(step)?;
    }
    let logits = e
        .out
        .get(&last)
        .cloned()
        .ok_or_else(|| Error::Model("the last node was never computed".into()))?;
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
