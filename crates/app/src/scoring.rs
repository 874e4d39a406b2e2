//! What scores images outside training: a run's classifier (its classes, preprocessing and resize
//! interpolation come from the run) or ImageNet weights with the top, compiled for inference.

use anyhow::{bail, Context, Result};
use data::{Interpolation, Preprocess};
use mobilenet::imagenet::ClassIndex;
use mobilenet::{Classifier, MobileNetV2, Predictor};
use std::path::{Path, PathBuf};

/// Where the model comes from, as the user said it.
pub enum Source<'a> {
    /// A run folder, and whether to take `best.npz` instead of `last.npz`.
    Run { dir: &'a Path, best: bool },
    /// ImageNet weights with the top, and the class index (`None`: beside the weights).
    Weights {
        dir: &'a Path,
        labels: Option<&'a Path>,
    },
    /// A quantized model written by `app quantize` (classes and preprocessing inside).
    Quantized { file: &'a Path },
}

impl<'a> Source<'a> {
    /// The model named by a command's `--checkpoint RUN [--best]` or `--weights DIR [--labels F]`.
    pub fn from_flags(
        command: &str,
        checkpoint: Option<&'a Path>,
        best: bool,
        weights: Option<&'a Path>,
        labels: Option<&'a Path>,
    ) -> Result<Self> {
        match (checkpoint, weights) {
            (Some(dir), _) => Ok(Source::Run { dir, best }),
            (None, Some(_)) if best => {
                bail!("--best picks a run's best.npz: it goes with --checkpoint RUN, not --weights")
            }
            (None, Some(dir)) => Ok(Source::Weights { dir, labels }),
            (None, None) => bail!(
                "{command} needs --checkpoint RUN_DIR or --weights DIR (ImageNet weights with the top)"
            ),
        }
    }
}

/// The network as loaded: a run's classifier, or ImageNet weights with the top.
pub enum Network {
    Trained(Classifier),
    ImageNet(MobileNetV2),
}

impl Network {
    pub fn net_mut(&mut self) -> &mut MobileNetV2 {
        match self {
            Network::Trained(c) => &mut c.net,
            Network::ImageNet(n) => n,
        }
    }
}

/// A model with everything needed to feed it: classes, pixel scaling, resize interpolation.
pub struct Loaded {
    pub network: Network,
    pub classes: Vec<String>,
    pub preprocess: Preprocess,
    pub interpolation: Interpolation,
    /// One line for the user: which model, which preprocessing, and where each came from.
    pub description: String,
}

/// A model ready to score preprocessed images, with everything needed to preprocess them.
pub struct Scorer {
    pub predictor: Predictor,
    pub classes: Vec<String>,
    pub preprocess: Preprocess,
    pub interpolation: Interpolation,
    /// One line for the user: which model, which preprocessing, and where each came from.
    pub description: String,
}

pub fn parse_interpolation(s: &str) -> Result<Interpolation> {
    match s {
        "nearest" => Ok(Interpolation::Nearest),
        "bilinear" => Ok(Interpolation::Bilinear),
        other => bail!("--interpolation must be nearest or bilinear, got {other:?}"),
    }
}

pub fn interpolation_name(i: Interpolation) -> &'static str {
    match i {
        Interpolation::Nearest => "nearest",
        Interpolation::Bilinear => "bilinear",
    }
}

/// `--labels`, or `imagenet_class_index.json` beside the weights (in the folder or its parent).
pub fn labels_path(labels: Option<&Path>, weights: &Path) -> Result<PathBuf> {
    if let Some(p) = labels {
        return Ok(p.to_path_buf());
    }
    let beside = [
        weights.join("imagenet_class_index.json"),
        weights
            .parent()
            .map(|p| p.join("imagenet_class_index.json"))
            .unwrap_or_default(),
    ];
    beside.into_iter().find(|p| p.is_file()).with_context(|| {
        format!(
            "no imagenet_class_index.json beside {}; pass --labels",
            weights.display()
        )
    })
}

