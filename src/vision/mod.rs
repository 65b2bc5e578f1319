//! From photo bytes to a LIKE probability: preprocessing shared with `train`, and the ONNX scorer.

pub mod batch;
pub mod preprocess;
pub mod runtime;
pub mod scorer;
pub mod service;
