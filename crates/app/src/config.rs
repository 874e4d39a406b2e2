//! The run configuration: resolved once from flags and preset, checked before any work, saved as
//! `config.json` in the run folder before epoch 1; `eval`, `predict` and `--resume` read it first.

use crate::cli::{OptimizerKind, Preset, TrainArgs};
use anyhow::{bail, Context, Result};
use data::{Augment, Preprocess};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
pub const DEFAULT_DATA: &str = "data/sports";
pub const DEFAULT_WEIGHTS: &str = "weights/mobilenet_v2_1.0_224_no_top";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct AugmentConfig {
    pub rotation: f32,
    pub width_shift: f32,
    pub height_shift: f32,
    pub zoom: f32,
    pub horizontal_flip: bool,
}

impl From<AugmentConfig> for Augment {
    fn from(a: AugmentConfig) -> Self {
        Augment {
            rotation: a.rotation,
            width_shift: a.width_shift,
            height_shift: a.height_shift,
            zoom: a.zoom,
            horizontal_flip: a.horizontal_flip,
        }
    }
}

impl From<Augment> for AugmentConfig {
    fn from(a: Augment) -> Self {
        AugmentConfig {
            rotation: a.rotation,
            width_shift: a.width_shift,
            height_shift: a.height_shift,
            zoom: a.zoom,
            horizontal_flip: a.horizontal_flip,
        }
    }
}

/// Everything that defines a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub format_version: u32,
    pub preset: Option<String>,
    pub data: PathBuf,
    pub weights: PathBuf,
    pub alpha: f32,
    pub height: usize,
    pub width: usize,
    pub classes: Vec<String>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
    pub optimizer: String,
    pub unfreeze: usize,
    pub dense: usize,
    pub dropout: f32,
    pub augment: AugmentConfig,
    pub preprocess: String,
    pub interpolation: String,
    pub seed: u64,
    pub limit_per_class: Option<usize>,
    /// The run whose final weights this one started from (`--init-from`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// `--early-stopping PATIENCE [--restore-best-weights]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStoppingConfig>,
    /// `--reduce-lr-on-plateau FACTOR,PATIENCE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reduce_lr_on_plateau: Option<ReduceLrConfig>,
    /// `--schedule`: cosine, step, step:EVERY,FACTOR or constant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub warmup_epochs: usize,
    /// `--labels-csv FILE`: the images and labels (and splits) listed in a CSV instead of folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels_csv: Option<PathBuf>,
    /// Epochs with the base frozen before the `unfreeze` layers train (0: one phase).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub frozen_epochs: usize,
    /// The learning rate after the frozen epochs [default: lr / 10].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune_lr: Option<f32>,
    /// `--validation-split F`: the validation images are this fraction of train/, chosen by the seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_split: Option<f32>,
    /// `--class-weight`: balanced, one weight per class, or NAME=W pairs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weight: Option<String>,
}

/// Epochs `start..end` with the last `unfreeze` base layers trainable at rate `lr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    pub start: usize,
    pub end: usize,
    pub unfreeze: usize,
    pub lr: f32,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct EarlyStoppingConfig {
    pub patience: usize,
    pub restore_best_weights: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReduceLrConfig {
    pub factor: f32,
    pub patience: usize,
}

/// `FACTOR,PATIENCE` of `--reduce-lr-on-plateau`.
pub fn parse_reduce_lr(s: &str) -> Result<ReduceLrConfig> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let factor = parts.first().and_then(|v| v.parse::<f32>().ok());
    let patience = parts.get(1).and_then(|v| v.parse::<usize>().ok());
    match (parts.len(), factor, patience) {
        (2, Some(factor), Some(patience)) => Ok(ReduceLrConfig { factor, patience }),
        _ => bail!("--reduce-lr-on-plateau takes FACTOR,PATIENCE (e.g. 0.2,2), got {s:?}"),
    }
}

/// A preset's values (flags override them).
struct Recipe {
    epochs: usize,
    lr: f32,
    unfreeze: usize,
    augment: Augment,
    preprocess: Preprocess,
    /// Two phases (fastai's `fine_tune`): this many epochs with the base frozen first.
    frozen_epochs: usize,
    /// The second phase's learning rate.
    finetune_lr: Option<f32>,
}

