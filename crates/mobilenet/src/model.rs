//! MobileNetV2 as a graph of Keras layers, built by name from a [`VarStore`].

use crate::arch::{Alpha, BLOCKS};
use crate::{Error, Result};
use nn::graph::INPUT;
use nn::layers::{batch_norm::BnConfig, *};
use nn::vars::VarStore;
use nn::{Graph, Mode, NodeId, Tensor};
use tensor_core::padding::keras_correct_pad;
use tensor_core::{Activation, Padding};

/// Width, input size and whether the 1000-class top is included.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    pub alpha: f32,
    pub height: usize,
    pub width: usize,
    pub include_top: bool,
}

impl ModelConfig {
    /// Infers alpha and top from the shapes in `vs` (224x224 input).
    pub fn infer(vs: &VarStore) -> Result<Self> {
        let conv1 = vs.shape("Conv1/kernel").ok_or_else(|| {
            Error::Config(format!(
                "{}: no Conv1/kernel: not MobileNetV2 weights",
                vs.source().display()
            ))
        })?;
        let last = vs.shape("block_16_project/kernel").map(|s| s.to_vec());
        let alpha = Alpha::PUBLISHED
            .into_iter()
            .find(|&a| {
                let a = Alpha(a);
                conv1 == [3, 3, 3, a.first_filters()] && last.as_deref().is_some_and(|l| l.last() == Some(&a.block_filters(320)))
            })
            .ok_or_else(|| Error::Config(format!("{}: Conv1/kernel {conv1:?} and block_16_project/kernel {last:?} match no published alpha", vs.source().display())))?;
        Ok(ModelConfig {
            alpha,
            height: 224,
            width: 224,
            include_top: vs.contains("predictions/kernel"),
        })
    }
}

/// The base network (and optionally the top) as a graph of Keras layers.
pub struct MobileNetV2 {
    pub config: ModelConfig,
    pub graph: Graph,
    /// The `out_relu` node: the base's last layer.
    pub out_relu: NodeId,
    /// Classes of the top, when included.
    pub classes: Option<usize>,
}

/// Builds layers in order, tracking the feature-map shape for `correct_pad`.
pub(crate) struct Builder<'a> {
    vs: &'a VarStore,
    pub graph: Graph,
    h: usize,
    w: usize,
    c: usize,
    bn: BnConfig,
}

impl<'a> Builder<'a> {
    fn last(&self) -> NodeId {
        self.graph.len().checked_sub(1).unwrap_or(INPUT)
    }

    fn node(&mut self, layer: impl nn::Layer + 'static, inputs: &[NodeId]) -> NodeId {
        self.graph.add(layer, inputs)
    }

    fn conv(
        &mut self,
        name: &str,
        cout: usize,
        k: usize,
        stride: usize,
        padding: Padding,
    ) -> NodeId {
        let w = self
            .vs
            .get(&format!("{name}/kernel"), &[k, k, self.c, cout]);
        let input = self.last();
        let (r, c) = padding
            .resolve(self.h, self.w, k, k, stride)
            .expect("sizes checked at build");
        (self.h, self.w, self.c) = (r.out, c.out, cout);
        self.node(Conv2D::new(name, w, None, stride, padding), &[input])
    }

    fn depthwise(&mut self, name: &str, stride: usize, padding: Padding) -> NodeId {
        let w = self
            .vs
            .get(&format!("{name}/depthwise_kernel"), &[3, 3, self.c, 1]);
        let input = self.last();
        let (r, c) = padding
            .resolve(self.h, self.w, 3, 3, stride)
            .expect("sizes checked at build");
        (self.h, self.w) = (r.out, c.out);
        self.node(DepthwiseConv2D::new(name, w, stride, padding), &[input])
    }

