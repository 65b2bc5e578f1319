//! swipebot-core: what the daemon (`swipebot`) and `train` share, and nothing else.
//!
//! - [`model_info`]: the model contract, the `swipebot.*` metadata an exported model carries so the
//!   daemon can use it (input size, channels, resize, class order, threshold, temperature).
//! - [`preprocess`]: bytes to pixels, defined once, so a photo becomes the same tensor in training and
//!   in scoring.
//! - [`fsutil`]: atomic, durable file writes (models, checkpoints, the cache, the recorder).
//! - [`synth`]: synthetic labelled photos for the demo, the tests and the benchmarks.
//! - [`metrics`]: accuracy, precision, recall, F1, ROC AUC against labels (`train`'s validation,
//!   `swipebot compare`'s labels).
//!
//! It depends on no async runtime, HTTP client, inference engine or libtorch: `train` links it without
//! the daemon, and the daemon without libtorch.

#![warn(missing_docs)]

pub mod fsutil;
pub mod metrics;
pub mod model_info;
pub mod preprocess;
pub mod synth;