fn recipe(p: Preset) -> Recipe {
    match p {
        Preset::StudyFrozen => Recipe {
            epochs: 10,
            lr: 1e-5,
            unfreeze: 0,
            augment: Augment::study(),
            preprocess: Preprocess::Unit,
            frozen_epochs: 0,
            finetune_lr: None,
        },
        Preset::StudyFinetune => Recipe {
            epochs: 10,
            lr: 1e-4,
            unfreeze: 3,
            augment: Augment::study(),
            preprocess: Preprocess::Unit,
            frozen_epochs: 0,
            finetune_lr: None,
        },
        Preset::Best => Recipe {
            epochs: 10,
            lr: 1e-3,
            unfreeze: 0,
            augment: Augment::default(),
            preprocess: Preprocess::Mobilenet,
            frozen_epochs: 0,
            finetune_lr: None,
        },
        // Best's frozen epochs, then block_16 and Conv_1 (11 layers) at a tenth of the rate; no
        // augmentation, so the layers below the cut stay cached in both phases.
        Preset::Finetune => Recipe {
            epochs: 10,
            lr: 1e-3,
            unfreeze: 11,
            augment: Augment::default(),
            preprocess: Preprocess::Mobilenet,
            frozen_epochs: 5,
            finetune_lr: Some(1e-4),
        },
    }
}

pub fn preset_name(p: Preset) -> &'static str {
    match p {
        Preset::StudyFrozen => "study-frozen",
        Preset::StudyFinetune => "study-finetune",
        Preset::Best => "best",
        Preset::Finetune => "finetune",
    }
}

/// Parses `rotation,width_shift,height_shift,zoom,flip` or `off`.
pub fn parse_augment(s: &str) -> Result<Augment> {
    if s == "off" || s == "none" {
        return Ok(Augment::default());
    }
    let v: Vec<&str> = s.split(',').map(str::trim).collect();
    if v.len() != 5 {
        bail!("--augment takes `rotation,width_shift,height_shift,zoom,flip` (e.g. 20,0.2,0.2,0.2,1) or `off`, got {s:?}");
    }
    let f = |i: usize| {
        v[i].parse::<f32>()
            .with_context(|| format!("--augment: {:?} is not a number", v[i]))
    };
    let a = Augment {
        rotation: f(0)?,
        width_shift: f(1)?,
        height_shift: f(2)?,
        zoom: f(3)?,
        horizontal_flip: matches!(v[4], "1" | "true" | "yes"),
    };
    if a.rotation < 0.0
        || !(0.0..1.0).contains(&a.width_shift)
        || !(0.0..1.0).contains(&a.height_shift)
        || !(0.0..1.0).contains(&a.zoom)
    {
        bail!("--augment: rotation must be >= 0 and shifts and zoom in [0, 1), got {s:?}");
    }
    Ok(a)
}

