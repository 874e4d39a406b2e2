//! Ctrl-C: the batch in progress finishes, then the loop saves where it stands and returns.

use super::{BatchLogs, Callback, Control, Ctx};
use crate::history::EpochRecord;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct Interrupt {
    flag: Arc<AtomicBool>,
    /// Tests: behave as if Ctrl-C came after this many batches of this process.
    after: Option<u64>,
    batches_run: u64,
}

impl Interrupt {
    pub fn new(flag: Arc<AtomicBool>, after: Option<u64>) -> Self {
        Interrupt {
            flag,
            after,
            batches_run: 0,
        }
    }

    fn asked(&self) -> Control {
        if self.flag.load(Ordering::SeqCst) {
            Control::Interrupt
        } else {
            Control::Continue
        }
    }
}

impl Callback for Interrupt {
    fn name(&self) -> &'static str {
        "interrupt"
    }

    fn on_batch_end(&mut self, _ctx: &mut Ctx, _logs: &BatchLogs) -> Result<Control> {
        self.batches_run += 1;
        if self.after.is_some_and(|n| self.batches_run >= n) {
            self.flag.store(true, Ordering::SeqCst);
        }
        Ok(self.asked())
    }

    fn on_epoch_end(&mut self, _ctx: &mut Ctx, _r: &EpochRecord) -> Result<Control> {
        Ok(self.asked())
    }
}
