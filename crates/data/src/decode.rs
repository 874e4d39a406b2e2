//! Decoding any supported file into RGB8, with limits against decompression bombs.

use crate::{DataError, Result, Rgb};
use std::path::Path;

/// Largest accepted image.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_side: 12_000,
            max_bytes: 512 << 20,
        }
    }
}

/// Decodes `path` (format from its content, not its name) into RGB8: grey, grey+alpha, RGBA,
/// 16-bit and CMYK all become RGB (alpha is dropped, as Keras's `load_img(color_mode="rgb")` does).
pub fn decode_rgb(path: &Path, limits: DecodeLimits) -> Result<Rgb> {
    let err = |msg: String| DataError::Image {
        path: path.into(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.into(),
        source: e,
    })?;
    if bytes.is_empty() {
        return Err(err("not an image (empty file)".into()));
    }
    // The content decides, not the name: a text file called `.jpg` is not an image.
    let format = image::guess_format(&bytes)
        .map_err(|_| err("not an image (unrecognised content)".into()))?;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_bytes);
    reader.limits(l);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => err(format!(
            "image too large (limit {} pixels a side, {} MiB): {e}",
            limits.max_side,
            limits.max_bytes >> 20
        )),
        other => err(format!("corrupt or unsupported image: {other}")),
    })?;
    Ok(img.to_rgb8())
}
