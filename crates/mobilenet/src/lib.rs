//! `mobilenet`: MobileNetV2 exactly as `keras.applications.MobileNetV2` builds it (layer names, widths,
//! `correct_pad`, residual adds), loaded by name from converted ImageNet weights; a frozen part that
//! runs with batch-norm folded into its convolutions, and the same plan quantized to int8; the study's classifier (base + head) with one
//! training step; ImageNet labels for the top; Grad-CAM heatmaps of either.

pub mod arch;
pub mod classifier;
pub mod error;
pub mod folded;
pub mod grad_cam;
pub mod imagenet;
pub mod model;
pub mod predictor;
pub mod quantized;
pub mod summary;

pub use arch::{make_divisible, Alpha};
pub use classifier::{Classifier, HeadConfig, StepOutput};
pub use error::{Error, Result};
pub use folded::FoldedPlan;
pub use grad_cam::{ClassMap, Explanation, GradCam, Target};
pub use model::{MobileNetV2, ModelConfig};
pub use predictor::Predictor;
pub use quantized::{Calibrator, QuantizedInfo, QuantizedPlan};
pub use summary::{summarize, LayerSummary};
