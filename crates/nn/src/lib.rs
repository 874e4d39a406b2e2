//! `nn`: kernels turned into layers that train, with Keras's semantics wherever a Keras user would notice.
//!
//! A [`Layer`] runs forward (caching exactly what backward needs, only when asked) and backward
//! (returning input gradients, accumulating parameter gradients). A [`Graph`] holds layers in
//! topological (Keras) order with residual inputs; backward stops below the lowest trainable layer.

pub mod checkpoint;
pub mod error;
pub mod fusion;
pub mod graph;
pub mod init;
pub mod layer;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod param;
pub mod profile;
pub mod spec;
pub mod vars;

pub use error::{Error, Result};
pub use fusion::Fusion;
pub use graph::{Graph, NodeId};
pub use layer::{Ctx, Layer, Mode};
pub use param::Param;
pub use spec::LayerSpec;

/// Activations and gradients: dynamic-rank f32 arrays (NHWC for images, `[N, F]` for features).
pub type Tensor = ndarray::ArcArray<f32, ndarray::IxDyn>;
