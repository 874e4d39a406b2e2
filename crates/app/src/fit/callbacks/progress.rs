//! Keras's progress bar and epoch lines (`Epoch 3/10 - 4s - loss: ... - val_accuracy: ...`).

use super::{BatchLogs, Callback, Control, Ctx, Ending};
use crate::history::EpochRecord;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn bar(len: u64, quiet: bool) -> ProgressBar {
    let b = ProgressBar::new(len);
    if quiet {
        b.set_draw_target(ProgressDrawTarget::hidden());
    }
    b.set_style(
        ProgressStyle::with_template("{pos:>3}/{len} [{bar:30}] {elapsed_precise} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b
}

/// The bar of the epoch in progress, and one line per finished epoch (only those with `--quiet`).
pub struct ProgressLogger {
    quiet: bool,
    bar: Option<ProgressBar>,
}

impl ProgressLogger {
    pub fn new(quiet: bool) -> Self {
        ProgressLogger { quiet, bar: None }
    }
}

impl Callback for ProgressLogger {
    fn name(&self) -> &'static str {
        "progress"
    }

    fn on_epoch_begin(&mut self, ctx: &mut Ctx, epoch: usize) -> Result<()> {
        let pb = bar(ctx.batches as u64, self.quiet);
        pb.set_position(ctx.state.next_batch as u64);
        if !self.quiet {
            pb.println(format!("Epoch {}/{}", epoch + 1, ctx.epochs));
        }
        self.bar = Some(pb);
        Ok(())
    }

    fn on_batch_end(&mut self, _ctx: &mut Ctx, logs: &BatchLogs) -> Result<Control> {
        if let Some(pb) = &self.bar {
            if !logs.loss.is_finite() {
                pb.abandon();
                return Ok(Control::Continue);
            }
            pb.set_position(logs.batch as u64 + 1);
            pb.set_message(format!(
                "loss: {:.4} - accuracy: {:.4}",
                logs.mean_loss, logs.accuracy
            ));
        }
        Ok(Control::Continue)
    }

    fn on_epoch_end(&mut self, ctx: &mut Ctx, r: &EpochRecord) -> Result<Control> {
        if let Some(pb) = self.bar.take() {
            pb.finish_and_clear();
        }
        crate::outln!(
            "Epoch {}/{} - {:.0}s - loss: {:.4} - accuracy: {:.4} - val_loss: {:.4} - val_accuracy: {:.4}",
            r.epoch, ctx.epochs, r.seconds, r.loss, r.accuracy, r.val_loss, r.val_accuracy
        );
        Ok(Control::Continue)
    }

    fn on_train_end(&mut self, _ctx: &mut Ctx, _ending: &Ending) -> Result<()> {
        if let Some(pb) = self.bar.take() {
            pb.abandon();
        }
        Ok(())
    }
}
