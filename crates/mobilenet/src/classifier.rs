//! The study's model: MobileNetV2 base + GlobalAveragePooling2D + [Dropout] + Dense(units, relu) +
//! Dense(classes, softmax), trained with the frozen part run once through the folded plan.

use crate::folded::FoldedPlan;
use crate::model::MobileNetV2;
use crate::{Error, Result};
use ndarray::{Array2, Ix2};
use nn::graph::INPUT;
use nn::layers::{Dense, Dropout, GlobalAveragePooling2D};
use nn::loss::weighted_softmax_cross_entropy;
use nn::optim::Optimizer;
use nn::{LayerSpec, Mode, NodeId, Tensor};
use std::collections::HashMap;
use tensor_core::Activation;

/// The classification head.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadConfig {
    /// Units of the hidden Dense (relu) layer; 0 for none.
    pub dense: usize,
    /// Dropout rate after pooling; 0 for none.
    pub dropout: f32,
    pub classes: usize,
    /// Seeds the Glorot initialisation and the dropout masks.
    pub seed: u64,
}

/// What one training step reports.
pub struct StepOutput {
    pub loss: f32,
    pub probs: Array2<f32>,
    pub logits: Array2<f32>,
    /// Pooled base features of the training forward.
    pub features: Tensor,
    /// Hidden Dense output (after relu), when there is one.
    pub hidden: Option<Tensor>,
}

/// Outputs of the frozen part: what the trainable part reads. Cacheable per image.
pub type Frozen = HashMap<NodeId, Tensor>;

pub struct Classifier {
    pub net: MobileNetV2,
    pub head: HeadConfig,
    gap: NodeId,
    hidden: Option<NodeId>,
    /// Compiled frozen prefix: `(plan, cut, boundary)`.
    plan: Option<(FoldedPlan, NodeId, Vec<NodeId>)>,
    /// A loss weight for each sample of the next training step (Keras's `sample_weight`, which
    /// `class_weight` becomes); `None`: every sample counts once.
    pub sample_weights: Option<Vec<f32>>,
}

fn to2(t: Tensor) -> Result<Array2<f32>> {
    t.into_dimensionality::<Ix2>()
        .map(|a| a.into_owned())
        .map_err(|e| Error::Config(format!("expected [batch, classes]: {e}")))
}

impl Classifier {
    /// Appends the head to a base without top; the base starts frozen, the head trainable.
    pub fn new(mut net: MobileNetV2, head: HeadConfig) -> Result<Self> {
        if net.classes.is_some() {
            return Err(Error::Config(
                "the classifier needs a base without the ImageNet top".into(),
            ));
        }
        if head.classes < 2 {
            return Err(Error::Config(format!(
                "a classifier needs at least 2 classes, got {}",
                head.classes
            )));
        }
        let feats = crate::arch::Alpha(net.config.alpha).last_filters();
        let g = &mut net.graph;
        let gap = g.add(
            GlobalAveragePooling2D::new("global_average_pooling2d"),
            &[net.out_relu],
        );
        if head.dropout > 0.0 {
            g.push(Dropout::new("dropout", head.dropout, head.seed ^ 0xD50)?);
        }
        let mut width = feats;
        let mut hidden = None;
        if head.dense > 0 {
            hidden = Some(g.push(Dense::new(
                "dense",
                width,
                head.dense,
                Activation::Relu,
                head.seed,
            )));
            width = head.dense;
        }
        let name = if head.dense > 0 { "dense_1" } else { "dense" };
        g.push(Dense::new(
            name,
            width,
            head.classes,
            Activation::Linear,
            head.seed.wrapping_add(1),
        ));
        Ok(Classifier {
            net,
            head,
            gap,
            hidden,
            plan: None,
            sample_weights: None,
        })
    }

    /// Keras: `base.trainable = False; for l in base.layers[-n:]: l.trainable = True`.
    pub fn unfreeze_last(&mut self, n: usize) {
        self.net.unfreeze_last(n);
        self.plan = None;
    }

