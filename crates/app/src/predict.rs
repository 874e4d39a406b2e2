//! `predict`: per image, the top classes of a trained run, or ImageNet labels from weights with a top.

use crate::cli::PredictArgs;
use anyhow::{bail, Context, Result};
use data::{decode_rgb, resize, DecodeLimits, Interpolation, Preprocess, Transform};
use mobilenet::imagenet::{top_k, ClassIndex};
use mobilenet::MobileNetV2;
use nn::{Mode, Tensor};
use std::path::{Path, PathBuf};

/// Decodes, resizes and preprocesses images into one NHWC batch. A bad image is an error naming it.
fn batch(
    paths: &[PathBuf],
    h: usize,
    w: usize,
    interp: Interpolation,
    pre: Preprocess,
) -> Result<Tensor> {
    let per = h * w * 3;
    let mut x = vec![0.0f32; paths.len() * per];
    for (p, out) in paths.iter().zip(x.chunks_mut(per)) {
        let img = decode_rgb(p, DecodeLimits::default())?;
        Transform::IDENTITY.apply(&resize(&img, h as u32, w as u32, interp), pre, out);
    }
    Ok(Tensor::from_shape_vec(vec![paths.len(), h, w, 3], x)?)
}

fn labels_path(args: &PredictArgs, weights: &Path) -> Result<PathBuf> {
    if let Some(p) = &args.labels {
        return Ok(p.clone());
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

pub fn run(args: PredictArgs) -> Result<i32> {
    let interp = match args.interpolation.as_str() {
        "nearest" => Interpolation::Nearest,
        "bilinear" => Interpolation::Bilinear,
        other => bail!("--interpolation must be nearest or bilinear, got {other:?}"),
    };
    if args.top == 0 {
        bail!("--top must be at least 1");
    }
    nn::profile::enable(args.profile);
    let (probs, names): (ndarray::Array2<f32>, Vec<String>) = if let Some(w) = &args.weights {
        let mut net = MobileNetV2::from_path(w, Some(true))
            .with_context(|| format!("loading weights {}", w.display()))?;
        let index = ClassIndex::load(&labels_path(&args, w)?)?;
        let x = batch(
            &args.images,
            net.config.height,
            net.config.width,
            interp,
            Preprocess::Mobilenet,
        )?;
        let logits = net.forward(&x, Mode::Infer)?.into_dimensionality()?;
        let probs = tensor_core::softmax::forward(logits.view());
        (probs, index.0.iter().map(|e| e.1.clone()).collect())
    } else if let Some(run) = &args.checkpoint {
        let (cfg, mut clf) = crate::load::from_run(run, args.best)?;
        let x = batch(
            &args.images,
            cfg.height,
            cfg.width,
            interp,
            cfg.preprocess(),
        )?;
        (clf.predict(&x)?, cfg.classes.clone())
    } else {
        bail!(
            "predict needs --checkpoint RUN_DIR or --weights DIR (ImageNet weights with the top)"
        );
    };
    for (p, row) in args.images.iter().zip(probs.rows()) {
        let top = top_k(row.as_slice().unwrap_or(&row.to_vec()), args.top);
        let parts: Vec<String> = top
            .iter()
            .map(|(i, pr)| {
                format!(
                    "{} {:.3}",
                    names.get(*i).map(String::as_str).unwrap_or("?"),
                    pr
                )
            })
            .collect();
        println!("{}: {}", p.display(), parts.join(", "));
    }
    if args.profile {
        println!("\nTime per layer:");
        println!("{}", nn::profile::markdown(&nn::profile::take(), 1));
    }
    Ok(0)
}
