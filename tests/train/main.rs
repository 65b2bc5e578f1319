//! The tests of package `swipebot-train` (`train`, the network, its ONNX export) that run the real
//! binaries: one test target for the whole group, one module a file of this folder.

#[path = "../common/mod.rs"]
mod common;

mod export;
mod init;
mod int8;
mod mixed;
mod pipeline;
mod quality;

/// Every `.rs` file of tests/train is one of the modules above, and every folder under tests/ is a
/// group some package builds (or the helpers and fixtures): a test file left out would never run.
#[test]
fn every_test_file_is_built() {
    common::layout::assert_every_test_file_is_built("train");
}
