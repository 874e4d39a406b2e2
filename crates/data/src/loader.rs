//! A split decoded once into memory (resized RGB8), then served as shuffled, augmented NHWC f32
//! batches built in parallel, the next one prepared while the model computes.

use crate::{
    decode_rgb, resize, Augment, DataError, DecodeLimits, ImageFolder, Interpolation, Preprocess,
    Result, Rgb, Skipped,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug)]
pub struct LoaderConfig {
    pub height: usize,
    pub width: usize,
    pub interpolation: Interpolation,
    pub preprocess: Preprocess,
    pub augment: Augment,
    pub batch_size: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// A bad image is an error instead of a warning.
    pub strict: bool,
    pub limits: DecodeLimits,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            height: 224,
            width: 224,
            interpolation: Interpolation::Nearest,
            preprocess: Preprocess::Mobilenet,
            augment: Augment::default(),
            batch_size: 32,
            shuffle: false,
            seed: 0,
            strict: false,
            limits: DecodeLimits::default(),
        }
    }
}

/// One batch: `x` is `[n, h, w, 3]`; `indices` point into the dataset.
pub struct Batch {
    pub x: ndarray::ArrayD<f32>,
    pub labels: Vec<usize>,
    pub indices: Vec<usize>,
}

pub struct Dataset {
    pub classes: Vec<String>,
    pub paths: Vec<PathBuf>,
    pub labels: Vec<usize>,
    images: Vec<Rgb>,
    /// Files left out: not images, hidden, or (unless strict) failing to decode.
    pub skipped: Vec<Skipped>,
    pub cfg: LoaderConfig,
}

