//! Keras's `ModelCheckpoint`, twice: `best.npz` when the validation loss is the lowest so far
//! (`monitor="val_loss", save_best_only=True`), `last.npz` after every epoch.

use super::{improved, Callback, Control, Ctx};
use crate::history::EpochRecord;
use anyhow::{Context, Result};
use mobilenet::Classifier;
use nn::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The model and the optimizer's state, atomically.
pub fn save(path: &Path, clf: &mut Classifier, opt: &dyn Optimizer) -> Result<()> {
    let mut t = nn::checkpoint::graph_tensors(&mut clf.net.graph);
    t.extend(opt.state());
    nn::checkpoint::save_npz(path, &t)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

#[derive(Default, Serialize, Deserialize)]
pub struct ModelCheckpoint {
    best: Option<f64>,
}

impl ModelCheckpoint {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Callback for ModelCheckpoint {
    fn name(&self) -> &'static str {
        "model_checkpoint"
    }

    fn on_train_begin(&mut self, ctx: &mut Ctx) -> Result<()> {
        // A run from before callbacks kept their own state: its lowest loss is in trainer.json.
        if self.best.is_none() {
            self.best = ctx.state.best_val_loss;
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut Ctx, r: &EpochRecord) -> Result<Control> {
        if improved(r.val_loss, self.best, 0.0) {
            self.best = Some(r.val_loss);
            save(&ctx.dir.join("best.npz"), ctx.clf, &*ctx.opt)?;
        }
        save(&ctx.dir.join("last.npz"), ctx.clf, &*ctx.opt)?;
        Ok(Control::Continue)
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        *self = serde_json::from_value(state.clone())?;
        Ok(())
    }
}
