//! The top-losses gallery (fastai's `plot_top_losses`): for each of the highest-loss images, one PNG
//! with the photo beside its Grad-CAM overlay (predicted class) and a caption with the true and
//! predicted classes, their probabilities and the loss.

use crate::evaluate::ImageLoss;
use crate::explain::overlay::{caption_band, overlay, save_png};
use crate::explain::Explainer;
use anyhow::{Context, Result};
use image::RgbImage;
use mobilenet::Target;
use std::path::{Path, PathBuf};

/// Height of each half of a gallery image, and of its caption band.
const SIDE: u32 = 224;
const BAND: u32 = 28;
const GAP: u32 = 6;

/// The photo fitted into `SIDE x SIDE`, beside its overlay, under a caption band.
fn tile(photo: &RgbImage, map: &ndarray::Array2<f32>, caption: &str) -> Result<RgbImage> {
    let small = image::imageops::thumbnail(photo, SIDE, SIDE);
    let cam = overlay(&small, map, None)?;
    let (w, h) = small.dimensions();
    let mut out = RgbImage::from_pixel(2 * w + GAP, h + BAND, image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, &small, 0, BAND as i64);
    image::imageops::replace(&mut out, &cam, (w + GAP) as i64, BAND as i64);
    caption_band(&mut out, caption)?;
    Ok(out)
}

/// Writes one PNG per image of `losses` (highest loss first) as `dir/NN_<stem>.png`, replacing
/// an earlier gallery in `dir` as a whole. Unreadable photos are left out (named on stderr).
pub fn write(ex: &mut Explainer, losses: &[ImageLoss], dir: &Path) -> Result<Vec<PathBuf>> {
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut names = Vec::new();
    for (rank, l) in losses.iter().enumerate() {
        let path = Path::new(&l.file);
        let (photo, x) = match ex.decode(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("gallery: {} left out: {e:#}", l.file);
                continue;
            }
        };
        let e = ex.explain(vec![x], &[Target::Rank(0)])?;
        let caption = format!(
            "#{} true {} {:.2} | predicted {} {:.2} | loss {:.2}",
            rank + 1,
            l.truth,
            l.p_truth,
            l.predicted,
            l.p_predicted,
            l.loss
        );
        let img = tile(&photo, &e[0].maps[0].heatmap, &caption)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = format!("{:02}_{}_{stem}.png", rank + 1, l.truth);
        save_png(&tmp.join(&name), &img)?;
        names.push(name);
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir).with_context(|| format!("writing {}", dir.display()))?;
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}
