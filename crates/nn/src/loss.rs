//! Softmax + categorical cross-entropy, fused and numerically stable, mean over the batch.

use crate::{Error, Result};
use ndarray::{Array2, ArrayView2, Axis};

/// What one loss evaluation gives: the mean loss, the probabilities and `dL/dlogits`.
pub struct LossOutput {
    pub loss: f32,
    pub probs: Array2<f32>,
    pub dlogits: Array2<f32>,
}

/// `loss = mean_i(-log softmax(z_i)[y_i])`, `dL/dz = (softmax(z) - onehot(y)) / N`.
pub fn softmax_cross_entropy(logits: ArrayView2<f32>, labels: &[usize]) -> Result<LossOutput> {
    weighted_softmax_cross_entropy(logits, labels, None)
}

/// [`softmax_cross_entropy`] with a weight per sample, as Keras's `sample_weight` / `class_weight`
/// with the default `sum_over_batch_size` reduction: `loss = sum_i(w_i * l_i) / N`,
/// `dL/dz_i = w_i * (softmax(z_i) - onehot(y_i)) / N`. `None` is every weight 1 (bit for bit).
pub fn weighted_softmax_cross_entropy(
    logits: ArrayView2<f32>,
    labels: &[usize],
    weights: Option<&[f32]>,
) -> Result<LossOutput> {
    let (n, c) = logits.dim();
    if let Some(w) = weights {
        if w.len() != n {
            return Err(Error::Invalid(format!(
                "{} sample weights for a batch of {n}",
                w.len()
            )));
        }
    }
    if labels.len() != n {
        return Err(Error::Invalid(format!(
            "{} labels for a batch of {n}",
            labels.len()
        )));
    }
    if let Some(bad) = labels.iter().find(|&&l| l >= c) {
        return Err(Error::Invalid(format!(
            "label {bad} out of range for {c} classes"
        )));
    }
    let probs = tensor_core::softmax::forward(logits);
    let mut loss = 0.0f64;
    for (i, row) in logits.axis_iter(Axis(0)).enumerate() {
        let m = row.fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let lse = m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        let w = weights.map_or(1.0, |w| w[i] as f64);
        loss += w * (lse - row[labels[i]] as f64);
    }
    let mut dlogits = probs.clone();
    for (i, &l) in labels.iter().enumerate() {
        dlogits[[i, l]] -= 1.0;
    }
    if let Some(w) = weights {
        for (mut row, &wi) in dlogits.axis_iter_mut(Axis(0)).zip(w) {
            row *= wi;
        }
    }
    dlogits /= n as f32;
    Ok(LossOutput {
        loss: (loss / n as f64) as f32,
        probs,
        dlogits,
    })
}

/// Fraction of rows whose arg-max equals the label.
pub fn accuracy(probs: ArrayView2<f32>, labels: &[usize]) -> f32 {
    let correct = probs
        .axis_iter(Axis(0))
        .zip(labels)
        .filter(|(row, &l)| argmax(row.as_slice().unwrap_or(&[])) == Some(l))
        .count();
    correct as f32 / labels.len().max(1) as f32
}

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f32]) -> Option<usize> {
    v.iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, &x)| match best {
            Some((_, b)) if b >= x => best,
            _ => Some((i, x)),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matches_hand_computation_and_finite_differences() {
        let z = array![[1.0f32, 2.0, 0.5], [0.0, 0.0, 3.0]];
        let out = softmax_cross_entropy(z.view(), &[1, 0]).unwrap();
        let lse0 = (1f64.exp() + 2f64.exp() + 0.5f64.exp()).ln();
        let lse1 = (2.0 + 3f64.exp()).ln();
        let want = ((lse0 - 2.0) + (lse1 - 0.0)) / 2.0;
        assert!((out.loss as f64 - want).abs() < 1e-6);
        for (i, j) in [(0, 0), (0, 1), (1, 2)] {
            let e = 1e-2;
            let (mut a, mut b) = (z.clone(), z.clone());
            a[[i, j]] += e;
            b[[i, j]] -= e;
            let fd = (softmax_cross_entropy(a.view(), &[1, 0]).unwrap().loss
                - softmax_cross_entropy(b.view(), &[1, 0]).unwrap().loss)
                / (2.0 * e);
            assert!((fd - out.dlogits[[i, j]]).abs() < 1e-3);
        }
        assert_eq!(accuracy(out.probs.view(), &[1, 2]), 1.0);
    }

    /// Keras's `sample_weight`: each sample's loss scaled, the mean over the batch size; the
    /// gradient agrees with finite differences; weights of one change nothing, bit for bit.
    #[test]
    fn weighted_loss_matches_hand_computation_and_finite_differences() {
        let z = array![[1.0f32, 2.0, 0.5], [0.0, 0.0, 3.0], [0.3, -1.0, 0.2]];
        let labels = [1, 0, 2];
        let w = [2.0f32, 0.5, 1.0];
        let plain = softmax_cross_entropy(z.view(), &labels).unwrap();
        let each: Vec<f64> = (0..3)
            .map(|i| {
                softmax_cross_entropy(z.slice(ndarray::s![i..i + 1, ..]), &labels[i..i + 1])
                    .unwrap()
                    .loss as f64
            })
            .collect();
        let out = weighted_softmax_cross_entropy(z.view(), &labels, Some(&w)).unwrap();
        let want = (2.0 * each[0] + 0.5 * each[1] + each[2]) / 3.0;
        assert!(
            (out.loss as f64 - want).abs() < 1e-6,
            "{} vs {want}",
            out.loss
        );
        for i in 0..3 {
            for j in 0..3 {
                let e = 1e-2;
                let (mut a, mut b) = (z.clone(), z.clone());
                a[[i, j]] += e;
                b[[i, j]] -= e;
                let f = |m: &ndarray::Array2<f32>| {
                    weighted_softmax_cross_entropy(m.view(), &labels, Some(&w))
                        .unwrap()
                        .loss
                };
                let fd = (f(&a) - f(&b)) / (2.0 * e);
                assert!((fd - out.dlogits[[i, j]]).abs() < 1e-3, "{i},{j}");
            }
        }
        let ones = weighted_softmax_cross_entropy(z.view(), &labels, Some(&[1.0; 3])).unwrap();
        assert_eq!(ones.loss.to_bits(), plain.loss.to_bits());
        assert_eq!(ones.dlogits, plain.dlogits);
        assert!(weighted_softmax_cross_entropy(z.view(), &labels, Some(&[1.0])).is_err());
    }

    #[test]
    fn stable_for_huge_logits() {
        let z = array![[1e4f32, 0.0]];
        let out = softmax_cross_entropy(z.view(), &[1]).unwrap();
        assert!((out.loss - 1e4).abs() < 1.0 && out.loss.is_finite());
    }

    #[test]
    fn bad_labels_are_errors() {
        let z = array![[1.0f32, 0.0]];
        assert!(softmax_cross_entropy(z.view(), &[2]).is_err());
        assert!(softmax_cross_entropy(z.view(), &[0, 1]).is_err());
    }
}