    /// The first node that runs in the graph (trainable or training-dependent); below it, the folded plan.
    pub fn cut(&mut self) -> NodeId {
        let g = &self.net.graph;
        let dropout =
            (0..g.len()).find(|&i| matches!(g.layer(i).describe(), LayerSpec::Dropout { .. }));
        let first = self
            .net
            .graph
            .first_trainable()
            .unwrap_or(self.net.graph.len() - 1);
        dropout.map_or(first, |d| d.min(first))
    }

    fn ensure_plan(&mut self) -> Result<()> {
        if self.plan.is_none() {
            let cut = self.cut();
            let g = &self.net.graph;
            let mut boundary: Vec<NodeId> = (cut..g.len())
                .flat_map(|i| g.inputs(i).to_vec())
                .filter(|&j| j == INPUT || j < cut)
                .collect();
            boundary.sort();
            boundary.dedup();
            let plan = FoldedPlan::compile(&self.net.graph, cut, &boundary)?;
            self.plan = Some((plan, cut, boundary));
        }
        Ok(())
    }

    /// Runs the frozen part (folded, inference mode) on a preprocessed batch.
    pub fn frozen(&mut self, x: &Tensor) -> Result<Frozen> {
        self.net.check_input(x)?;
        self.ensure_plan()?;
        let (plan, cut, boundary) = self.plan.as_ref().expect("compiled above");
        if *cut == 0 {
            return Ok(HashMap::from([(INPUT, x.clone())]));
        }
        let mut out = plan.run(x)?;
        out.retain(|k, _| boundary.contains(k));
        Ok(out)
    }

    fn run_rest(&mut self, frozen: &Frozen, mode: Mode) -> Result<nn::graph::Outputs> {
        self.ensure_plan()?;
        let cut = self.plan.as_ref().expect("compiled").1;
        let feeds: Vec<(NodeId, &Tensor)> = frozen.iter().map(|(k, v)| (*k, v)).collect();
        let mut capture = vec![self.gap];
        capture.extend(self.hidden);
        Ok(self
            .net
            .graph
            .run(&feeds, cut..self.net.graph.len(), mode, &capture)?)
    }

    /// Inference probabilities from frozen-part outputs.
    pub fn predict_frozen(&mut self, frozen: &Frozen) -> Result<Array2<f32>> {
        let out = self.run_rest(frozen, Mode::Infer)?;
        Ok(tensor_core::softmax::forward(to2(out.last)?.view()))
    }

    /// Inference probabilities for a preprocessed batch.
    pub fn predict(&mut self, x: &Tensor) -> Result<Array2<f32>> {
        let f = self.frozen(x)?;
        self.predict_frozen(&f)
    }

    /// One optimisation step on frozen-part outputs: training forward, loss, backward down to the
    /// lowest trainable layer, optimizer update. A non-finite loss is an error and changes nothing.
    pub fn train_step_frozen(
        &mut self,
        frozen: &Frozen,
        labels: &[usize],
        opt: &mut dyn Optimizer,
    ) -> Result<StepOutput> {
        let out = self.run_rest(frozen, Mode::Train)?;
        let logits = to2(out.last)?;
        let l =
            weighted_softmax_cross_entropy(logits.view(), labels, self.sample_weights.as_deref())?;
        if !l.loss.is_finite() {
            return Err(Error::NonFinite {
                loss: l.loss,
                step: opt.iterations() + 1,
            });
        }
        let cut = self.plan.as_ref().expect("compiled").1;
        let g = &mut self.net.graph;
        g.zero_grad();
        g.backward(l.dlogits.into_dyn().into_shared(), cut..g.len())?;
        opt.begin_step();
        g.visit_params(&mut |p| {
            if p.trainable {
                opt.update(p)
            }
        });
        let mut captured = out.captured;
        Ok(StepOutput {
            loss: l.loss,
            probs: l.probs,
            logits,
            features: captured.remove(&self.gap).unwrap_or_default(),
            hidden: self.hidden.and_then(|h| captured.remove(&h)),
        })
    }

    /// One optimisation step on a preprocessed batch.
    pub fn train_step(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        opt: &mut dyn Optimizer,
    ) -> Result<StepOutput> {
        let f = self.frozen(x)?;
        self.train_step_frozen(&f, labels, opt)
    }
}
