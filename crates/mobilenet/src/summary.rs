//! Keras's `model.summary()`: each layer's name, type, output shape and parameter counts, the
//! output shapes from one forward pass of a single blank image.

use crate::Result;
use nn::graph::INPUT;
use nn::{Graph, Mode, Tensor};

/// One row of the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSummary {
    pub name: String,
    /// The Keras class: `Conv2D`, `DepthwiseConv2D`, `BatchNormalization`...
    pub kind: &'static str,
    /// Without the batch dimension.
    pub output_shape: Vec<usize>,
    /// Every variable, moving statistics included (Keras's "Param #").
    pub params: usize,
    pub trainable_params: usize,
}

/// The rows of a network, for an input of `height x width`.
pub fn summarize(graph: &mut Graph, height: usize, width: usize) -> Result<Vec<LayerSummary>> {
    let x = Tensor::zeros(ndarray::IxDyn(&[1, height, width, 3]));
    let all: Vec<usize> = (0..graph.len()).collect();
    let out = graph.run(&[(INPUT, &x)], 0..graph.len(), Mode::Infer, &all)?;
    let mut rows = Vec::with_capacity(graph.len());
    for i in 0..graph.len() {
        let (mut params, mut trainable) = (0, 0);
        graph.layer_mut(i).visit_params(&mut |p| {
            params += p.value.len();
            if p.trainable {
                trainable += p.value.len();
            }
        });
        let shape = match out.captured.get(&i) {
            Some(t) => t.shape()[1..].to_vec(),
            None if i + 1 == graph.len() => out.last.shape()[1..].to_vec(),
            None => Vec::new(),
        };
        rows.push(LayerSummary {
            name: graph.layer(i).name().to_owned(),
            kind: graph.layer(i).describe().keras_class(),
            output_shape: shape,
            params,
            trainable_params: trainable,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MobileNetV2;

    /// Keras's `MobileNetV2()` summary: 3,538,984 parameters, 3,504,872 of them trainable (the
    /// 34,112 moving statistics are not).
    #[test]
    fn shapes_and_counts_match_keras() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/weights/mobilenet_v2_1.0_224");
        let mut net = MobileNetV2::from_path(&dir, Some(true)).unwrap();
        let all = net.graph.len();
        net.graph.set_trainable(0..all, true);
        let rows = summarize(&mut net.graph, 224, 224).unwrap();
        assert_eq!(rows.len(), all);
        assert_eq!((rows[0].name.as_str(), rows[0].kind), ("Conv1", "Conv2D"));
        assert_eq!(rows[0].output_shape, [112, 112, 32]);
        assert_eq!(rows[0].params, 3 * 3 * 3 * 32, "no bias");
        assert_eq!(rows[1].kind, "BatchNormalization");
        assert_eq!(
            rows[1].params,
            4 * 32,
            "gamma, beta and both moving statistics"
        );
        assert_eq!(rows[1].trainable_params, 2 * 32);
        let relu = rows.iter().find(|r| r.name == "out_relu").unwrap();
        assert_eq!(relu.output_shape, [7, 7, 1280]);
        let last = rows.last().unwrap();
        assert_eq!((last.name.as_str(), last.kind), ("predictions", "Dense"));
        assert_eq!(last.output_shape, [1000]);
        assert_eq!(rows.iter().map(|r| r.params).sum::<usize>(), 3_538_984);
        assert_eq!(
            rows.iter().map(|r| r.trainable_params).sum::<usize>(),
            3_504_872
        );
    }
}
