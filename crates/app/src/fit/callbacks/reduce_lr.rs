//! Keras's `ReduceLROnPlateau(monitor="val_loss", factor, patience, min_delta=1e-4, cooldown=0,
//! min_lr=0)`: multiply the learning rate by `factor` when the validation loss has not improved by
//! more than `min_delta` for `patience` epochs.

use super::{improved, Callback, Control, Ctx};
use crate::history::EpochRecord;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Keras's default `min_delta`.
const MIN_DELTA: f64 = 1e-4;

#[derive(Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    factor: f32,
    patience: usize,
    best: Option<f64>,
    wait: usize,
}

impl ReduceLrOnPlateau {
    pub fn new(factor: f32, patience: usize) -> Self {
        ReduceLrOnPlateau {
            factor,
            patience,
            best: None,
            wait: 0,
        }
    }

    /// The new learning rate after an epoch with `val_loss`, if it changes.
    fn decide(&mut self, val_loss: f64, lr: f32) -> Option<f32> {
        if improved(val_loss, self.best, MIN_DELTA) {
            self.best = Some(val_loss);
            self.wait = 0;
            return None;
        }
        self.wait += 1;
        if self.wait < self.patience {
            return None;
        }
        self.wait = 0;
        let new = lr * self.factor;
        (new < lr).then_some(new)
    }
}

impl Callback for ReduceLrOnPlateau {
    fn name(&self) -> &'static str {
        "reduce_lr_on_plateau"
    }

    fn on_epoch_end(&mut self, ctx: &mut Ctx, r: &EpochRecord) -> Result<Control> {
        if let Some(lr) = self.decide(r.val_loss, ctx.opt.lr()) {
            ctx.opt.set_lr(lr);
            crate::outln!(
                "Epoch {}: ReduceLROnPlateau reducing learning rate to {lr:e}.",
                r.epoch
            );
        }
        Ok(Control::Continue)
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

    #[test]
    fn reduces_after_patience_flat_epochs_then_waits_again() {
        let mut r = ReduceLrOnPlateau::new(0.5, 2);
        let mut lr = 1.0;
        let mut seen = vec![];
        for l in [1.0, 0.99995, 1.2, 0.5, 0.6, 0.7, 0.8, 0.9] {
            if let Some(new) = r.decide(l, lr) {
                lr = new;
            }
            seen.push(lr);
        }
        // 0.99995 is not better by more than 1e-4: flat. Reduced after epochs 2-3, then 5-6, 7-8.
        assert_eq!(seen, [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]);
    }
}
