//! Keras's `TerminateOnNaN`: a non-finite loss ends the run (the step that produced it changed
//! nothing), naming the last good checkpoint.

use super::{BatchLogs, Callback, Control, Ctx};
use anyhow::{bail, Result};

pub struct TerminateOnNaN;

impl Callback for TerminateOnNaN {
    fn name(&self) -> &'static str {
        "terminate_on_nan"
    }

    fn on_batch_end(&mut self, ctx: &mut Ctx, logs: &BatchLogs) -> Result<Control> {
        if logs.loss.is_finite() {
            return Ok(Control::Continue);
        }
        let last = ctx.dir.join("last.npz");
        let kept = if last.exists() {
            format!(
                "the last good checkpoint is {} (end of epoch {})",
                last.display(),
                ctx.state.history.len()
            )
        } else {
            "no checkpoint had been saved yet".into()
        };
        bail!(
            "the loss became {} at epoch {}, batch {}: training stopped; {kept}. Try a lower --lr.",
            logs.loss,
            logs.epoch + 1,
            logs.batch + 1
        )
    }
}
