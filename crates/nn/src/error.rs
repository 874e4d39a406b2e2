//! Typed errors of the layer level.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Kernel(#[from] tensor_core::Error),
    #[error("layer {layer}: {msg}")]
    Layer { layer: String, msg: String },
    #[error("{0}")]
    Weights(#[from] crate::vars::WeightReport),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub fn layer(layer: &str, msg: impl Into<String>) -> Self {
        Error::Layer {
            layer: layer.to_string(),
            msg: msg.into(),
        }
    }
    pub fn file(path: impl Into<PathBuf>, msg: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            msg: msg.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