    fn bn(&mut self, name: &str) -> NodeId {
        let c = self.c;
        let get = |v: &str| self.vs.get(&format!("{name}/{v}"), &[c]);
        let layer = BatchNormalization::new(
            name,
            get("gamma"),
            get("beta"),
            get("moving_mean"),
            get("moving_variance"),
            self.bn,
        )
        .expect("shapes from get");
        let input = self.last();
        self.node(layer, &[input])
    }

    fn relu6(&mut self, name: &str) -> NodeId {
        let input = self.last();
        self.node(ReLU::relu6(name), &[input])
    }

    fn pad(&mut self, name: &str) -> NodeId {
        let p = keras_correct_pad(self.h, self.w, 3);
        let input = self.last();
        self.h += p.0 .0 + p.0 .1;
        self.w += p.1 .0 + p.1 .1;
        self.node(ZeroPadding2D::new(name, p), &[input])
    }

    fn inverted_res_block(&mut self, alpha: Alpha, id: usize) {
        let (filters, stride, expansion) = BLOCKS[id];
        let input = self.last();
        let in_c = self.c;
        let out_c = alpha.block_filters(filters);
        let prefix = if id == 0 {
            "expanded_conv".to_string()
        } else {
            format!("block_{id}")
        };
        if id > 0 {
            self.conv(
                &format!("{prefix}_expand"),
                expansion * in_c,
                1,
                1,
                Padding::Same,
            );
            self.bn(&format!("{prefix}_expand_BN"));
            self.relu6(&format!("{prefix}_expand_relu"));
        }
        let padding = if stride == 2 {
            self.pad(&format!("{prefix}_pad"));
            Padding::Valid
        } else {
            Padding::Same
        };
        self.depthwise(&format!("{prefix}_depthwise"), stride, padding);
        self.bn(&format!("{prefix}_depthwise_BN"));
        self.relu6(&format!("{prefix}_depthwise_relu"));
        self.conv(&format!("{prefix}_project"), out_c, 1, 1, Padding::Same);
        let projected = self.bn(&format!("{prefix}_project_BN"));
        if in_c == out_c && stride == 1 {
            self.node(Add::new(&format!("{prefix}_add")), &[input, projected]);
        }
    }
}

impl MobileNetV2 {
    /// Builds the network and loads every variable from `vs`. Fails listing every missing,
    /// mis-shaped and (unless the top is deliberately left out) unexpected name.
    pub fn load(vs: VarStore, config: ModelConfig) -> Result<Self> {
        if config.height < 32 || config.width < 32 {
            return Err(Error::Config(format!(
                "input {}x{} is below MobileNetV2's minimum of 32x32",
                config.height, config.width
            )));
        }
        if !Alpha::PUBLISHED.contains(&config.alpha) {
            return Err(Error::Config(format!(
                "alpha {} is not one of {:?}",
                config.alpha,
                Alpha::PUBLISHED
            )));
        }
        let alpha = Alpha(config.alpha);
        let mut b = Builder {
            vs: &vs,
            graph: Graph::new(),
            h: config.height,
            w: config.width,
            c: 3,
            bn: BnConfig::default(),
        };
        b.conv("Conv1", alpha.first_filters(), 3, 2, Padding::Same);
        b.bn("bn_Conv1");
        b.relu6("Conv1_relu");
        for id in 0..BLOCKS.len() {
            b.inverted_res_block(alpha, id);
        }
        b.conv("Conv_1", alpha.last_filters(), 1, 1, Padding::Valid);
        b.bn("Conv_1_bn");
        let out_relu = b.relu6("out_relu");
        let mut classes = None;
        if config.include_top {
            let n = vs
                .shape("predictions/kernel")
                .map(|s| s[s.len() - 1])
                .unwrap_or(1000);
            let c = b.c;
            let kernel = vs.get("predictions/kernel", &[c, n]);
            let bias = vs.get("predictions/bias", &[n]);
            b.node(
                GlobalAveragePooling2D::new("global_average_pooling2d"),
                &[out_relu],
            );
            let gap = b.last();
            b.node(
                Dense::from_values("predictions", kernel, bias, Activation::Linear)?,
                &[gap],
            );
            classes = Some(n);
        } else {
            vs.ignore("predictions/");
        }
        let graph = b.graph;
        vs.finish(false).map_err(nn::Error::from)?;
        let mut m = MobileNetV2 {
            config,
            graph,
            out_relu,
            classes,
        };
        m.graph.set_trainable(0..m.graph.len(), false);
        Ok(m)
    }

