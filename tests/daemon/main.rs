//! The tests of package `swipebot` (the daemon and `swipebot score`) that run the real binaries: one
//! test target for the whole group, one module a file of this folder.

#[path = "../common/mod.rs"]
mod common;

mod account;
mod compare;
mod console;
mod faults;
mod metrics;
mod replay;
mod score_cli;
mod systemd;
mod tinder;
mod version;
mod webdriver;

/// Every `.rs` file of tests/daemon is one of the modules above, and every folder under tests/ is a
/// group some package builds (or the helpers and fixtures): a test file left out would never run.
#[test]
fn every_test_file_is_built() {
    common::layout::assert_every_test_file_is_built("daemon");
}
