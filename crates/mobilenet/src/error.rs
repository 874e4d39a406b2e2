//! Typed errors of the model level.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Nn(#[from] nn::Error),
    #[error(transparent)]
    Kernel(#[from] tensor_core::Error),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {msg}")]
    File {
        path: std::path::PathBuf,
        msg: String,
    },
    #[error("non-finite loss ({loss}) at step {step}")]
    NonFinite { loss: f32, step: u64 },
}

pub type Result<T> = std::result::Result<T, Error>;
