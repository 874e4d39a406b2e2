//! Keras's `ModelCheckpoint`, twice: `best.npz` when the validation loss is the lowest so far
//! (`monitor="val_loss", save_best_only=True`), `last.npz` after every epoch.

use super::{improved, Callback, Control, Ctx};
use crate::history::EpochRecord;
use anyhow::{Context, Result};
use mobilenet::Classifier;
use nn::optim::Optimizer;
use std::path::Path;

/// The model and the optimizer's state, atomically.
pub fn save(path: &Path, clf: &mut Classifier, opt: &dyn Optimizer) -> Result<()> {
    let mut t = nn::checkpoint::graph_tensors(&mut clf.net.graph);
    t.extend(opt.state());
    nn::checkpoint::save_npz(path, &t)
        .with_context(|| format!("writing checkpoint {}", path.display()))
}

/// Stateless: the lowest validation loss so far is read from the history, so a resumed run
/// compares against the same value.
#[derive(Default)]
pub struct ModelCheckpoint;

impl Callback for ModelCheckpoint {
    fn name(&self) -> &'static str {
        "model_checkpoint"
    }

    fn on_epoch_end(&mut self, ctx: &mut Ctx, r: &EpochRecord) -> Result<Control> {
        // The history ends with this epoch's record: the best so far is among the ones before it.
        let before = &ctx.state.history[..ctx.state.history.len().saturating_sub(1)];
        let best = before.iter().map(|h| h.val_loss).reduce(f64::min);
        if improved(r.val_loss, best, 0.0) {
            save(&ctx.dir.join("best.npz"), ctx.clf, &*ctx.opt)?;
        }
        save(&ctx.dir.join("last.npz"), ctx.clf, &*ctx.opt)?;
        Ok(Control::Continue)
    }
}