impl RunConfig {
    /// Flags over preset over defaults; classes, alpha and size are filled in by the trainer.
    pub fn from_args(a: &TrainArgs) -> Result<Self> {
        let preset = a.preset.unwrap_or(Preset::Best);
        let r = recipe(preset);
        let preprocess = match &a.preprocess {
            Some(s) => Preprocess::parse(s).with_context(|| {
                format!("--preprocess must be `mobilenet` or `unit`, got {s:?}")
            })?,
            None => r.preprocess,
        };
        let augment = match &a.augment {
            Some(s) => parse_augment(s)?,
            None => r.augment,
        };
        let cfg = RunConfig {
            format_version: FORMAT_VERSION,
            preset: Some(preset_name(preset).into()),
            data: a.data.clone().unwrap_or_else(|| DEFAULT_DATA.into()),
            weights: a.weights.clone().unwrap_or_else(|| DEFAULT_WEIGHTS.into()),
            alpha: a.alpha.unwrap_or(0.0),
            height: 224,
            width: 224,
            classes: Vec::new(),
            epochs: a.epochs.unwrap_or(r.epochs),
            batch_size: a.batch_size.unwrap_or(32),
            lr: a.lr.unwrap_or(r.lr),
            optimizer: match a.optimizer.unwrap_or(OptimizerKind::Adam) {
                OptimizerKind::Adam => "adam".into(),
                OptimizerKind::Sgd => "sgd".into(),
            },
            unfreeze: a.unfreeze.unwrap_or(r.unfreeze),
            dense: a.dense.unwrap_or(256),
            dropout: a.dropout.unwrap_or(0.0),
            augment: augment.into(),
            preprocess: preprocess.name().into(),
            interpolation: "nearest".into(),
            seed: a.seed.unwrap_or(0),
            limit_per_class: a.limit_per_class,
            init_from: a.init_from.clone(),
            early_stopping: a.early_stopping.map(|patience| EarlyStoppingConfig {
                patience,
                restore_best_weights: a.restore_best_weights,
            }),
            reduce_lr_on_plateau: a
                .reduce_lr_on_plateau
                .as_deref()
                .map(parse_reduce_lr)
                .transpose()?,
            schedule: a.schedule.clone(),
            warmup_epochs: a.warmup_epochs.unwrap_or(0),
            class_weight: a.class_weight.clone(),
            validation_split: a.validation_split,
            labels_csv: a.labels_csv.clone(),
            frozen_epochs: a.frozen_epochs.unwrap_or(r.frozen_epochs),
            finetune_lr: a.finetune_lr.or(r.finetune_lr),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            bail!("--epochs must be at least 1, got 0");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1, got 0");
        }
        if self.limit_per_class == Some(0) {
            bail!("--limit-per-class must be at least 1 (it keeps the first N training images of each class), got 0");
        }
        if Preprocess::parse(&self.preprocess).is_none() {
            bail!(
                "preprocess must be `mobilenet` or `unit`, got {:?}",
                self.preprocess
            );
        }
        if !matches!(self.interpolation.as_str(), "nearest" | "bilinear") {
            bail!(
                "interpolation must be `nearest` or `bilinear`, got {:?}",
                self.interpolation
            );
        }
        if !matches!(self.optimizer.as_str(), "adam" | "sgd") {
            bail!(
                "optimizer must be `adam` or `sgd`, got {:?}",
                self.optimizer
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("--dropout must be in [0, 1), got {}", self.dropout);
        }
        self.validate_callbacks()
    }

    fn validate_callbacks(&self) -> Result<()> {
        if self.early_stopping.is_some_and(|e| e.patience == 0) {
            bail!("--early-stopping PATIENCE must be at least 1");
        }
        if let Some(r) = self.reduce_lr_on_plateau {
            if !(r.factor > 0.0 && r.factor < 1.0) || r.patience == 0 {
                bail!(
                    "--reduce-lr-on-plateau wants 0 < FACTOR < 1 and PATIENCE >= 1, got {},{}",
                    r.factor,
                    r.patience
                );
            }
            if self.schedule.is_some() {
                bail!(
                    "--reduce-lr-on-plateau and --schedule both set the learning rate: choose one"
                );
            }
        }
        if let Some(s) = &self.schedule {
            crate::fit::callbacks::Schedule::parse(s, self.epochs)?;
        }
        if self.warmup_epochs > 0 && self.warmup_epochs >= self.epochs {
            bail!(
                "--warmup-epochs ({}) must be fewer than --epochs ({})",
                self.warmup_epochs,
                self.epochs
            );
        }
        if self.validation_split.is_some_and(|f| !(f > 0.0 && f < 1.0)) {
            bail!(
                "--validation-split must be a fraction between 0 and 1, got {}",
                self.validation_split.unwrap_or_default()
            );
        }
        if self.frozen_epochs > 0 {
            if self.frozen_epochs >= self.epochs || self.unfreeze == 0 {
                bail!(
                    "--frozen-epochs {} needs more --epochs ({}) and --unfreeze N > 0 for the layers that train after them",
                    self.frozen_epochs,
                    self.epochs
                );
            }
            if self.schedule.is_some() || self.warmup_epochs > 0 {
                bail!("--frozen-epochs sets the rate of each phase: it does not combine with --schedule or --warmup-epochs");
            }
        }
        if self
            .finetune_lr
            .is_some_and(|lr| !(lr > 0.0 && lr.is_finite()))
        {
            bail!("--finetune-lr must be a positive number");
        }
        if let Some(w) = &self.class_weight {
            crate::class_weight::ClassWeight::parse(w)?;
        }
        Ok(())
    }

    /// The stretches of training with the same trainable layers and rate: one, or with
    /// `--frozen-epochs` the frozen epochs then the fine-tuning ones.
    pub fn phases(&self) -> Vec<Phase> {
        if self.frozen_epochs == 0 {
            return vec![Phase {
                start: 0,
                end: self.epochs,
                unfreeze: self.unfreeze,
                lr: self.lr,
            }];
        }
        vec![
            Phase {
                start: 0,
                end: self.frozen_epochs,
                unfreeze: 0,
                lr: self.lr,
            },
            Phase {
                start: self.frozen_epochs,
                end: self.epochs,
                unfreeze: self.unfreeze,
                lr: self.finetune_lr.unwrap_or(self.lr / 10.0),
            },
        ]
    }

    /// The learning-rate schedule, when `--schedule` or `--warmup-epochs` asks for one.
    pub fn lr_schedule(&self) -> Result<Option<crate::fit::callbacks::Schedule>> {
        use crate::fit::callbacks::Schedule;
        Ok(match (&self.schedule, self.warmup_epochs) {
            (Some(s), _) => Some(Schedule::parse(s, self.epochs)?),
            (None, 0) => None,
            (None, _) => Some(Schedule::Constant),
        })
    }

    /// The pixel scaling ([`validate`](Self::validate) has checked the name).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess::parse(&self.preprocess).unwrap_or_default()
    }

