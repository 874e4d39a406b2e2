//! `onnx`: a trained MobileNetV2 classifier (or the ImageNet model with its top) written as an ONNX
//! model that ONNX Runtime, OpenVINO, TensorRT, Triton or onnxruntime-web can run. The protobuf
//! messages are declared with `prost` ([`proto`]); [`export`] maps the graph layer by layer.

pub mod builder;
pub mod export;
pub mod proto;

pub use export::{export, Options, Preprocessing, INPUT_NAME, IR_VERSION, OPSET, OUTPUT_NAME};

/// Typed errors of the exporter.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Kernel(#[from] tensor_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The model as protobuf bytes, ready for a `.onnx` file.
pub fn to_bytes(model: &proto::ModelProto) -> Vec<u8> {
    prost::Message::encode_to_vec(model)
}
