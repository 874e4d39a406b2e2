//! A Grad-CAM heatmap drawn over its photo: the map upsampled bilinearly to the photo's size,
//! coloured with the jet colour map (as keras.io's example), blended in, and a caption band on top.

use anyhow::{anyhow, Context, Result};
use image::RgbImage;
use ndarray::Array2;
use plotters::prelude::*;
use std::path::Path;

/// The longest side of an overlay, in pixels; larger photos are scaled down to it.
pub const MAX_SIDE: u32 = 800;
/// Weight of the heatmap's colour in the blend.
const ALPHA: f32 = 0.45;
/// Height of the caption band.
const BAND: u32 = 28;

/// Jet colour map: blue (0) through cyan, yellow to red (1).
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// The map sampled at pixel `(x, y)` of a `width x height` image, bilinearly between cell centres
/// (clamped at the borders), as `tf.image.resize` does.
fn sample(map: &Array2<f32>, x: u32, y: u32, width: u32, height: u32) -> f32 {
    let (mh, mw) = map.dim();
    let coord = |p: u32, size: u32, cells: usize| {
        let c =
            ((p as f32 + 0.5) * cells as f32 / size as f32 - 0.5).clamp(0.0, (cells - 1) as f32);
        let i = (c.floor() as usize).min(cells - 1);
        (i, (i + 1).min(cells - 1), c - i as f32)
    };
    let (y0, y1, fy) = coord(y, height, mh);
    let (x0, x1, fx) = coord(x, width, mw);
    let top = map[[y0, x0]] * (1.0 - fx) + map[[y0, x1]] * fx;
    let bottom = map[[y1, x0]] * (1.0 - fx) + map[[y1, x1]] * fx;
    top * (1.0 - fy) + bottom * fy
}

/// The photo (scaled to at most [`MAX_SIDE`]) with the heatmap blended over it and a `caption`
/// written in a band at the top (the text when a font is available).
pub fn overlay(photo: &RgbImage, map: &Array2<f32>, caption: Option<&str>) -> Result<RgbImage> {
    if map.is_empty() {
        return Err(anyhow!("an empty heatmap"));
    }
    let (w, h) = photo.dimensions();
    let scale = (MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
    let (w, h) = (
        ((w as f32 * scale).round() as u32).max(1),
        ((h as f32 * scale).round() as u32).max(1),
    );
    let mut img = if scale < 1.0 {
        image::imageops::resize(photo, w, h, image::imageops::FilterType::Triangle)
    } else {
        photo.clone()
    };
    for (x, y, px) in img.enumerate_pixels_mut() {
        let c = jet(sample(map, x, y, w, h));
        for k in 0..3 {
            px.0[k] = (px.0[k] as f32 * (1.0 - ALPHA) + c[k] as f32 * ALPHA).round() as u8;
        }
    }
    if let Some(text) = caption {
        caption_band(&mut img, text)?;
    }
    Ok(img)
}

/// Darkens a band at the top of `img` and writes `text` in it; without a font, only the band.
pub fn caption_band(img: &mut RgbImage, text: &str) -> Result<()> {
    let (w, h) = img.dimensions();
    let band = BAND.min(h);
    for y in 0..band {
        for x in 0..w {
            let px = img.get_pixel_mut(x, y);
            px.0 = px.0.map(|v| (v as f32 * 0.35) as u8);
        }
    }
    if !crate::plots::have_font() || band < BAND {
        return Ok(());
    }
    let backend = BitMapBackend::with_buffer(img.as_mut(), (w, h));
    let root = backend.into_drawing_area();
    root.draw(&Text::new(
        text.to_string(),
        (8, 5),
        ("sans-serif", 18).into_font().color(&WHITE),
    ))
    .map_err(|e| anyhow!("writing the caption: {e:?}"))?;
    root.present()
        .map_err(|e| anyhow!("writing the caption: {e:?}"))?;
    Ok(())
}

/// `img` encoded as a PNG file's bytes.
pub fn png_bytes(img: &RgbImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )?;
    Ok(bytes)
}

/// Writes `img` as a PNG, atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    let bytes = png_bytes(img).with_context(|| format!("encoding {}", path.display()))?;
    nn::checkpoint::write_bytes_atomic(path, &bytes)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_from_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(-3.0), jet(0.0));
    }

    #[test]
    fn upsampling_hits_cell_centres_and_stays_in_range() {
        let map = Array2::from_shape_vec((2, 2), vec![0.0, 1.0, 0.5, 0.25]).unwrap();
        // A 4x4 image: pixel centres 0.5 and 2.5 fall at cell coordinates -0.25 and 0.75.
        assert_eq!(sample(&map, 0, 0, 4, 4), 0.0);
        assert_eq!(sample(&map, 3, 0, 4, 4), 1.0);
        assert_eq!(sample(&map, 0, 3, 4, 4), 0.5);
        let mid = sample(&map, 1, 0, 4, 4);
        assert!((mid - 0.25).abs() < 1e-6, "{mid}");
        for y in 0..4 {
            for x in 0..4 {
                let v = sample(&map, x, y, 4, 4);
                assert!((0.0..=1.0).contains(&v));
            }
        }
    }

    #[test]
    fn the_hot_half_of_the_map_turns_its_half_of_the_photo_red() {
        let photo = RgbImage::from_pixel(64, 64, image::Rgb([128, 128, 128]));
        let map = Array2::from_shape_fn((2, 2), |(_, j)| j as f32);
        let out = overlay(&photo, &map, Some("x")).unwrap();
        let right = out.get_pixel(60, 40).0;
        let left = out.get_pixel(3, 40).0;
        assert!(right[0] > right[2] + 50, "{right:?}");
        assert!(left[2] > left[0] + 20, "{left:?}");
        // The caption band is darker than the photo.
        assert!(out.get_pixel(32, 2).0.iter().all(|&v| v < 100));
    }
}
