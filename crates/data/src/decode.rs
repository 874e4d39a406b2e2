//! Decoding any supported file into RGB8, with limits against decompression bombs.

use crate::jpeg_end::{jpeg_end, JpegEnd};
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
/// A truncated JPEG is an error, not a photo with a grey lower part.
pub fn decode_rgb(path: &Path, limits: DecodeLimits) -> Result<Rgb> {
    let bytes = std::fs::read(path).map_err(|e| DataError::Io {
        path: path.into(),
        source: e,
    })?;
    decode_rgb_bytes(&bytes, path, limits)
}

/// [`decode_rgb`] on bytes already read; `path` only names them in errors.
pub fn decode_rgb_bytes(bytes: &[u8], path: &Path, limits: DecodeLimits) -> Result<Rgb> {
    let err = |msg: String| DataError::Image {
        path: path.into(),
        msg,
    };
    if bytes.is_empty() {
        return Err(err("not an image (empty file)".into()));
    }
    // The content decides, not the name: a text file called `.jpg` is not an image.
    let format = image::guess_format(bytes)
        .map_err(|_| err("not an image (unrecognised content)".into()))?;
    if format == image::ImageFormat::Jpeg {
        match jpeg_end(bytes) {
            JpegEnd::Complete => {}
            JpegEnd::Truncated { .. } => {
                return Err(err(format!(
                    "truncated JPEG: the file ends after {} bytes, before the end-of-image marker",
                    bytes.len()
                )))
            }
            JpegEnd::Malformed { at } => {
                return Err(err(format!(
                    "corrupt JPEG: no marker where one must be, at byte {at}"
                )))
            }
        }
    }
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
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

/// Whether `head` (a file's first bytes, 16 are enough) starts like an image this crate decodes.
pub fn looks_like_image(head: &[u8]) -> bool {
    !head.is_empty() && image::guess_format(head).is_ok()
}
