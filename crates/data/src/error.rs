//! Typed errors of the data layer: each names the file or folder and what is wrong with it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: no such folder")]
    MissingFolder { path: PathBuf },
    #[error("{path}: class folder holds no images")]
    EmptyClass { path: PathBuf },
    #[error("{path}: holds no class folders")]
    NoClasses { path: PathBuf },
    #[error("{path}: its classes differ from train's: missing {missing:?}, extra {extra:?}")]
    ClassMismatch {
        path: PathBuf,
        missing: Vec<String>,
        extra: Vec<String>,
    },
    #[error("{path}: {msg}")]
    Image { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, DataError>;
