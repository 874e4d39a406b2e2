//! Grad-CAM (Selvaraju et al.), computed as keras.io's "Grad-CAM class activation visualization"
//! example does: the gradient of a class's score *before* softmax with respect to the last
//! convolutional feature map (`out_relu`), channel weights = that gradient's mean over the map,
//! heatmap = ReLU(feature map . weights), divided by its maximum (an all-zero map stays zero).
//!
//! The base runs through the folded inference plan up to `out_relu`; only the head above it (global
//! pooling, dropout, dense layers: a chain) runs through its layers, forward and then backward from
//! the logits, so the backward costs a few small matrix products.

use crate::folded::FoldedPlan;
use crate::{Classifier, Error, MobileNetV2, Result};
use ndarray::{s, Array2, Array4, ArrayView3, Axis, Ix2, Ix4};
use nn::layer::Ctx;
use nn::{Graph, NodeId, Tensor};
use std::ops::Range;

/// Which class a heatmap explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The class ranked `k` by probability (0: the predicted class).
    Rank(usize),
    /// A class by index.
    Class(usize),
}

/// One heatmap: the class it explains, that class's probability, and the map `[h, w]` in [0, 1].
#[derive(Clone, Debug)]
pub struct ClassMap {
    pub class: usize,
    pub probability: f32,
    pub heatmap: Array2<f32>,
}

/// What Grad-CAM says about one image: its probabilities and one map per requested target.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub probabilities: Vec<f32>,
    pub maps: Vec<ClassMap>,
}

/// A network (base + ImageNet top or trained head) ready to explain its decisions.
pub struct GradCam {
    net: MobileNetV2,
    base: FoldedPlan,
    head: Range<NodeId>,
    /// Classes the logits score.
    pub classes: usize,
}

impl GradCam {
    /// A trained classifier (base + head).
    pub fn from_classifier(clf: Classifier) -> Result<Self> {
        Self::new(clf.net)
    }

    /// ImageNet weights with the top (`predictions`); the class score is the top's logit.
    pub fn from_model(net: MobileNetV2) -> Result<Self> {
        if net.classes.is_none() {
            return Err(Error::Config(
                "these weights have no top (predictions): there is no class score to explain"
                    .into(),
            ));
        }
        Self::new(net)
    }

    fn new(mut net: MobileNetV2) -> Result<Self> {
        let out_relu = net.out_relu;
        let head = out_relu + 1..net.graph.len();
        if head.is_empty() {
            return Err(Error::Config(
                "nothing above out_relu: no class score to explain".into(),
            ));
        }
        for i in head.clone() {
            if net.graph.inputs(i) != [i - 1] {
                return Err(Error::Config(format!(
                    "{}: the layers above out_relu must form a chain",
                    net.graph.layer(i).name()
                )));
            }
        }
        let base = FoldedPlan::compile(&net.graph, out_relu + 1, &[out_relu])?;
        let mut classes = 0;
        net.graph.layer_mut(head.end - 1).visit_params(&mut |p| {
            if p.name.ends_with("/bias") {
                classes = p.value.len();
            }
        });
        Ok(GradCam {
            net,
            base,
            head,
            classes,
        })
    }

    /// Input height and width.
    pub fn input_size(&self) -> (usize, usize) {
        (self.net.config.height, self.net.config.width)
    }

    /// Explains each image of a preprocessed NHWC batch for every target.
    pub fn explain(&mut self, x: &Tensor, targets: &[Target]) -> Result<Vec<Explanation>> {
        self.net.check_input(x)?;
        let n = x.shape()[0];
        let out_relu = self.head.start - 1;
        let features = self
            .base
            .run(x)?
            .remove(&out_relu)
            .ok_or_else(|| Error::Config("the plan did not produce out_relu".into()))?;
        let logits = self.head_forward(&features)?;
        let probs = tensor_core::softmax::forward(logits.view());
        let features = features
            .into_dimensionality::<Ix4>()
            .map_err(|e| Error::Config(format!("out_relu is not NHWC: {e}")))?;
        let mut out: Vec<Explanation> = (0..n)
            .map(|i| Explanation {
                probabilities: probs.row(i).to_vec(),
                maps: Vec::with_capacity(targets.len()),
            })
            .collect();
        for &t in targets {
            let chosen: Vec<usize> = (0..n)
                .map(|i| class_of(&out[i].probabilities, t))
                .collect::<Result<_>>()?;
            let mut seed = Array2::<f32>::zeros((n, self.classes));
            for (i, &c) in chosen.iter().enumerate() {
                seed[[i, c]] = 1.0;
            }
            let grads = self.head_backward(seed)?;
            for (i, e) in out.iter_mut().enumerate() {
                let heatmap = heatmap(
                    features.index_axis(Axis(0), i),
                    grads.index_axis(Axis(0), i),
                );
                e.maps.push(ClassMap {
                    class: chosen[i],
                    probability: e.probabilities[chosen[i]],
                    heatmap,
                });
            }
        }
        Ok(out)
    }