    pub fn interpolation(&self) -> data::Interpolation {
        if self.interpolation == "bilinear" {
            data::Interpolation::Bilinear
        } else {
            data::Interpolation::Nearest
        }
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        nn::checkpoint::write_bytes_atomic(&dir.join("config.json"), text.as_bytes())?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let p = dir.join("config.json");
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{}: no config.json, so not a run folder written by `app train` (or its training never started)",
                dir.display()
            )
        })?;
        let cfg: RunConfig = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable run configuration", p.display()))?;
        if cfg.format_version != FORMAT_VERSION {
            bail!("{}: format version {} but this program reads {FORMAT_VERSION}; retrain or use the matching release", p.display(), cfg.format_version);
        }
        cfg.validate()
            .with_context(|| format!("{}: invalid run configuration", p.display()))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> String {
        let mut cfg = RunConfig::from_args(&TrainArgs::default()).unwrap();
        cfg.classes = vec!["a".into(), "b".into()];
        serde_json::to_string_pretty(&cfg).unwrap()
    }

    fn load_text(text: &[u8]) -> Result<RunConfig> {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("config.json"), text).unwrap();
        RunConfig::load(d.path())
    }

    #[test]
    fn unknown_names_in_a_config_are_errors_not_defaults() {
        assert!(load_text(valid().as_bytes()).is_ok());
        for (from, to, says) in [
            ("\"mobilenet\"", "\"mobilenett\"", "preprocess must be"),
            ("\"nearest\"", "\"bicubic\"", "interpolation must be"),
            ("\"adam\"", "\"adamw\"", "optimizer must be"),
            (
                "\"epochs\": 10",
                "\"epochs\": 0",
                "--epochs must be at least 1",
            ),
        ] {
            let text = valid().replace(from, to);
            let err = format!("{:#}", load_text(text.as_bytes()).unwrap_err());
            assert!(err.contains(says) && err.contains("config.json"), "{err}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// A damaged or random config.json is loaded or refused, never a panic.
        #[test]
        fn damaged_or_random_configs_never_panic(
            cut in 0.0f64..=1.0,
            flips in prop::collection::vec((0.0f64..1.0, any::<u8>()), 0..6),
            random in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut b = valid().into_bytes();
            b.truncate((b.len() as f64 * cut) as usize);
            for (pos, v) in flips {
                if !b.is_empty() {
                    let i = ((b.len() - 1) as f64 * pos) as usize;
                    b[i] = v;
                }
            }
            let _ = load_text(&b);
            let _ = load_text(&random);
        }
    }
}
