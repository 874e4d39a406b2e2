//! The learning rate by epoch (`--schedule cosine|step`), after a linear warm-up over
//! `--warmup-epochs` that grows it batch by batch from `lr / batches_in_warmup` to `lr` (as timm and
//! the "Accurate, Large Minibatch SGD" recipe do). Set before every batch, a pure function of the
//! epoch and batch: a resumed run gets the same rates.

use super::{Callback, Ctx};
use anyhow::{bail, Result};
use nn::optim::{Constant, Cosine, LrSchedule, StepDecay};

/// What follows the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    /// Cosine decay to zero over the epochs after the warm-up.
    Cosine,
    /// Multiply by `factor` every `every` epochs.
    Step {
        every: usize,
        factor: f32,
    },
}

impl Schedule {
    /// `cosine`, `step` (every third of the epochs, factor 0.1), `step:EVERY,FACTOR` or `constant`.
    pub fn parse(s: &str, epochs: usize) -> Result<Self> {
        let (name, args) = s.split_once(':').unwrap_or((s, ""));
        match (name, args) {
            ("constant", "") => Ok(Schedule::Constant),
            ("cosine", "") => Ok(Schedule::Cosine),
            ("step", "") => Ok(Schedule::Step {
                every: (epochs / 3).max(1),
                factor: 0.1,
            }),
            ("step", a) => {
                let parts: Vec<&str> = a.split(',').map(str::trim).collect();
                let every = parts.first().and_then(|v| v.parse::<usize>().ok());
                let factor = parts.get(1).and_then(|v| v.parse::<f32>().ok());
                match (parts.len(), every, factor) {
                    (2, Some(e), Some(f)) if e > 0 && f > 0.0 && f <= 1.0 => {
                        Ok(Schedule::Step { every: e, factor: f })
                    }
                    _ => bail!("--schedule step:EVERY,FACTOR wants whole EVERY >= 1 and 0 < FACTOR <= 1, got {s:?}"),
                }
            }
            _ => bail!("--schedule must be cosine, step, step:EVERY,FACTOR or constant, got {s:?}"),
        }
    }

    fn curve(self, lr: f32, epochs: usize) -> Box<dyn LrSchedule> {
        match self {
            Schedule::Constant => Box::new(Constant(lr)),
            Schedule::Cosine => Box::new(Cosine {
                lr,
                epochs,
                floor: 0.0,
            }),
            Schedule::Step { every, factor } => Box::new(StepDecay { lr, factor, every }),
        }
    }
}

pub struct LrScheduler {
    lr: f32,
    warmup_epochs: usize,
    curve: Box<dyn LrSchedule>,
}

impl LrScheduler {
    pub fn new(lr: f32, schedule: Schedule, warmup_epochs: usize, epochs: usize) -> Self {
        LrScheduler {
            lr,
            warmup_epochs,
            curve: schedule.curve(lr, epochs.saturating_sub(warmup_epochs)),
        }
    }

    /// The rate for 0-based `batch` of 0-based `epoch`, with `batches` per epoch.
    pub fn lr_at(&self, epoch: usize, batch: usize, batches: usize) -> f32 {
        if epoch < self.warmup_epochs {
            let step = (epoch * batches + batch + 1) as f32;
            return self.lr * step / (self.warmup_epochs * batches.max(1)) as f32;
        }
        self.curve.lr(epoch - self.warmup_epochs)
    }
}

impl Callback for LrScheduler {
    fn name(&self) -> &'static str {
        "lr_scheduler"
    }

    fn on_batch_begin(&mut self, ctx: &mut Ctx, epoch: usize, batch: usize) -> Result<()> {
        ctx.opt.set_lr(self.lr_at(epoch, batch, ctx.batches));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_grows_linearly_then_the_schedule_takes_over() {
        let s = LrScheduler::new(1.0, Schedule::Cosine, 2, 6);
        let warm: Vec<f32> = (0..2)
            .flat_map(|e| (0..4).map(move |b| (e, b)))
            .map(|(e, b)| s.lr_at(e, b, 4))
            .collect();
        assert_eq!(warm, [0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]);
        assert_eq!(s.lr_at(2, 0, 4), 1.0, "cosine starts at lr");
        assert!(
            (s.lr_at(4, 3, 4) - 0.5).abs() < 1e-6,
            "half way through 4 epochs"
        );
        let step = LrScheduler::new(1.0, Schedule::parse("step:2,0.5", 6).unwrap(), 0, 6);
        assert_eq!(
            (0..6).map(|e| step.lr_at(e, 0, 4)).collect::<Vec<_>>(),
            [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
        );
    }

    #[test]
    fn schedule_names_and_their_errors() {
        assert_eq!(
            Schedule::parse("step", 9).unwrap(),
            Schedule::Step {
                every: 3,
                factor: 0.1
            }
        );
        for bad in ["linear", "step:0,0.5", "step:2", "step:2,1.5", "cosine:3"] {
            assert!(Schedule::parse(bad, 9).is_err(), "{bad}");
        }
    }
}