    /// Inference forward through the head, each layer keeping what its backward needs.
    fn head_forward(&mut self, features: &Tensor) -> Result<Array2<f32>> {
        let g: &mut Graph = &mut self.net.graph;
        let ctx = Ctx {
            record: true,
            ..Ctx::INFER
        };
        let mut y = features.clone();
        for i in self.head.clone() {
            y = g.layer_mut(i).forward(&[&y], ctx)?;
        }
        y.into_dimensionality::<Ix2>()
            .map(|a| a.into_owned())
            .map_err(|e| Error::Config(format!("the head's output is not [batch, classes]: {e}")))
    }

    /// d (seed . logits) / d out_relu, after [`head_forward`](Self::head_forward).
    fn head_backward(&mut self, seed: Array2<f32>) -> Result<Array4<f32>> {
        let g: &mut Graph = &mut self.net.graph;
        let mut dy: Tensor = seed.into_dyn().into_shared();
        for i in self.head.clone().rev() {
            let name = g.layer(i).name().to_string();
            dy = g
                .layer_mut(i)
                .backward(&dy, true)?
                .into_iter()
                .next()
                .flatten()
                .ok_or_else(|| Error::Config(format!("{name}: no input gradient")))?;
        }
        dy.into_dimensionality::<Ix4>()
            .map(|a| a.into_owned())
            .map_err(|e| Error::Config(format!("the gradient at out_relu is not NHWC: {e}")))
    }
}

fn class_of(probabilities: &[f32], t: Target) -> Result<usize> {
    let n = probabilities.len();
    match t {
        Target::Class(c) if c < n => Ok(c),
        Target::Class(c) => Err(Error::Config(format!(
            "class {c} does not exist: the model scores {n} classes (0..{})",
            n - 1
        ))),
        Target::Rank(k) if k < n => {
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
            Ok(order[k])
        }
        Target::Rank(k) => Err(Error::Config(format!(
            "rank {} asked for, but the model scores only {n} classes",
            k + 1
        ))),
    }
}

/// The Grad-CAM map of one image from its feature map `[h, w, c]` and the gradient of the class
/// score with respect to it: channel weights = mean gradient over the map, map = ReLU(features .
/// weights), divided by its maximum when that is positive.
pub fn heatmap(features: ArrayView3<f32>, grads: ArrayView3<f32>) -> Array2<f32> {
    let (h, w, c) = features.dim();
    let cells = (h * w).max(1) as f32;
    let weights: Vec<f32> = (0..c)
        .map(|k| grads.slice(s![.., .., k]).sum() / cells)
        .collect();
    let mut map = Array2::from_shape_fn((h, w), |(i, j)| {
        let v: f32 = (0..c).map(|k| features[[i, j, k]] * weights[k]).sum();
        v.max(0.0)
    });
    let max = map.iter().copied().fold(0.0f32, f32::max);
    if max > 0.0 {
        map.mapv_inplace(|v| v / max);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn heatmap_weights_channels_by_their_mean_gradient() {
        // Two channels over a 2x2 map; channel 0's mean gradient is 1, channel 1's is -1.
        let f = Array3::from_shape_vec((2, 2, 2), vec![1., 0., 2., 1., 0., 3., 4., 0.]).unwrap();
        let g =
            Array3::from_shape_vec((2, 2, 2), vec![2., -1., 0., -1., 1., -1., 1., -1.]).unwrap();
        let m = heatmap(f.view(), g.view());
        // Raw: [1-0, 2-1, 0-3, 4-0] = [1, 1, -3, 4] -> ReLU -> / 4.
        assert_eq!(m.into_raw_vec_and_offset().0, vec![0.25, 0.25, 0.0, 1.0]);
    }

    #[test]
    fn an_all_negative_map_stays_zero() {
        let f = Array3::from_elem((3, 3, 4), 1.0f32);
        let g = Array3::from_elem((3, 3, 4), -0.5f32);
        let m = heatmap(f.view(), g.view());
        assert!(m.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn ranks_and_classes_pick_the_right_index() {
        let p = [0.1, 0.6, 0.3];
        assert_eq!(class_of(&p, Target::Rank(0)).unwrap(), 1);
        assert_eq!(class_of(&p, Target::Rank(1)).unwrap(), 2);
        assert_eq!(class_of(&p, Target::Class(0)).unwrap(), 0);
        assert!(class_of(&p, Target::Class(3)).is_err());
        assert!(class_of(&p, Target::Rank(3)).is_err());
    }
}
