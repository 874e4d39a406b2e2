//! A whole network (base + top or head) compiled once for inference: every node through the folded
//! plan, probabilities out. What `predict`, and anything else that only scores images, runs.

use crate::folded::FoldedPlan;
use crate::{Classifier, Error, MobileNetV2, QuantizedPlan, Result};
use ndarray::{Array2, Ix2};
use nn::{Graph, NodeId, Tensor};

/// The last node (the classifier whose output is the logits) and its number of classes.
pub(crate) fn logits_node(g: &mut Graph) -> Result<(NodeId, usize)> {
    let out = g
        .len()
        .checked_sub(1)
        .ok_or_else(|| Error::Config("an empty network cannot predict".into()))?;
    let mut classes = 0;
    g.layer_mut(out).visit_params(&mut |p| {
        if p.name.ends_with("/bias") {
            classes = p.value.len();
        }
    });
    if classes == 0 {
        return Err(Error::Config(format!(
            "the last layer ({}) is not a classifier",
            g.layer(out).name()
        )));
    }
    Ok((out, classes))
}

/// What runs the network: the folded f32 plan, or its int8 rewrite.
enum Engine {
    Folded { plan: FoldedPlan, out: NodeId },
    Int8(QuantizedPlan),
}

/// Inference-only model: folded plan over every node, softmax over the last one.
pub struct Predictor {
    engine: Engine,
    /// Input size the network was built for.
    pub height: usize,
    pub width: usize,
    /// Number of classes the last layer scores.
    pub classes: usize,
}

impl Predictor {
    fn compile(g: &mut Graph, height: usize, width: usize) -> Result<Self> {
        let (out, classes) = logits_node(g)?;
        let plan = FoldedPlan::compile(g, g.len(), &[out])?;
        Ok(Predictor {
            engine: Engine::Folded { plan, out },
            height,
            width,
            classes,
        })
    }

    /// The ImageNet model with its top (`predictions`).
    pub fn from_model(net: &mut MobileNetV2) -> Result<Self> {
        if net.classes.is_none() {
            return Err(Error::Config(
                "these weights have no top (predictions): nothing to classify with".into(),
            ));
        }
        Self::compile(&mut net.graph, net.config.height, net.config.width)
    }

    /// A trained classifier (base + head); dropout is the identity at inference.
    pub fn from_classifier(clf: &mut Classifier) -> Result<Self> {
        let (h, w) = (clf.net.config.height, clf.net.config.width);
        Self::compile(&mut clf.net.graph, h, w)
    }

    /// A quantized model (from `QuantizedPlan::load` or a `Calibrator`).
    pub fn from_quantized(plan: QuantizedPlan) -> Self {
        Predictor {
            height: plan.height,
            width: plan.width,
            classes: plan.classes,
            engine: Engine::Int8(plan),
        }
    }

    /// Whether this runs the int8 plan.
    pub fn is_quantized(&self) -> bool {
        matches!(self.engine, Engine::Int8(_))
    }

    /// Class probabilities `[N, classes]` for a preprocessed NHWC batch.
    pub fn predict(&self, x: &Tensor) -> Result<Array2<f32>> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.height || s[2] != self.width || s[3] != 3 {
            return Err(Error::Config(format!(
                "input has shape {s:?}, the model was built for [N, {}, {}, 3]",
                self.height, self.width
            )));
        }
        if s[0] == 0 {
            return Ok(Array2::zeros((0, self.classes)));
        }
        let logits = match &self.engine {
            Engine::Folded { plan, out } => plan
                .run(x)?
                .remove(out)
                .ok_or_else(|| Error::Config("the plan did not produce the logits".into()))?,
            Engine::Int8(plan) => plan.run(x)?,
        };
        let logits = logits
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Config(format!("expected [batch, classes]: {e}")))?;
        Ok(tensor_core::softmax::forward(logits.view()))
    }
}
