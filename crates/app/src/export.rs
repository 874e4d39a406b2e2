//! `app export`: a run's classifier (or ImageNet weights with the top) as an ONNX model file.

use crate::cli::{ExportArgs, ExportFormat};
use anyhow::{bail, Context, Result};
use data::Preprocess;
use mobilenet::imagenet::ClassIndex;
use mobilenet::Kind;
use nn::Graph;
use onnx::{Options, Preprocessing};
use std::path::Path;

/// The model to export and what the exporter must know about it.
struct Exportable {
    graph: Graph,
    kinds: Vec<Kind>,
    classes: Vec<String>,
    preprocess: Preprocess,
    interpolation: String,
    height: usize,
    width: usize,
    name: String,
    source: String,
    alpha: f32,
}

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

fn from_run(dir: &Path, best: bool) -> Result<Exportable> {
    let (cfg, clf) = crate::load::from_run(dir, best)?;
    let file = if best { "best.npz" } else { "last.npz" };
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "mobilenet_v2_classifier".into());
    Ok(Exportable {
        height: clf.net.config.height,
        width: clf.net.config.width,
        alpha: clf.net.config.alpha,
        graph: clf.net.graph,
        kinds: clf.net.kinds,
        preprocess: cfg.preprocess(),
        interpolation: crate::scoring::interpolation_name(cfg.interpolation()).into(),
        classes: cfg.classes,
        name,
        source: format!("{} ({file})", dir.display()),
    })
}

fn from_weights(dir: &Path, labels: Option<&Path>) -> Result<Exportable> {
    let net = crate::load::open_weights(dir, Some(true))?;
    let labels = crate::scoring::labels_path(labels, dir)?;
    let index = ClassIndex::load(&labels)?;
    let classes: Vec<String> = index.0.iter().map(|e| e.1.clone()).collect();
    if Some(classes.len()) != net.classes {
        bail!(
            "{}: {} classes, but the weights' top scores {:?}",
            labels.display(),
            classes.len(),
            net.classes
        );
    }
    Ok(Exportable {
        height: net.config.height,
        width: net.config.width,
        alpha: net.config.alpha,
        name: format!("mobilenet_v2_{}_imagenet", net.config.alpha),
        graph: net.graph,
        kinds: net.kinds,
        classes,
        preprocess: Preprocess::Mobilenet,
        interpolation: "bilinear".into(),
        source: dir.display().to_string(),
    })
}

/// Writes `bytes` to `out` through a temporary file in the same folder (the file is complete or
/// absent); an existing file is replaced only with `force`.
fn write_model(out: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if out.is_dir() {
        bail!("--out {}: a folder; name the model file", out.display());
    }
    if out.exists() && !force {
        bail!(
            "{}: already exists; pass --force to replace it",
            out.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating folder {}", parent.display()))?;
    }
    nn::checkpoint::write_bytes_atomic(out, bytes)
        .with_context(|| format!("writing {}", out.display()))
}

pub fn run(args: ExportArgs) -> Result<i32> {
    let ExportFormat::Onnx = args.format;
    let mut m = match (&args.checkpoint, &args.weights) {
        (Some(dir), _) => from_run(dir, args.best)?,
        (None, Some(dir)) => {
            if args.best {
                bail!(
                    "--best chooses a run's checkpoint; it needs --checkpoint RUN, not --weights"
                );
            }
            from_weights(dir, args.labels.as_deref())?
        }
        (None, None) => bail!("pass --checkpoint RUN or --weights DIR"),
    };
    let opts = Options {
        include_preprocessing: args.include_preprocessing,
        keep_batch_norm: args.keep_batchnorm,
        preprocessing: preprocessing(m.preprocess),
        classes: m.classes.clone(),
        interpolation: m.interpolation.clone(),
        height: m.height,
        width: m.width,
        name: m.name.clone(),
        extra_metadata: vec![
            ("source".into(), m.source.clone()),
            ("alpha".into(), m.alpha.to_string()),
        ],
    };
    let model = onnx::export(&mut m.graph, &m.kinds, &opts)
        .with_context(|| format!("exporting {}", m.source))?;
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
        "Wrote {} ({:.1} MB): ONNX opset {}, input `image` [batch, {}, {}, 3] float32 NHWC, {input}; \
         resize {}; output `probabilities` [batch, {}]; batch-norm {}",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        onnx::OPSET,
        m.height,
        m.width,
        m.interpolation,
        m.classes.len(),
        if args.keep_batchnorm { "kept" } else { "folded" }
    );
    Ok(0)
}
