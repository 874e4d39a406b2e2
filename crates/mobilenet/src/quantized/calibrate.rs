//! Calibration: the folded f32 steps run on real photos while the range of every step's output
//! is recorded.

use super::{lower, Calibration, QuantizedPlan};
use crate::folded::{compile_steps, exec, last_uses, Options, Step};
use crate::{Classifier, Error, MobileNetV2, Result};
use nn::graph::INPUT;
use nn::{Graph, NodeId, Tensor};
use std::collections::HashMap;

/// Images per calibration pass (bounds the memory of the unfused f32 steps).
const PASS: usize = 8;

/// Collects activation ranges over calibration batches, then quantizes.
pub struct Calibrator {
    steps: Vec<Step>,
    out: NodeId,
    height: usize,
    width: usize,
    classes: usize,
    /// `(min, max)` of each step's output over every image seen.
    ranges: HashMap<NodeId, (f32, f32)>,
    images: usize,
}

impl Calibrator {
    fn new(g: &mut Graph, height: usize, width: usize) -> Result<Self> {
        let (out, classes) = crate::predictor::logits_node(g)?;
        Ok(Calibrator {
            steps: compile_steps(g, g.len(), &[out], Options::default())?,
            out,
            height,
            width,
            classes,
            ranges: HashMap::new(),
            images: 0,
        })
    }

    /// The ImageNet model with its top.
    pub fn for_model(net: &mut MobileNetV2) -> Result<Self> {
        if net.classes.is_none() {
            return Err(Error::Config(
                "these weights have no top (predictions): nothing to classify with".into(),
            ));
        }
        let (h, w) = (net.config.height, net.config.width);
        Self::new(&mut net.graph, h, w)
    }

    /// A trained classifier (base + head).
    pub fn for_classifier(clf: &mut Classifier) -> Result<Self> {
        let (h, w) = (clf.net.config.height, clf.net.config.width);
        Self::new(&mut clf.net.graph, h, w)
    }

    /// Images seen so far.
    pub fn images(&self) -> usize {
        self.images
    }

    /// Runs a preprocessed NHWC batch through the f32 steps, widening each output's range.
    pub fn observe(&mut self, x: &Tensor) -> Result<()> {
        let s = x.shape();
        if s.len() != 4 || s[1] != self.height || s[2] != self.width || s[3] != 3 {
            return Err(Error::Config(format!(
                "calibration batch has shape {s:?}, the model was built for [N, {}, {}, 3]",
                self.height, self.width
            )));
        }
        for start in (0..s[0]).step_by(PASS) {
            let end = (start + PASS).min(s[0]);
            self.pass(
                &x.slice_axis(ndarray::Axis(0), (start..end).into())
                    .to_shared(),
            )?;
            self.images += end - start;
        }
        Ok(())
    }

    fn pass(&mut self, x: &Tensor) -> Result<()> {
        let last_use = last_uses(self.steps.iter().map(|s| s.inputs.as_slice()).enumerate());
        let mut live: HashMap<NodeId, Tensor> = HashMap::new();
        widen(&mut self.ranges, INPUT, x, "the input")?;
        live.insert(INPUT, x.clone());
        for (s, step) in self.steps.iter().enumerate() {
            let ins: Vec<&Tensor> = step
                .inputs
                .iter()
                .map(|j| {
                    live.get(j)
                        .ok_or_else(|| Error::Config(format!("calibration: node {j} not computed")))
                })
                .collect::<Result<_>>()?;
            let y = exec(&step.op, &ins)?;
            let (lo, hi) = y
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            if !lo.is_finite() || !hi.is_finite() {
                return Err(Error::Config(format!(
                    "calibration: {} produced non-finite values",
                    step.name
                )));
            }
            let r = self.ranges.entry(step.out).or_insert((lo, hi));
            *r = (r.0.min(lo), r.1.max(hi));
            for &j in &step.inputs {
                if last_use.get(&j) == Some(&s) {
                    live.remove(&j);
                }
            }
            live.insert(step.out, y);
        }
        Ok(())
    }

    /// The quantization pass over the calibrated steps.
    pub fn finish(self) -> Result<QuantizedPlan> {
        if self.images == 0 {
            return Err(Error::Config(
                "quantization needs at least one calibration image".into(),
            ));
        }
        let calibration = Calibration {
            method: "min-max".into(),
            images: self.images,
        };
        Ok(QuantizedPlan {
            steps: lower::lower(self.steps, &self.ranges)?,
            out: self.out,
            height: self.height,
            width: self.width,
            classes: self.classes,
            calibration,
        })
    }
}

/// Widens the recorded range of `node` to hold `t`.
fn widen(
    ranges: &mut HashMap<NodeId, (f32, f32)>,
    node: NodeId,
    t: &Tensor,
    name: &str,
) -> Result<()> {
    let (lo, hi) = t
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() || !hi.is_finite() {
        return Err(Error::Config(format!(
            "calibration: {name} holds non-finite values"
        )));
    }
    let r = ranges.entry(node).or_insert((lo, hi));
    *r = (r.0.min(lo), r.1.max(hi));
    Ok(())
}
