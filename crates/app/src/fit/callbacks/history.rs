//! Keras's `History` and `CSVLogger`: `history.csv`, `history.json` and the curves in
//! `history.png`, rewritten after every epoch.

use super::{Callback, Control, Ctx};
use crate::history::EpochRecord;
use anyhow::Result;

pub struct HistoryWriter;

impl Callback for HistoryWriter {
    fn name(&self) -> &'static str {
        "history"
    }

    fn on_epoch_end(&mut self, ctx: &mut Ctx, _r: &EpochRecord) -> Result<Control> {
        crate::history::write(ctx.dir, &ctx.state.history)?;
        crate::plots::curves(&ctx.dir.join("history.png"), &ctx.state.history)?;
        Ok(Control::Continue)
    }
}
