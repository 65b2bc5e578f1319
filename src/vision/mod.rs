//! From photo bytes to a LIKE probability through ONNX Runtime (preprocessing itself is
//! [`swipebot_core::preprocess`], shared with `train`).

pub mod batch;
pub mod cuda;
pub mod error;
pub mod runtime;
pub mod scorer;
pub mod service;