    /// Opens weights (directory or `.npz`), infers alpha and top, and loads. `want_top = Some(false)`
    /// drops a top that is present; `Some(true)` requires one.
    pub fn from_path(path: &std::path::Path, want_top: Option<bool>) -> Result<Self> {
        let vs = VarStore::open(path)?;
        let mut cfg = ModelConfig::infer(&vs)?;
        match want_top {
            Some(true) if !cfg.include_top => {
                return Err(Error::Config(format!("{}: these weights have no ImageNet top (predictions/kernel); use a directory with the top", path.display())))
            }
            Some(t) => cfg.include_top = t,
            None => {}
        }
        Self::load(vs, cfg)
    }

    /// Checks that `x` is `[N, H, W, 3]` at the size the model was built for.
    pub fn check_input(&self, x: &Tensor) -> Result<()> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.config.height || s[2] != self.config.width || s[3] != 3 {
            return Err(Error::Config(format!(
                "input has shape {s:?}, the model was built for [N, {}, {}, 3]",
                self.config.height, self.config.width
            )));
        }
        Ok(())
    }

    /// Plain (unfolded) forward through every layer.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.check_input(x)?;
        Ok(self.graph.forward(x, mode)?)
    }

    /// Inference outputs of the named layers (what Keras users get from `Model(inputs, layer.output)`),
    /// plus `features`, the pooled `out_relu`. Layers of the top (`predictions`) need the top.
    pub fn activations(&mut self, x: &Tensor, layers: &[String]) -> Result<Vec<(String, Tensor)>> {
        self.check_input(x)?;
        let mut ids = Vec::new();
        for l in layers.iter().filter(|l| l.as_str() != "features") {
            ids.push(
                self.graph
                    .find(l)
                    .ok_or_else(|| Error::Config(format!("no layer named {l:?}")))?,
            );
        }
        ids.push(self.out_relu);
        let end = ids.iter().max().copied().unwrap_or(self.out_relu) + 1;
        let out = self.graph.run(&[(INPUT, x)], 0..end, Mode::Infer, &ids)?;
        let captured = |id: NodeId| {
            out.captured
                .get(&id)
                .cloned()
                .or_else(|| (id == end - 1).then(|| out.last.clone()))
                .ok_or_else(|| Error::Config(format!("layer {id} was not captured")))
        };
        let relu = captured(self.out_relu)?;
        let feats = tensor_core::pool::global_avg_pool(
            relu.view()
                .into_dimensionality()
                .map_err(|e| Error::Config(e.to_string()))?,
        );
        let mut result: Vec<(String, Tensor)> = Vec::new();
        for l in layers {
            let t = match l.as_str() {
                "features" => feats.clone().into_dyn().into_shared(),
                "out_relu" => relu.clone(),
                _ => captured(self.graph.find(l).expect("checked above"))?,
            };
            result.push((l.clone(), t));
        }
        Ok(result)
    }

    /// Number of base layers in Keras's count (the graph nodes up to `out_relu`; Keras also lists
    /// the input layer first).
    pub fn base_len(&self) -> usize {
        self.out_relu + 1
    }

    /// Makes the last `n` base layers trainable (Keras: `for l in base.layers[-n:]: l.trainable = True`),
    /// the rest frozen.
    pub fn unfreeze_last(&mut self, n: usize) {
        let len = self.base_len();
        self.graph.set_trainable(0..len, false);
        self.graph.set_trainable(len.saturating_sub(n)..len, true);
    }
}
