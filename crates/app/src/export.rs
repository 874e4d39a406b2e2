//! `app export`: a run's classifier (or ImageNet weights with the top) as an ONNX model file.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::{bail, Context, Result};
use data::Preprocess;
use onnx::{Options, Preprocessing};
use std::path::Path;

/// `x * scale + offset` equal to [`Preprocess::apply`].
pub fn preprocessing(p: Preprocess) -> Preprocessing {
    let (scale, offset) = match p {
        Preprocess::Mobilenet => (1.0 / 127.5, -1.0),
        Preprocess::Unit => (1.0 / 255.0, 0.0),
    };
    Preprocessing {
        name: p.name().to_string(),
        scale,
        offset,
    }
}

/// The graph's name in the file: the run folder's name, or the ImageNet model's.
fn model_name(args: &ExportArgs, alpha: f32) -> String {
    match &args.model.checkpoint {
        Some(dir) => dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "mobilenet_v2_classifier".into()),
        None => format!("mobilenet_v2_{alpha}_imagenet"),
    }
}

/// Fails when `out` is a folder, or an existing file without `force` (checked before any work).
pub fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if out.is_dir() {
        bail!("--out {}: a folder; name the model file", out.display());
    }
    if out.exists() && !force {
        bail!(
            "{}: already exists; pass --force to replace it",
            out.display()
        );
    }
    Ok(())
}

/// Writes `bytes` to `out` through a temporary file in the same folder (the file is complete or
/// absent); an existing file is replaced only with `force`.
pub fn write_model(out: &Path, bytes: &[u8], force: bool) -> Result<()> {
    refuse_existing(out, force)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating folder {}", parent.display()))?;
    }
    nn::checkpoint::write_bytes_atomic(out, bytes)
        .with_context(|| format!("writing {}", out.display()))
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let ExportFormat::Onnx = args.format;
    let source = args.model.source("export")?;
    let what = match &args.model.checkpoint {
        Some(dir) => format!(
            "{} ({})",
            dir.display(),
            if args.model.best {
                "best.npz"
            } else {
                "last.npz"
            }
        ),
        None => args
            .model
            .weights
            .as_deref()
            .unwrap_or(Path::new(""))
            .display()
            .to_string(),
    };
    let mut m = crate::scoring::load(source, None)?;
    let net = m.network.net_mut();
    let (height, width, alpha) = (net.config.height, net.config.width, net.config.alpha);
    let interpolation = crate::scoring::interpolation_name(m.interpolation);
    let opts = Options {
        include_preprocessing: args.include_preprocessing,
        keep_batch_norm: args.keep_batchnorm,
        preprocessing: preprocessing(m.preprocess),
        classes: m.classes.clone(),
        interpolation: interpolation.into(),
        height,
        width,
        name: model_name(&args, alpha),
        extra_metadata: vec![
            ("source".into(), what.clone()),
            ("alpha".into(), alpha.to_string()),
        ],
    };
    let model = onnx::export(&net.graph, &opts).with_context(|| format!("exporting {what}"))?;
    let bytes = onnx::to_bytes(&model);
    write_model(&args.out, &bytes, args.force)?;
    let input = if args.include_preprocessing {
        format!(
            "RGB 0..255 (scaling {} in the model)",
            opts.preprocessing.name
        )
    } else {
        format!(
            "preprocessed: x * {} + {} ({}) applied by the caller",
            opts.preprocessing.scale, opts.preprocessing.offset, opts.preprocessing.name
        )
    };
    println!(
        "Wrote {} ({:.1} MB): ONNX opset {}, input `image` [batch, {height}, {width}, 3] float32 NHWC, {input}; \
         resize {interpolation}; output `probabilities` [batch, {}]; batch-norm {}",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        onnx::OPSET,
        m.classes.len(),
        if args.keep_batchnorm { "kept" } else { "folded" }
    );
    Ok(0)
}
