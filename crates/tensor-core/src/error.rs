//! Typed errors of the kernel layer.

/// What can go wrong in a kernel call: always a shape or parameter that came from outside.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("{op}: shape mismatch: expected {expected:?}, got {got:?}")]
    Shape {
        op: &'static str,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;
