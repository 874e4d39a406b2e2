//! Decoding and resizing on the worker pool, one batch ahead of inference: a producer thread turns
//! the path list into batches of preprocessed pixels and hands them over through a channel that
//! holds at most [`AHEAD`] batches, so memory is bounded by the batch size, not the number of paths.

use data::{
    decode_rgb, decode_rgb_bytes, resize, DecodeLimits, Interpolation, Preprocess, Transform,
};
use rayon::prelude::*;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};

/// Decoded batches waiting for inference, at most.
pub const AHEAD: usize = 2;

/// How each image becomes model input.
#[derive(Clone, Copy, Debug)]
pub struct Decoding {
    pub height: usize,
    pub width: usize,
    pub interpolation: Interpolation,
    pub preprocess: Preprocess,
    pub limits: DecodeLimits,
}

impl Decoding {
    /// One image as `height * width * 3` preprocessed floats, or why it cannot be.
    pub fn load(&self, path: &std::path::Path) -> Result<Vec<f32>, String> {
        let img = decode_rgb(path, self.limits).map_err(|e| e.to_string())?;
        Ok(self.pixels(&img))
    }

    /// [`Decoding::load`] on a file's bytes; `name` only names them in errors.
    pub fn load_bytes(&self, bytes: &[u8], name: &str) -> Result<Vec<f32>, String> {
        let img = decode_rgb_bytes(bytes, std::path::Path::new(name), self.limits)
            .map_err(|e| e.to_string())?;
        Ok(self.pixels(&img))
    }

    /// A decoded image resized and scaled as the model wants it.
    pub fn pixels(&self, img: &data::Rgb) -> Vec<f32> {
        let img = resize(
            img,
            self.height as u32,
            self.width as u32,
            self.interpolation,
        );
        let mut out = vec![0.0f32; self.height * self.width * 3];
        Transform::IDENTITY.apply(&img, self.preprocess, &mut out);
        out
    }
}

/// One batch of consecutive inputs, each decoded or with the reason it could not be.
pub struct Decoded {
    /// Indices into the path list.
    pub range: Range<usize>,
    pub images: Vec<Result<Vec<f32>, String>>,
}

/// A batch split into what can be scored and what cannot.
pub struct Split {
    /// The decoded images as one `[n, height, width, 3]` batch (`None` when none decoded) and the
    /// path index of each.
    pub batch: Option<(nn::Tensor, Vec<usize>)>,
    /// Why each of the others could not be decoded, in input order.
    pub failures: Vec<String>,
}

impl Decoded {
    /// The decoded images stacked for the model (each `height x width x 3`), and the failures.
    pub fn split(self, height: usize, width: usize) -> anyhow::Result<Split> {
        let mut good = Vec::with_capacity(self.images.len());
        let mut pixels = Vec::with_capacity(self.images.len() * height * width * 3);
        let mut failures = Vec::new();
        for (i, img) in self.range.zip(self.images) {
            match img {
                Ok(v) => {
                    pixels.extend_from_slice(&v);
                    good.push(i);
                }
                Err(why) => failures.push(why),
            }
        }
        let batch = match good.is_empty() {
            true => None,
            false => {
                let x = nn::Tensor::from_shape_vec(vec![good.len(), height, width, 3], pixels)?;
                Some((x.into_shared(), good))
            }
        };
        Ok(Split { batch, failures })
    }
}

/// Spawns (inside `scope`) the producer of `paths` in batches of `batch`; the receiver yields them
/// in order. Dropping the receiver stops the producer after its current batch.
pub fn decode_in_batches<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    paths: &'scope [PathBuf],
    batch: usize,
    decoding: Decoding,
) -> Receiver<Decoded> {
    let (tx, rx) = sync_channel(AHEAD);
    scope.spawn(move || {
        for start in (0..paths.len()).step_by(batch.max(1)) {
            let range = start..(start + batch).min(paths.len());
            let images = paths[range.clone()]
                .par_iter()
                .map(|p| decoding.load(p))
                .collect();
            if tx.send(Decoded { range, images }).is_err() {
                return;
            }
        }
    });
    rx
}
