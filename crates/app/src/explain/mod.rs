//! `explain`: Grad-CAM heatmaps that show where the model looked, one `<stem>.cam.png` per photo (and
//! per class asked for), with `--raw` the map itself as `<stem>.cam.npy`.

pub mod overlay;

use crate::cli::ExplainArgs;
use crate::predict::Decoding;
use crate::predict::EXIT_SKIPPED;
use crate::scoring::{Loaded, Network};
use anyhow::{bail, Context, Result};
use data::{decode_rgb, DecodeLimits, Interpolation, Preprocess};
use image::RgbImage;
use mobilenet::{ClassMap, GradCam, Target};
use ndarray_npy::WriteNpyExt;
use nn::Tensor;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Photos explained together (the folded forward runs them as one batch).
const BATCH: usize = 8;

/// A loaded model ready to explain, and how to feed it.
pub struct Explainer {
    pub cam: GradCam,
    pub classes: Vec<String>,
    /// Resize and scaling, as `predict` feeds the same model.
    pub decoding: Decoding,
}

impl Explainer {
    fn with(
        cam: GradCam,
        classes: Vec<String>,
        preprocess: Preprocess,
        interpolation: Interpolation,
    ) -> Self {
        let (height, width) = cam.input_size();
        Explainer {
            cam,
            classes,
            decoding: Decoding {
                height,
                width,
                interpolation,
                preprocess,
                limits: DecodeLimits::default(),
            },
        }
    }

    pub fn new(loaded: Loaded) -> Result<Self> {
        let cam = match loaded.network {
            Network::Trained(c) => GradCam::from_classifier(c)?,
            Network::ImageNet(n) => GradCam::from_model(n)?,
        };
        Ok(Self::with(
            cam,
            loaded.classes,
            loaded.preprocess,
            loaded.interpolation,
        ))
    }

    /// A run's classifier, fed as the run was trained.
    pub fn for_run(clf: mobilenet::Classifier, cfg: &crate::config::RunConfig) -> Result<Self> {
        let cam = GradCam::from_classifier(clf)?;
        Ok(Self::with(
            cam,
            cfg.classes.clone(),
            cfg.preprocess(),
            cfg.interpolation(),
        ))
    }

    /// The photo as decoded, and as the model's input (resized, scaled).
    pub fn decode(&self, path: &Path) -> Result<(RgbImage, Vec<f32>)> {
        let photo = decode_rgb(path, self.decoding.limits)?;
        let x = self.decoding.pixels(&photo);
        Ok((photo, x))
    }

    /// Explains model inputs (each `H * W * 3` floats) for `targets`.
    pub fn explain(
        &mut self,
        inputs: Vec<Vec<f32>>,
        targets: &[Target],
    ) -> Result<Vec<mobilenet::Explanation>> {
        let (h, w) = self.cam.input_size();
        let n = inputs.len();
        let x = Tensor::from_shape_vec(vec![n, h, w, 3], inputs.concat())
            .context("assembling the batch")?;
        Ok(self.cam.explain(&x, targets)?)
    }
}

/// `--class` as a class index: an exact name, else an index.
pub fn class_index(s: &str, classes: &[String]) -> Result<usize> {
    if let Some(i) = classes.iter().position(|c| c == s) {
        return Ok(i);
    }
    if let Ok(i) = s.parse::<usize>() {
        if i < classes.len() {
            return Ok(i);
        }
        bail!(
            "--class {i}: the model has {} classes (0..{})",
            classes.len(),
            classes.len() - 1
        );
    }
    let mut near: Vec<(f64, &String)> = classes
        .iter()
        .map(|c| (strsim::jaro_winkler(s, c), c))
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0));
    let names: Vec<&str> = near.iter().take(3).map(|(_, c)| c.as_str()).collect();
    bail!(
        "--class {s:?}: no such class; the nearest are {}",
        names.join(", ")
    )
}

fn targets(args: &ExplainArgs, classes: &[String]) -> Result<Vec<Target>> {
    if let Some(c) = &args.class {
        return Ok(vec![Target::Class(class_index(c, classes)?)]);
    }
    if args.top == 0 || args.top > classes.len() {
        bail!(
            "--top {}: between 1 and the model's {} classes",
            args.top,
            classes.len()
        );
    }
    Ok((0..args.top).map(Target::Rank).collect())
}

/// Output file stems, one per photo: the photo's stem, with `-2`, `-3`... for repeated stems.
fn stems(paths: &[PathBuf]) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    paths
        .iter()
        .map(|p| {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "image".into());
            let n = seen.entry(stem.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                stem
            } else {
                format!("{stem}-{n}")
            }
        })
        .collect()
}

