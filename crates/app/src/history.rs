//! Per-epoch history, written as CSV and JSON after every epoch.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub seconds: f64,
    pub lr: f32,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
}

pub fn write(dir: &Path, h: &[EpochRecord]) -> Result<()> {
    let mut csv = String::from("epoch,seconds,lr,loss,accuracy,val_loss,val_accuracy\n");
    for r in h {
        csv += &format!(
            "{},{:.3},{},{},{},{},{}\n",
            r.epoch, r.seconds, r.lr, r.loss, r.accuracy, r.val_loss, r.val_accuracy
        );
    }
    let json = serde_json::to_string_pretty(h)?;
    for (name, text) in [("history.csv", csv), ("history.json", json)] {
        let path = dir.join(name);
        nn::checkpoint::write_bytes_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}
