//! Building the classifier: from ImageNet weights for training, from a run folder for eval/predict.

use crate::config::{RunConfig, DEFAULT_DATA, DEFAULT_WEIGHTS};
use anyhow::{bail, Context, Result};
use mobilenet::{Classifier, HeadConfig, MobileNetV2, ModelConfig};
use nn::vars::VarStore;
use std::path::Path;

/// Fails with a message naming the path, and `cargo xtask fetch` when it is the default location.
pub fn require(path: &Path, default: &str, what: &str) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    if path == Path::new(default) {
        bail!("{}: {what} not found. Run `cargo xtask fetch` to download it (or pass --{} with another folder, e.g. ../shared/{})",
            path.display(), if default == DEFAULT_DATA { "data" } else { "weights" },
            if default == DEFAULT_DATA { "data/sports15" } else { "weights/mobilenet_v2_1.0_224" });
    }
    bail!("{}: {what} not found", path.display())
}

/// Opens MobileNetV2 weights (`want_top` as [`MobileNetV2::from_path`]); a Keras `.h5` gets the
/// command that converts it.
pub fn open_weights(path: &Path, want_top: Option<bool>) -> Result<MobileNetV2> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if path.is_file() && matches!(ext.as_deref(), Some("h5" | "hdf5" | "keras")) {
        bail!(
            "{}: a Keras weights file; convert it first with `cargo xtask fetch weights --from {}` and pass the folder it writes",
            path.display(),
            path.display()
        );
    }
    MobileNetV2::from_path(path, want_top)
        .with_context(|| format!("loading weights {}", path.display()))
}

/// The base from ImageNet weights (a top, if present, is ignored) + a fresh head.
pub fn for_training(cfg: &mut RunConfig) -> Result<Classifier> {
    require(&cfg.weights, DEFAULT_WEIGHTS, "MobileNetV2 weights")?;
    let net = open_weights(&cfg.weights, Some(false))?;
    if cfg.unfreeze > net.base_len() {
        bail!(
            "--unfreeze {}: the base has only {} layers (Keras counting); use at most {} (all of them)",
            cfg.unfreeze,
            net.base_len(),
            net.base_len()
        );
    }
    if cfg.alpha != 0.0 && cfg.alpha != net.config.alpha {
        bail!(
            "--alpha {} was asked for, but {} holds alpha {} weights",
            cfg.alpha,
            cfg.weights.display(),
            net.config.alpha
        );
    }
    cfg.alpha = net.config.alpha;
    let head = HeadConfig {
        dense: cfg.dense,
        dropout: cfg.dropout,
        classes: cfg.classes.len(),
        seed: cfg.seed,
    };
    let mut clf = Classifier::new(net, head)?;
    clf.unfreeze_last(cfg.unfreeze);
    Ok(clf)
}

/// Prefixes of checkpoint entries that are not model variables.
pub const NON_MODEL: [&str; 2] = ["optimizer/", "trainer/"];

/// The classifier of a run folder, its weights from `last.npz` (the final model) or `best.npz`
/// (lowest validation loss), without the original ImageNet weights.
pub fn from_run(dir: &Path, best: bool) -> Result<(RunConfig, Classifier)> {
    check_run_folder(dir)?;
    let cfg = RunConfig::load(dir)?;
    let file = dir.join(if best { "best.npz" } else { "last.npz" });
    if !file.exists() {
        bail!(
            "{}: no checkpoint in this run folder: its training stopped before the first epoch ended (train it again, or resume it with `--resume {}`)",
            file.display(),
            dir.display()
        );
    }
    let tensors = nn::checkpoint::load_npz(&file)
        .with_context(|| format!("reading checkpoint {}", file.display()))?;
    let vs = VarStore::from_map(&file, tensors.clone().into_iter().collect());
    for p in ["dense/", "dense_1/", "dropout/"]
        .iter()
        .chain(NON_MODEL.iter())
    {
        vs.ignore(p);
    }
    let model_cfg = ModelConfig {
        alpha: cfg.alpha,
        height: cfg.height,
        width: cfg.width,
        include_top: false,
    };
    let net = MobileNetV2::load(vs, model_cfg)
        .with_context(|| format!("loading checkpoint {}", file.display()))?;
    let head = HeadConfig {
        dense: cfg.dense,
        dropout: cfg.dropout,
        classes: cfg.classes.len(),
        seed: cfg.seed,
    };
    let mut clf = Classifier::new(net, head)?;
    nn::checkpoint::restore(&mut clf.net.graph, &tensors, &file, &NON_MODEL)
        .with_context(|| format!("loading checkpoint {}", file.display()))?;
    clf.unfreeze_last(cfg.unfreeze);
    Ok((cfg, clf))
}

/// A run is named by its folder: a checkpoint file given instead gets the flags that mean it.
pub fn check_run_folder(dir: &Path) -> Result<()> {
    if dir.is_file() {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let run = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match name {
            "best.npz" => bail!(
                "{}: pass the run folder, and --best for best.npz: --checkpoint {} --best",
                dir.display(),
                run.display()
            ),
            "last.npz" => bail!(
                "{}: pass the run folder (last.npz is what it uses): --checkpoint {}",
                dir.display(),
                run.display()
            ),
            _ => bail!(
                "{}: a file, not a run folder written by `app train`",
                dir.display()
            ),
        }
    }
    if !dir.exists() {
        bail!("{}: no such run folder", dir.display());
    }
    Ok(())
}
