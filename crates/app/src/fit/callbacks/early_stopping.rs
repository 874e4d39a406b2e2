//! Keras's `EarlyStopping(monitor="val_loss", patience=N, min_delta=0, restore_best_weights=...)`:
//! stop when the validation loss has not improved for `patience` epochs; with
//! `restore_best_weights`, the model ends with the weights of its best epoch (read back from
//! `best.npz`, which [`super::ModelCheckpoint`] writes on the same monitor) and `last.npz` holds them.

use super::{improved, Callback, Control, Ctx, Ending};
use crate::history::EpochRecord;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct EarlyStopping {
    patience: usize,
    restore_best_weights: bool,
    best: Option<f64>,
    /// 1-based epoch of `best`.
    best_epoch: usize,
    wait: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize, restore_best_weights: bool) -> Self {
        EarlyStopping {
            patience,
            restore_best_weights,
            best: None,
            best_epoch: 0,
            wait: 0,
        }
    }

    /// Keras's rule: `wait` counts the epochs since the best; stop when it reaches `patience`.
    fn decide(&mut self, r: &EpochRecord) -> Control {
        self.wait += 1;
        if improved(r.val_loss, self.best, 0.0) {
            self.best = Some(r.val_loss);
            self.best_epoch = r.epoch;
            self.wait = 0;
            return Control::Continue;
        }
        if self.wait >= self.patience && r.epoch > 1 {
            return Control::Stop(format!(
                "early stopping after epoch {}: val_loss has not improved for {} epoch{} (best {:.4} at epoch {})",
                r.epoch,
                self.wait,
                if self.wait == 1 { "" } else { "s" },
                self.best.unwrap_or(f64::NAN),
                self.best_epoch
            ));
        }
        Control::Continue
    }
}

impl Callback for EarlyStopping {
    fn name(&self) -> &'static str {
        "early_stopping"
    }

    fn on_epoch_end(&mut self, _ctx: &mut Ctx, r: &EpochRecord) -> Result<Control> {
        Ok(self.decide(r))
    }

    fn on_train_end(&mut self, ctx: &mut Ctx, ending: &Ending) -> Result<()> {
        if !self.restore_best_weights || !matches!(ending, Ending::Stopped(_)) {
            return Ok(());
        }
        let best = ctx.dir.join("best.npz");
        let t = nn::checkpoint::load_npz(&best)
            .with_context(|| format!("reading {}", best.display()))?;
        nn::checkpoint::restore(&mut ctx.clf.net.graph, &t, &best, &crate::load::NON_MODEL)?;
        super::checkpoint::save(&ctx.dir.join("last.npz"), ctx.clf, &*ctx.opt)?;
        crate::outln!(
            "Restored the weights of epoch {} (the lowest val_loss, --restore-best-weights); last.npz holds them",
            self.best_epoch
        );
        Ok(())
    }

    fn state(&self) -> serde_json::Value {
        super::to_state(self)
    }

    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        super::from_state(self, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, val_loss: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            seconds: 0.0,
            lr: 0.1,
            loss: 0.0,
            accuracy: 0.0,
            val_loss,
            val_accuracy: 0.0,
        }
    }

    /// Keras: `wait` counts epochs since the best; stop when it reaches `patience`.
    #[test]
    fn stops_after_patience_epochs_without_improvement() {
        let mut es = EarlyStopping::new(2, false);
        let losses = [1.0, 0.8, 0.9, 0.85, 0.7];
        let mut stopped = None;
        for (i, &l) in losses.iter().enumerate() {
            let c = es.decide(&record(i + 1, l));
            if let Control::Stop(why) = c {
                stopped = Some((i + 1, why));
                break;
            }
        }
        let (epoch, why) = stopped.expect("stops");
        assert_eq!(epoch, 4);
        assert!(why.contains("best 0.8000 at epoch 2"), "{why}");
    }

    #[test]
    fn an_improvement_resets_the_wait() {
        let mut es = EarlyStopping::new(2, false);
        for (i, l) in [1.0, 1.1, 0.9, 1.0, 0.8].into_iter().enumerate() {
            assert_eq!(
                es.decide(&record(i + 1, l)),
                Control::Continue,
                "epoch {}",
                i + 1
            );
        }
    }
}
