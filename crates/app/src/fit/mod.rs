//! The fit loop: epochs of batches (from the feature cache or the augmenting loader), a training
//! step each, the validation score after each epoch, and [`callbacks`] at Keras's points for
//! everything else. `trainer.json` records where the loop stands, with each callback's state.

pub mod cache;
pub mod callbacks;

use crate::evaluate::evaluate;
use crate::history::EpochRecord;
use anyhow::{Context, Result};
use cache::FeatureCache;
use callbacks::{BatchLogs, CallbackList, Control, Ctx, Ending};
use data::Dataset;
use mobilenet::Classifier;
use nn::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the loop stands, saved beside `last.npz` so `--resume` continues exactly.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TrainerState {
    /// Epoch in progress (0-based) and the next batch to run in it.
    pub epoch: usize,
    pub next_batch: usize,
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
    /// Lowest validation loss so far.
    pub best_val_loss: Option<f64>,
    pub iterations: u64,
    pub history: Vec<EpochRecord>,
    /// The optimizer's learning rate (callbacks may change it), when saved by this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f32>,
    /// Each callback's state, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub callbacks: BTreeMap<String, serde_json::Value>,
}

impl TrainerState {
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        let path = dir.join("trainer.json");
        nn::checkpoint::write_bytes_atomic(&path, text.as_bytes())?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("trainer.json");
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("{}: no trainer state to resume from", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable trainer state", p.display()))
    }

    fn start_next_epoch(&mut self) {
        self.epoch += 1;
        self.next_batch = 0;
        self.loss_sum = 0.0;
        self.correct = 0;
        self.seen = 0;
        self.seconds = 0.0;
    }
}

/// Training inputs: the model, its optimizer, the splits and (augmentation off) their features.
pub struct Fit<'a> {
    pub clf: &'a mut Classifier,
    pub opt: &'a mut dyn Optimizer,
    pub train: &'a std::sync::Arc<Dataset>,
    pub valid: &'a Dataset,
    /// Train and valid features, when the frozen part sees the same pixels every epoch.
    pub cache: Option<(FeatureCache, FeatureCache)>,
    pub dir: &'a Path,
    /// This run of the loop ends before this epoch (0-based): a phase's end.
    pub until: usize,
    /// Epochs of the whole run.
    pub epochs: usize,
    /// Per-class loss weights (`--class-weight`), indexed by label.
    pub class_weights: Option<Vec<f32>>,
}

/// One batch's outcome: its mean loss (non-finite: the step was refused) and correct predictions.
struct Step {
    loss: f32,
    correct: u64,
}

