//! `activations`: each named layer's inference output (and `features`) as `.npy`, for an image or a
//! preprocessed batch; `--list` prints the layer names.

use crate::cli::ActivationsArgs;
use anyhow::{bail, Context, Result};
use data::{DecodeLimits, Interpolation, Preprocess};
use mobilenet::MobileNetV2;
use ndarray_npy::{read_npy, write_npy};
use nn::Tensor;
use std::path::Path;

/// The input batch: an `.npy` as it is, or an image decoded, resized bilinearly and scaled x/127.5-1.
fn input(path: &Path, net: &MobileNetV2) -> Result<Tensor> {
    let is_npy = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        return read_npy(path)
            .with_context(|| format!("{}: not a float32 .npy array", path.display()));
    }
    let (h, w) = (net.config.height, net.config.width);
    let decoding = crate::predict::Decoding {
        height: h,
        width: w,
        interpolation: Interpolation::Bilinear,
        preprocess: Preprocess::Mobilenet,
        limits: DecodeLimits::default(),
    };
    let x = decoding.load(path).map_err(anyhow::Error::msg)?;
    Ok(Tensor::from_shape_vec(vec![1, h, w, 3], x)?)
}

/// The closest layer name to a misspelt one, when one is close enough to be a likely intent.
fn suggestion<'a>(name: &str, names: &'a [String]) -> Option<&'a str> {
    names
        .iter()
        .map(|n| (strsim::levenshtein(name, n), n))
        .filter(|(d, n)| *d <= (n.len() / 3).max(2))
        .min()
        .map(|(_, n)| n.as_str())
}

fn check_layers(layers: &[String], net: &MobileNetV2) -> Result<()> {
    let mut names = net.graph.names();
    names.push("features".into());
    for l in layers {
        if names.contains(l) {
            continue;
        }
        let hint = match suggestion(l, &names) {
            Some(s) => format!("; did you mean {s:?}?"),
            None => String::new(),
        };
        let top = if net.classes.is_none() && l == "predictions" {
            " (these weights have no top)"
        } else {
            ""
        };
        bail!("no layer named {l:?}{top}{hint} (`app activations --weights DIR --list` prints them all)");
    }
    Ok(())
}

pub fn run(a: ActivationsArgs) -> Result<i32> {
    let mut net = crate::load::open_weights(&a.weights, None)?;
    if a.list {
        for i in 0..net.graph.len() {
            let layer = net.graph.layer(i);
            crate::outln!("{}\t{}", layer.name(), layer.describe());
        }
        crate::outln!("features\tGlobalPool (of out_relu)");
        return Ok(0);
    }
    let (Some(input_path), Some(out)) = (&a.input, &a.out) else {
        bail!("activations needs --input and --out (or --list)");
    };
    let layers = if a.layers.is_empty() {
        vec!["features".to_string()]
    } else {
        a.layers.clone()
    };
    check_layers(&layers, &net)?;
    let x = input(input_path, &net)?;
    let outs = net.activations(&x, &layers)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, t) in outs {
        let p = out.join(format!("{name}.npy"));
        write_npy(&p, &t).with_context(|| format!("writing {}", p.display()))?;
        crate::outln!("{name}: {:?} -> {}", t.shape(), p.display());
    }
    Ok(0)
}
