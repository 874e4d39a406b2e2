//! The feature cache: with augmentation off, the frozen part of the network sees the same pixels
//! every epoch, so its outputs are computed once per image and the fit loop trains the rest.

use super::callbacks::progress_bar;
use anyhow::{Context, Result};
use data::Dataset;
use mobilenet::classifier::Frozen;
use mobilenet::Classifier;
use ndarray::Axis;
use nn::{NodeId, Tensor};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Frozen-part outputs of every image of a split, row `i` for image `i`.
pub struct FeatureCache {
    nodes: Vec<NodeId>,
    data: Vec<Tensor>,
}

/// Ctrl-C arrived before the first training step: nothing was trained, nothing needs saving.
#[derive(Debug, thiserror::Error)]
#[error("interrupted before training started")]
pub struct InterruptedBeforeTraining;

impl FeatureCache {
    pub fn build(
        clf: &mut Classifier,
        ds: &Dataset,
        what: &str,
        quiet: bool,
        interrupted: &AtomicBool,
    ) -> Result<Self> {
        let bar = progress_bar(ds.num_batches() as u64, quiet);
        bar.set_message(format!("caching {what} features"));
        let mut parts: HashMap<NodeId, Vec<Tensor>> = HashMap::new();
        let order: Vec<usize> = (0..ds.len()).collect();
        for chunk in order.chunks(ds.cfg.batch_size) {
            if interrupted.load(Ordering::SeqCst) {
                bar.abandon();
                return Err(InterruptedBeforeTraining.into());
            }
            let b = ds.batch(chunk, 0, false);
            for (k, v) in clf.frozen(&b.x.into_shared())? {
                parts.entry(k).or_default().push(v);
            }
            bar.inc(1);
        }
        bar.finish_and_clear();
        let mut nodes: Vec<NodeId> = parts.keys().copied().collect();
        nodes.sort();
        let data = nodes
            .iter()
            .map(|n| {
                let views: Vec<_> = parts[n].iter().map(|t| t.view()).collect();
                ndarray::concatenate(Axis(0), &views)
                    .map(|a| a.into_shared())
                    .context("stacking cached features")
            })
            .collect::<Result<_>>()?;
        Ok(FeatureCache { nodes, data })
    }

    pub fn get(&self, idx: &[usize]) -> Frozen {
        self.nodes
            .iter()
            .zip(&self.data)
            .map(|(n, t)| (*n, t.select(Axis(0), idx).into_shared()))
            .collect()
    }

    pub fn bytes(&self) -> usize {
        self.data.iter().map(|t| t.len() * 4).sum()
    }

    /// Loss and accuracy of the current model on `ds` from its cached features.
    pub fn score(&self, clf: &mut Classifier, ds: &Dataset) -> Result<(f64, f64)> {
        let mut loss = 0.0;
        let mut correct = 0usize;
        let order: Vec<usize> = (0..ds.len()).collect();
        for chunk in order.chunks(ds.cfg.batch_size) {
            let p = clf.predict_frozen(&self.get(chunk))?;
            for (row, &i) in p.rows().into_iter().zip(chunk) {
                let l = ds.labels[i];
                loss -= (row[l].clamp(1e-7, 1.0) as f64).ln();
                correct += (nn::loss::argmax(row.as_slice().unwrap_or(&[])) == Some(l)) as usize;
            }
        }
        Ok((loss / ds.len() as f64, correct as f64 / ds.len() as f64))
    }
}