impl Fit<'_> {
    fn ctx<'b>(&'b mut self, state: &'b TrainerState) -> Ctx<'b> {
        Ctx {
            clf: &mut *self.clf,
            opt: &mut *self.opt,
            dir: self.dir,
            state,
            epochs: self.epochs,
            batches: self.train.num_batches(),
        }
    }

    /// Runs the epochs left in `state`, calling `cbs` at each point; `state` ends where the loop
    /// stopped and is saved in the run folder.
    pub fn run(&mut self, state: &mut TrainerState, cbs: &mut CallbackList) -> Result<Ending> {
        cbs.load_states(&state.callbacks)?;
        if let Some(lr) = state.lr {
            self.opt.set_lr(lr);
        }
        cbs.train_begin(&mut self.ctx(state))?;
        let ending = loop {
            if state.epoch >= self.until {
                break Ending::Completed;
            }
            if let Some(ending) = self.epoch(state, cbs)? {
                break ending;
            }
        };
        cbs.train_end(&mut self.ctx(state), &ending)?;
        Ok(ending)
    }

    /// One epoch from `state.next_batch`; `Some` when training ends with it.
    fn epoch(
        &mut self,
        state: &mut TrainerState,
        cbs: &mut CallbackList,
    ) -> Result<Option<Ending>> {
        let epoch = state.epoch;
        let batches = self.train.num_batches();
        let started = Instant::now() - Duration::from_secs_f64(state.seconds);
        cbs.epoch_begin(&mut self.ctx(state), epoch)?;
        let order = self.train.order(epoch);
        let bs = self.train.cfg.batch_size;
        let mut loader = self
            .cache
            .is_none()
            .then(|| self.train.batches(epoch, true, state.next_batch));
        let mut stream = loader
            .as_mut()
            .map(|s| s as &mut dyn Iterator<Item = data::Batch>);
        while state.next_batch < batches {
            let b = state.next_batch;
            cbs.batch_begin(&mut self.ctx(state), epoch, b)?;
            let idx = &order[b * bs..((b + 1) * bs).min(self.train.len())];
            let step = self.step(idx, stream.as_deref_mut())?;
            let n = idx.len() as u64;
            if step.loss.is_finite() {
                state.loss_sum += step.loss as f64 * n as f64;
                state.seen += n;
                state.correct += step.correct;
                state.next_batch += 1;
                state.iterations = self.opt.iterations();
            }
            let logs = BatchLogs {
                epoch,
                batch: b,
                loss: step.loss,
                mean_loss: state.loss_sum / state.seen.max(1) as f64,
                accuracy: state.correct as f64 / state.seen.max(1) as f64,
            };
            let control = cbs.batch_end(&mut self.ctx(state), &logs)?;
            if control == Control::Interrupt && state.next_batch < batches {
                state.seconds = started.elapsed().as_secs_f64();
                self.save_mid_epoch(state, cbs)?;
                return Ok(Some(Ending::Interrupted));
            }
        }
        // The loader thread stops before validation takes the cores.
        drop(loader);
        let rec = self.epoch_record(state, started)?;
        state.history.push(rec.clone());
        state.best_val_loss = Some(
            state
                .best_val_loss
                .map_or(rec.val_loss, |b| b.min(rec.val_loss)),
        );
        state.start_next_epoch();
        let control = cbs.epoch_end(&mut self.ctx(state), &rec)?;
        self.save_state(state, cbs)?;
        Ok(match control {
            Control::Stop(why) if state.epoch < self.epochs => {
                crate::outln!("{why}");
                Some(Ending::Stopped(why))
            }
            Control::Interrupt if state.epoch < self.epochs => Some(Ending::Interrupted),
            _ => None,
        })
    }

    /// One training step on the images `idx`.
    fn step(
        &mut self,
        idx: &[usize],
        stream: Option<&mut (dyn Iterator<Item = data::Batch> + '_)>,
    ) -> Result<Step> {
        let labels: Vec<usize> = idx.iter().map(|&i| self.train.labels[i]).collect();
        let weights = self
            .class_weights
            .as_ref()
            .map(|w| labels.iter().map(|&l| w[l]).collect::<Vec<f32>>());
        self.clf.sample_weights = weights;
        let out = match (&self.cache, stream) {
            (Some((c, _)), _) => self
                .clf
                .train_step_frozen(&c.get(idx), &labels, &mut *self.opt),
            (None, Some(s)) => {
                let batch = s.next().context("the batch loader stopped early")?;
                debug_assert_eq!(batch.indices, idx);
                self.clf
                    .train_step(&batch.x.into_shared(), &labels, &mut *self.opt)
            }
            (None, None) => unreachable!("a stream exists when there is no cache"),
        };
        match out {
            Ok(o) => Ok(Step {
                loss: o.loss,
                correct: o
                    .probs
                    .rows()
                    .into_iter()
                    .zip(&labels)
                    .filter(|(r, &l)| nn::loss::argmax(r.as_slice().unwrap_or(&[])) == Some(l))
                    .count() as u64,
            }),
            Err(mobilenet::Error::NonFinite { loss, .. }) => Ok(Step { loss, correct: 0 }),
            Err(e) => Err(e.into()),
        }
    }

    /// The epoch's line of the history: its training means and the validation score.
    fn epoch_record(&mut self, state: &TrainerState, started: Instant) -> Result<EpochRecord> {
        let (val_loss, val_accuracy) = match &self.cache {
            Some((_, vc)) => vc.score(self.clf, self.valid)?,
            None => {
                let r = evaluate(
                    self.clf,
                    self.valid,
                    "valid",
                    Path::new("current weights"),
                    0,
                )?;
                (r.loss, r.accuracy)
            }
        };
        Ok(EpochRecord {
            epoch: state.epoch + 1,
            seconds: started.elapsed().as_secs_f64(),
            lr: self.opt.lr(),
            loss: state.loss_sum / state.seen.max(1) as f64,
            accuracy: state.correct as f64 / state.seen.max(1) as f64,
            val_loss,
            val_accuracy,
        })
    }

    fn save_state(&mut self, state: &mut TrainerState, cbs: &CallbackList) -> Result<()> {
        state.lr = Some(self.opt.lr());
        state.callbacks = cbs.states();
        state.save(self.dir)
    }

    /// Interrupted inside an epoch: `last.npz` and `trainer.json` as they stand.
    fn save_mid_epoch(&mut self, state: &mut TrainerState, cbs: &CallbackList) -> Result<()> {
        callbacks::save_checkpoint(&self.dir.join("last.npz"), self.clf, &*self.opt)?;
        self.save_state(state, cbs)
    }
}