/// Loads the model the user named; `interpolation` overrides the run's (and the description says so).
pub fn load(source: Source<'_>, interpolation: Option<&str>) -> Result<Loaded> {
    let forced = interpolation.map(parse_interpolation).transpose()?;
    match source {
        Source::Quantized { file } => bail!(
            "{}: a quantized model only scores images (predict, serve); this needs the float model: --checkpoint RUN or --weights DIR",
            file.display()
        ),
        Source::Run { dir, best } => {
            let (cfg, clf) = crate::load::from_run(dir, best)?;
            let own = cfg.interpolation();
            let interpolation = forced.unwrap_or(own);
            let resize = match forced {
                Some(f) if f != own => format!(
                    "resize {} (--interpolation; the run used {})",
                    interpolation_name(f),
                    interpolation_name(own)
                ),
                _ => format!("resize {} (the run's)", interpolation_name(own)),
            };
            Ok(Loaded {
                description: format!(
                    "Model: run {} ({}), {} classes; preprocessing {} (the run's), {resize}",
                    dir.display(),
                    if best { "best.npz" } else { "last.npz" },
                    cfg.classes.len(),
                    cfg.preprocess
                ),
                network: Network::Trained(clf),
                preprocess: cfg.preprocess(),
                interpolation,
                classes: cfg.classes,
            })
        }
        Source::Weights { dir, labels } => {
            let net = crate::load::open_weights(dir, Some(true))?;
            let index = ClassIndex::load(&labels_path(labels, dir)?)?;
            let classes: Vec<String> = index.0.iter().map(|e| e.1.clone()).collect();
            if Some(classes.len()) != net.classes {
                bail!(
                    "the class index has {} classes but the weights' top scores {:?}",
                    classes.len(),
                    net.classes
                );
            }
            let interpolation = forced.unwrap_or(Interpolation::Bilinear);
            Ok(Loaded {
                description: format!(
                    "Model: ImageNet MobileNetV2 alpha {} from {}, {} classes; preprocessing mobilenet, resize {}",
                    net.config.alpha,
                    dir.display(),
                    classes.len(),
                    interpolation_name(interpolation)
                ),
                network: Network::ImageNet(net),
                classes,
                preprocess: Preprocess::Mobilenet,
                interpolation,
            })
        }
    }
}

impl Scorer {
    /// Loads and compiles the model. `interpolation` overrides the run's (and says so).
    pub fn open(source: Source<'_>, interpolation: Option<&str>) -> Result<Self> {
        match source {
            Source::Quantized { file } => Self::open_quantized(file, interpolation),
            _ => Self::compile(&mut load(source, interpolation)?),
        }
    }

    /// A quantized model file: its plan, and the classes and preprocessing stored with it.
    fn open_quantized(file: &Path, interpolation: Option<&str>) -> Result<Self> {
        let (plan, info) = mobilenet::QuantizedPlan::load(file)?;
        let bad = |what: &str, v: &str| anyhow::anyhow!("{}: unknown {what} {v:?}", file.display());
        let preprocess = Preprocess::parse(&info.preprocess)
            .ok_or_else(|| bad("preprocessing", &info.preprocess))?;
        let own = parse_interpolation(&info.interpolation)
            .map_err(|_| bad("interpolation", &info.interpolation))?;
        let interpolation = interpolation
            .map(parse_interpolation)
            .transpose()?
            .unwrap_or(own);
        let (int, all) = plan.integer_steps();
        let description = format!(
            "Model: int8 {} ({} of {} steps in integers; calibrated {} on {} photos), {} classes; from {}; preprocessing {}, resize {}",
            file.display(),
            int,
            all,
            plan.calibration.method,
            plan.calibration.images,
            info.labels.len(),
            info.source,
            preprocess.name(),
            interpolation_name(interpolation)
        );
        Ok(Scorer {
            predictor: Predictor::from_quantized(plan),
            classes: info.labels,
            preprocess,
            interpolation,
            description,
        })
    }

    /// Compiles a loaded model for inference; the model stays usable (for Grad-CAM, say).
    pub fn compile(m: &mut Loaded) -> Result<Self> {
        let predictor = match &mut m.network {
            Network::Trained(c) => Predictor::from_classifier(c)?,
            Network::ImageNet(n) => Predictor::from_model(n)?,
        };
        Ok(Scorer {
            predictor,
            classes: m.classes.clone(),
            preprocess: m.preprocess,
            interpolation: m.interpolation,
            description: m.description.clone(),
        })
    }
}
