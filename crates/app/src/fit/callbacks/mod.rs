//! Keras-style callbacks: the fit loop calls each at the points Keras does (train begin and end,
//! epoch begin and end, batch begin and end), in the order given. Every behaviour around the loop
//! is one of them: progress and epoch lines, history files, checkpoints, the NaN stop, Ctrl-C, early
//! stopping, learning-rate schedules. A callback's state is saved in `trainer.json` so that
//! `--resume` continues bit-identically.

mod checkpoint;
mod early_stopping;
mod history;
mod interrupt;
mod lr_schedule;
mod progress;
mod reduce_lr;
mod terminate_on_nan;

pub use checkpoint::{save as save_checkpoint, ModelCheckpoint};
pub use early_stopping::EarlyStopping;
pub use history::HistoryWriter;
pub use interrupt::Interrupt;
pub use lr_schedule::{LrScheduler, Schedule};
pub use progress::{bar as progress_bar, ProgressLogger};
pub use reduce_lr::ReduceLrOnPlateau;
pub use terminate_on_nan::TerminateOnNaN;

use super::TrainerState;
use crate::history::EpochRecord;
use anyhow::{Context, Result};
use mobilenet::Classifier;
use nn::optim::Optimizer;
use std::collections::BTreeMap;
use std::path::Path;

/// What a callback may look at and change: the model, the optimizer (its learning rate), the run
/// folder, and where the loop stands.
pub struct Ctx<'a> {
    pub clf: &'a mut Classifier,
    pub opt: &'a mut dyn Optimizer,
    pub dir: &'a Path,
    pub state: &'a TrainerState,
    pub epochs: usize,
    pub batches: usize,
}

/// One finished batch.
pub struct BatchLogs {
    /// 0-based epoch and batch.
    pub epoch: usize,
    pub batch: usize,
    /// This batch's mean loss (non-finite when the step was refused).
    pub loss: f32,
    /// The epoch's running mean loss and accuracy so far.
    pub mean_loss: f64,
    pub accuracy: f64,
}

/// What a callback asks of the loop after a batch or an epoch.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    Continue,
    /// End training normally after this epoch (early stopping), for this reason.
    Stop(String),
    /// Save where the loop stands and return (Ctrl-C).
    Interrupt,
}

/// How training ended, for `on_train_end`.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// Every epoch ran.
    Completed,
    /// A callback stopped training early.
    Stopped(String),
    /// Interrupted; `last.npz` holds where the loop stands.
    Interrupted,
}

/// Hooks at Keras's points; each has a default that does nothing.
pub trait Callback {
    /// The key of this callback's state in `trainer.json`.
    fn name(&self) -> &'static str;
    fn on_train_begin(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn on_epoch_begin(&mut self, _ctx: &mut Ctx, _epoch: usize) -> Result<()> {
        Ok(())
    }
    fn on_batch_begin(&mut self, _ctx: &mut Ctx, _epoch: usize, _batch: usize) -> Result<()> {
        Ok(())
    }
    fn on_batch_end(&mut self, _ctx: &mut Ctx, _logs: &BatchLogs) -> Result<Control> {
        Ok(Control::Continue)
    }
    fn on_epoch_end(&mut self, _ctx: &mut Ctx, _logs: &EpochRecord) -> Result<Control> {
        Ok(Control::Continue)
    }
    fn on_train_end(&mut self, _ctx: &mut Ctx, _ending: &Ending) -> Result<()> {
        Ok(())
    }
    /// What `--resume` needs to continue exactly (`Null`: nothing).
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
}

/// The callbacks of a run, called in order; the first `Stop` or `Interrupt` wins, but every
/// callback still sees the event.
pub struct CallbackList(pub Vec<Box<dyn Callback>>);

fn first_request(a: Control, b: Control) -> Control {
    match a {
        Control::Continue => b,
        other => other,
    }
}

impl CallbackList {
    pub fn train_begin(&mut self, ctx: &mut Ctx) -> Result<()> {
        self.0.iter_mut().try_for_each(|c| c.on_train_begin(ctx))
    }

    pub fn epoch_begin(&mut self, ctx: &mut Ctx, epoch: usize) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|c| c.on_epoch_begin(ctx, epoch))
    }

    pub fn batch_begin(&mut self, ctx: &mut Ctx, epoch: usize, batch: usize) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|c| c.on_batch_begin(ctx, epoch, batch))
    }

    pub fn batch_end(&mut self, ctx: &mut Ctx, logs: &BatchLogs) -> Result<Control> {
        let mut control = Control::Continue;
        for c in &mut self.0 {
            control = first_request(control, c.on_batch_end(ctx, logs)?);
        }
        Ok(control)
    }

    pub fn epoch_end(&mut self, ctx: &mut Ctx, logs: &EpochRecord) -> Result<Control> {
        let mut control = Control::Continue;
        for c in &mut self.0 {
            control = first_request(control, c.on_epoch_end(ctx, logs)?);
        }
        Ok(control)
    }

    pub fn train_end(&mut self, ctx: &mut Ctx, ending: &Ending) -> Result<()> {
        self.0
            .iter_mut()
            .try_for_each(|c| c.on_train_end(ctx, ending))
    }

    /// Every callback's state that is not `Null`, by name.
    pub fn states(&self) -> BTreeMap<String, serde_json::Value> {
        self.0
            .iter()
            .map(|c| (c.name().to_owned(), c.state()))
            .filter(|(_, v)| !v.is_null())
            .collect()
    }

    /// Restores what [`states`](Self::states) saved.
    pub fn load_states(&mut self, saved: &BTreeMap<String, serde_json::Value>) -> Result<()> {
        for c in &mut self.0 {
            if let Some(v) = saved.get(c.name()) {
                c.load_state(v)
                    .with_context(|| format!("trainer.json: the state of {}", c.name()))?;
            }
        }
        Ok(())
    }
}

/// A callback's serde state as `trainer.json` keeps it (for [`Callback::state`]).
pub fn to_state<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Restores what [`to_state`] saved (for [`Callback::load_state`]).
pub fn from_state<T: serde::de::DeserializeOwned>(
    into: &mut T,
    state: &serde_json::Value,
) -> Result<()> {
    *into = serde_json::from_value(state.clone())?;
    Ok(())
}

/// Keras's `monitor="val_loss"` comparison in mode `min`: an improvement is lower by more than
/// `min_delta`.
pub fn improved(current: f64, best: Option<f64>, min_delta: f64) -> bool {
    best.is_none_or(|b| current < b - min_delta)
}
