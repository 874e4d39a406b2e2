//! `data`: image folders as Keras's `flow_from_directory` and torchvision's `ImageFolder` read them,
//! decoded to RGB, resized, augmented with `ImageDataGenerator` semantics, batched as NHWC f32.
//! Random numbers come from `(seed, epoch, index)`, so a run is the same on any thread count.

pub mod augment;
pub mod decode;
pub mod error;
pub mod folder;
pub mod jpeg_end;
pub mod labels_csv;
pub mod loader;
pub mod preprocess;
pub mod resize;

pub use augment::{Augment, Transform};
pub use decode::{decode_rgb, decode_rgb_bytes, looks_like_image, DecodeLimits};
pub use error::{DataError, Result};
pub use folder::{ImageFolder, Skipped};
pub use labels_csv::LabelsCsv;
pub use loader::{Batch, Dataset, LoaderConfig};
pub use preprocess::Preprocess;
pub use resize::{resize, Interpolation};

/// An RGB8 image, row-major `[h, w, 3]`.
pub type Rgb = image::RgbImage;