/// `<stem>.cam` for one target, `<stem>.top<k>.cam` for each of several.
fn file_base(out: &Path, stem: &str, rank: usize, several: bool) -> PathBuf {
    if several {
        out.join(format!("{stem}.top{}.cam", rank + 1))
    } else {
        out.join(format!("{stem}.cam"))
    }
}

/// The caption written on an overlay.
fn caption(classes: &[String], map: &ClassMap, target: Target, probs: &[f32]) -> String {
    let label = &classes[map.class];
    match target {
        Target::Rank(0) => format!("{label} {:.3}", map.probability),
        Target::Rank(k) => format!("#{} {label} {:.3}", k + 1, map.probability),
        Target::Class(_) => {
            let best = (0..probs.len())
                .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
                .unwrap_or(0);
            format!(
                "{label} {:.3} (predicted: {} {:.3})",
                map.probability, classes[best], probs[best]
            )
        }
    }
}

fn write_npy(path: &Path, map: &ndarray::Array2<f32>) -> Result<()> {
    let mut bytes = Vec::new();
    map.write_npy(&mut bytes)
        .with_context(|| format!("encoding {}", path.display()))?;
    nn::checkpoint::write_bytes_atomic(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Every file this run would write, refused up front if one exists (unless `force`).
fn check_outputs(
    out: &Path,
    stems: &[String],
    n_targets: usize,
    raw: bool,
    force: bool,
) -> Result<()> {
    if force {
        return Ok(());
    }
    for stem in stems {
        for k in 0..n_targets {
            let base = file_base(out, stem, k, n_targets > 1);
            for ext in ["png", "npy"].iter().take(if raw { 2 } else { 1 }) {
                let f = base.with_extension(format!("cam.{ext}"));
                if f.exists() {
                    bail!(
                        "{}: already exists; pass --force to replace the heatmaps in {}",
                        f.display(),
                        out.display()
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: ExplainArgs) -> Result<i32> {
    let source = args.model.source("explain")?;
    let loaded = crate::scoring::load(source, args.interpolation.as_deref())?;
    eprintln!("{}", loaded.description);
    let mut ex = Explainer::new(loaded)?;
    let targets = targets(&args, &ex.classes)?;
    let paths = crate::predict::inputs::expand(&args.images, None)?;
    if args.out.is_file() {
        bail!("--out {}: a file; name a folder", args.out.display());
    }
    let stems = stems(&paths);
    check_outputs(&args.out, &stems, targets.len(), args.raw, args.force)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let mut skipped = 0;
    for (chunk, chunk_stems) in paths.chunks(BATCH).zip(stems.chunks(BATCH)) {
        let mut photos = Vec::new();
        for (p, stem) in chunk.iter().zip(chunk_stems) {
            match ex.decode(p) {
                Ok((photo, x)) => photos.push((p, stem, photo, x)),
                Err(e) => {
                    eprintln!("skipped: {e:#}");
                    skipped += 1;
                }
            }
        }
        if photos.is_empty() {
            continue;
        }
        let inputs: Vec<Vec<f32>> = photos
            .iter_mut()
            .map(|p| std::mem::take(&mut p.3))
            .collect();
        let explained = ex.explain(inputs, &targets)?;
        for ((path, stem, photo, _), e) in photos.iter().zip(explained) {
            let mut written = Vec::new();
            for (k, (map, &t)) in e.maps.iter().zip(&targets).enumerate() {
                let base = file_base(&args.out, stem, k, targets.len() > 1);
                let text = caption(&ex.classes, map, t, &e.probabilities);
                let png = base.with_extension("cam.png");
                overlay::save_png(&png, &overlay::overlay(photo, &map.heatmap, Some(&text))?)?;
                if args.raw {
                    write_npy(&base.with_extension("cam.npy"), &map.heatmap)?;
                }
                written.push(format!("{text} -> {}", png.display()));
            }
            crate::outln!("{}: {}", path.display(), written.join("; "));
        }
    }
    if skipped > 0 {
        eprintln!("(exit status {EXIT_SKIPPED}: {skipped} file(s) skipped, each named above)");
        return Ok(EXIT_SKIPPED);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_by_name_or_index_and_misspellings_get_suggestions() {
        let c: Vec<String> = ["archery", "bmx", "golf"].map(String::from).to_vec();
        assert_eq!(class_index("golf", &c).unwrap(), 2);
        assert_eq!(class_index("1", &c).unwrap(), 1);
        assert!(class_index("3", &c)
            .unwrap_err()
            .to_string()
            .contains("0..2"));
        let e = class_index("glof", &c).unwrap_err().to_string();
        assert!(e.contains("nearest are golf"), "{e}");
    }

    #[test]
    fn repeated_stems_are_numbered() {
        let p: Vec<PathBuf> = ["a/1.jpg", "b/1.jpg", "b/2.png", "c/1.jpeg"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(stems(&p), ["1", "1-2", "2", "1-3"]);
    }
}