/// A 64-bit mix of the seed, epoch and index (SplitMix64 finaliser), for per-image generators.
pub fn mix(seed: u64, epoch: u64, index: u64) -> u64 {
    let mut z = seed
        ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset {
    /// Lists, decodes and resizes a split in parallel. With `expected_classes`, the split must have
    /// exactly those classes.
    pub fn load(
        dir: &Path,
        expected_classes: Option<&[String]>,
        cfg: LoaderConfig,
    ) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Config("batch size must be at least 1".into()));
        }
        Self::from_folder(ImageFolder::open(dir, expected_classes)?, cfg)
    }

    /// Decodes and resizes the images a listing names (a folder's or a CSV's), in parallel.
    pub fn from_folder(folder: ImageFolder, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 {
            return Err(DataError::Config("batch size must be at least 1".into()));
        }
        let dir = folder.root.clone();
        let decoded: Vec<Result<Rgb>> = folder
            .items
            .par_iter()
            .map(|(p, _)| {
                decode_rgb(p, cfg.limits)
                    .map(|img| resize(&img, cfg.height as u32, cfg.width as u32, cfg.interpolation))
            })
            .collect();
        let mut ds = Dataset {
            classes: folder.classes,
            paths: Vec::new(),
            labels: Vec::new(),
            images: Vec::new(),
            skipped: folder.skipped,
            cfg,
        };
        for ((path, label), img) in folder.items.into_iter().zip(decoded) {
            match img {
                Ok(img) => {
                    ds.paths.push(path);
                    ds.labels.push(label);
                    ds.images.push(img);
                }
                Err(e) if cfg.strict => return Err(e),
                Err(DataError::Image { msg, .. }) => ds.skipped.push(Skipped { path, reason: msg }),
                Err(e) => ds.skipped.push(Skipped {
                    path,
                    reason: e.to_string(),
                }),
            }
        }
        if ds.images.is_empty() {
            return Err(DataError::Config(format!(
                "{}: no image could be decoded",
                dir.display()
            )));
        }
        Ok(ds)
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
    pub fn image(&self, i: usize) -> &Rgb {
        &self.images[i]
    }

    /// Keeps only the first `n` images of each class (a quick subset for smoke runs).
    pub fn truncate_per_class(&mut self, n: usize) {
        let mut seen = vec![0usize; self.classes.len()];
        let keep: Vec<bool> = self
            .labels
            .iter()
            .map(|&l| {
                seen[l] += 1;
                seen[l] <= n
            })
            .collect();
        let mut k = keep.iter();
        self.images.retain(|_| *k.next().expect("same length"));
        let mut k = keep.iter();
        self.paths.retain(|_| *k.next().expect("same length"));
        let mut k = keep.iter();
        self.labels.retain(|_| *k.next().expect("same length"));
    }

    /// Keras's `validation_split` (`image_dataset_from_directory(validation_split, subset, seed)`):
    /// the images are shuffled by `seed` alone, so the split is the same whichever subset is asked
    /// for, and the last `floor(fraction * n)` of that order become the validation subset, which is
    /// returned (in the folder's order, loaded with `cfg`); `self` keeps the others.
    pub fn split_off_validation(
        &mut self,
        fraction: f32,
        seed: u64,
        cfg: LoaderConfig,
    ) -> Result<Dataset> {
        let n = self.len();
        let n_val = (fraction as f64 * n as f64) as usize;
        if !(fraction > 0.0 && fraction < 1.0) || n_val == 0 || n_val == n {
            return Err(DataError::Config(format!(
                "a validation split of {fraction} of {n} images leaves one side empty; use a fraction in (0, 1) that leaves images on both"
            )));
        }
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(seed, u64::MAX, 0)));
        let mut to_valid = vec![false; n];
        for &i in &idx[n - n_val..] {
            to_valid[i] = true;
        }
        let mut valid = Dataset {
            classes: self.classes.clone(),
            paths: Vec::with_capacity(n_val),
            labels: Vec::with_capacity(n_val),
            images: Vec::with_capacity(n_val),
            skipped: Vec::new(),
            cfg,
        };
        let (paths, labels, images) = (
            std::mem::take(&mut self.paths),
            std::mem::take(&mut self.labels),
            std::mem::take(&mut self.images),
        );
        for (((p, l), img), v) in paths.into_iter().zip(labels).zip(images).zip(to_valid) {
            let side = if v { &mut valid } else { &mut *self };
            side.paths.push(p);
            side.labels.push(l);
            side.images.push(img);
        }
        Ok(valid)
    }

    /// The visiting order of an epoch: shuffled from `(seed, epoch)` when shuffling.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        if self.cfg.shuffle {
            idx.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(
                self.cfg.seed,
                epoch as u64,
                u64::MAX,
            )));
        }
        idx
    }

    /// Number of batches per epoch (the last partial batch is kept, as Keras).
    pub fn num_batches(&self) -> usize {
        self.len().div_ceil(self.cfg.batch_size)
    }

    /// Builds the batch of the given indices; each image is augmented from `(seed, epoch, index)`.
    pub fn batch(&self, indices: &[usize], epoch: usize, augment: bool) -> Batch {
        let (h, w) = (self.cfg.height, self.cfg.width);
        let per = h * w * 3;
        let mut x = vec![0.0f32; indices.len() * per];
        x.par_chunks_mut(per)
            .zip(indices.par_iter())
            .for_each(|(out, &i)| {
                let t = if augment && !self.cfg.augment.is_off() {
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(mix(self.cfg.seed, epoch as u64, i as u64));
                    self.cfg.augment.sample(&mut rng, h, w)
                } else {
                    crate::Transform::IDENTITY
                };
                t.apply(&self.images[i], self.cfg.preprocess, out);
            });
        Batch {
            x: ndarray::ArrayD::from_shape_vec(vec![indices.len(), h, w, 3], x)
                .expect("sized above"),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            indices: indices.to_vec(),
        }
    }

    /// The batches of an epoch from batch `skip` on, built one ahead on a background thread.
    pub fn batches(
        self: &Arc<Self>,
        epoch: usize,
        augment: bool,
        skip: usize,
    ) -> impl Iterator<Item = Batch> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let ds = Arc::clone(self);
        std::thread::spawn(move || {
            let order = ds.order(epoch);
            for chunk in order.chunks(ds.cfg.batch_size).skip(skip) {
                if tx.send(ds.batch(chunk, epoch, augment)).is_err() {
                    return;
                }
            }
        });
        rx.into_iter()
    }
}
